"""python -m harness.drive: the matrix in rounds, interleaved across the frameworks' environments,
until its verdicts are decided or the time budget is spent; then the report.

    python -m harness.drive                                  the main job: verdicts in about half an hour
    python -m harness.drive --model mlp cnn --budget 2h
    python -m harness.drive --plan cpu-archive --rounds 5 --out results/cpu-xeon-2c/matrix

Each round runs one trial of every configuration, in an order shuffled afresh (its seed is
recorded in each result), each cell in its own framework's environment: the python of the
tox env that installs it (.tox/torch, .tox/keras, .tox/jax, .tox/keras-jax, ...; made by
`tox -e torch,keras,jax --notest`), or one given with --python. So no framework meets a
different hour of the machine than another. Round r runs trial r-1 of each configuration at
seed first+r-1: every process is one timing trial and one accuracy seed. Each round also runs
two controls beside the matrix's first configuration (harness.analysis.tables): its A/A twin,
identical code counted apart (negative: its interval must not put it beyond the margin), and
its planted slowdown, every epoch made 1.25x longer (positive: the run must find it).

Before each round the driver records how many rounds the budget holds (at the slower of the
last two rounds' pace); from round 4 on it looks at the summary's verdicts after every round,
each look at its share of the error rate (harness.analysis.sequential), and stops once every
verdict is decided (beyond the margin, or within it), once no undecided verdict has even a
1-in-5 chance in the rounds left, or when the planned rounds are done or the next would
overrun --budget. --rounds sets a fixed count instead, judged once at the end. With
--min-uncontended N, top-up rounds follow the fixed ones (as many at most), each of only the
configurations that have fewer than N finished trials no other process contended for, so a
trial lost to a busy machine is made up at a new seed. A rerun of the same command resumes: trials already
finished are not run again.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import subprocess
import sys
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

from harness import data
from harness.analysis import sequential, stats
from harness.analysis.tables import PLANTED_SLOWDOWN, Analysis, analyse
from harness.measure.store import Store
from harness.plan.cell import Cell
from harness.plan.errors import HarnessError
from harness.plan.files import REPO_ROOT, WORKSPACE
from harness.plan.frameworks import framework, frameworks, make_envs_command
from harness.plan.matrix import expand, plan_cells
from harness.plan.options import (Parser, add_matrix_options, check_out, given_options, margin_fraction, positive_int,
                                  refuse_ignored, selection_of)
from harness.plan.plans import FIXED_ROUNDS, MAIN_JOB
from harness.report.__main__ import main as report_main
from harness.run.executor import FAILED, warn_if_busy
from harness.run.executors import executor

DEFAULT_BUDGET = "30m"
# The driver looks at its verdicts after every round from VERDICT_ROUNDS on and stops once all are
# decided; each look is a chance to stop on a false verdict, so the looks spend the promised error
# rate between them (harness.analysis.sequential): every round records the rounds the budget holds
# then, and the verdicts of a look (the driver's and the report's alike) are at that look's level.
VERDICT_ROUNDS = sequential.FIRST_LOOK


def parse_budget(text: str) -> float:
    """'30m', '2h', '90s' or seconds, as seconds: a finite positive duration."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time like 30m, 2h or 90s") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"a budget is a positive time like 30m, 2h or 90s, got {text!r}")
    return seconds


def variant(text: str) -> tuple[tuple[str, str], ...]:
    """'A=1,B=x' as (("A", "1"), ("B", "x")): environment variables for a noise experiment's variant."""
    pairs = [item.partition("=") for item in text.split(",")]
    if not pairs or any(not name or not sep or not name.replace("_", "").isalnum() for name, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"{text!r} is not VAR=VALUE[,VAR=VALUE] (e.g. TF_NUM_INTEROP_THREADS=1)")
    return tuple((name, value) for name, _, value in pairs)


# ---------------------------------------------------------------- the frameworks' interpreters
def env_pythons(cells: list[Cell], given: dict[str, str]) -> dict[tuple[str, str | None], str]:
    """The interpreter for each (framework, backend): --python's, the tox env's, or this one."""
    out = {}
    for key in dict.fromkeys((c.framework, c.backend) for c in cells):
        name, backend = key
        label = framework(name).label(backend)
        env = framework(name).tox_env(backend)
        candidates = [given.get(label), given.get(name),
                      *(str(REPO_ROOT / ".tox" / e / "bin" / "python") for e in (env, f"test-{env}"))]
        found = next((c for c in candidates if c and Path(c).exists()), None)
        out[key] = found or sys.executable
    return out


def given_pythons(items: list[str]) -> dict[str, str]:
    """--python's FRAMEWORK=PATH pairs, each checked before anything trains: a framework the
    registry knows (or one of its Keras backends, 'keras[jax]'), an interpreter that exists and
    imports this harness; else a one-line HarnessError."""
    known = {name: None for name in frameworks()} | {record.label(b): None for record in frameworks().values()
                                                       for b in record.backends}
    given = {}
    for item in items:
        name, _, path = item.partition("=")
        if not path:
            raise HarnessError("--python takes FRAMEWORK=PATH, e.g. torch=.venv-torch/bin/python")
        if name not in known:
            raise HarnessError(f"--python {item}: no framework {name!r}; known: {', '.join(known)}")
        python = str(Path(path).expanduser())
        if not Path(python).is_file():
            raise HarnessError(f"--python {item}: {python} does not exist; give the python of {name}'s environment")
        proc = subprocess.run([python, "-c", "import harness.plan.cell"], cwd=REPO_ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HarnessError(f"--python {item}: {python} cannot import this harness; install it there "
                               f"({python} -m pip install -e {REPO_ROOT})")
        given[name] = python
    return given


@lru_cache(maxsize=None)
def missing_in(python: str, packages: tuple[str, ...]) -> tuple[str, ...]:
    """The packages that interpreter cannot import (asked once per interpreter and set)."""
    code = "import importlib.util, sys; print(' '.join(n for n in sys.argv[1:] if importlib.util.find_spec(n) is None))"
    proc = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True)
    return tuple(proc.stdout.split()) if proc.returncode == 0 else packages


def lacking(cells: list[Cell], pythons: dict[tuple[str, str | None], str]) -> dict[tuple[str, str | None], tuple]:
    """Per (framework, backend) whose interpreter lacks packages its cells import: those packages
    (the ones with everything are left out)."""
    needs: dict[tuple[str, str | None], set[str]] = {}
    for c in cells:
        needs.setdefault((c.framework, c.backend), set()).update(framework(c.framework).needs(c.backend, c.profile))
    absent = {key: missing_in(pythons[key], tuple(sorted(packages))) for key, packages in needs.items()}
    return {key: packages for key, packages in absent.items() if packages}


# ---------------------------------------------------------------- rounds
def round_cells(configurations: list[Cell], number: int, first_seed: int, same_seed: bool,
                controls: bool) -> list[Cell]:
    """Round `number`'s cells: trial number-1 of each configuration, and the first one's two
    controls, its A/A twin and its planted slowdown."""
    seed = first_seed if same_seed else first_seed + number - 1

    def trial(cell: Cell, **more) -> Cell:
        return dataclasses.replace(cell, trial=number - 1, hyper=dataclasses.replace(cell.hyper, seed=seed), **more)

    cells = [trial(c) for c in configurations]
    if not controls or not configurations:
        return cells
    return cells + [trial(configurations[0], twin=True), trial(configurations[0], planted_slowdown=PLANTED_SLOWDOWN)]


def short_of(configurations: list[Cell], store, wanted: int) -> list[Cell]:
    """The configurations with fewer than `wanted` finished trials that nothing contended for."""
    counted = Counter()
    for _, r in store.results():
        if isinstance(r, Exception) or r.status != "ok" or r.cell.control is not None:
            continue
        if r.env.contention is None or not r.env.contention.contended:
            counted[r.cell.configuration.id] += 1
    return [c for c in configurations if counted[c.configuration.id] < wanted]


def rounds_planned(number: int, elapsed: float, per_cell: list[float], round_size: int, budget: float) -> int | None:
    """Before round `number`: how many rounds the budget holds in all, this one included, at the slower
    of the last two rounds' seconds a cell (None before any round has been timed)."""
    if not per_cell:
        return None
    per_round = max(per_cell[-2:]) * round_size
    return number - 1 + max(1, int((budget - elapsed) // per_round))


def stop_reason(number: int, planned: int | None, analysis: Analysis) -> str | None:
    """The stopping rule after round `number`, or None to go on: the planned rounds are done; or from
    VERDICT_ROUNDS on, every verdict is decided, or no undecided one has even a LONG_SHOT chance
    in the rounds the budget has left."""
    if planned is not None and number >= planned:
        return f"the {planned} rounds the budget holds are done"
    if number < VERDICT_ROUNDS:
        return None
    undecided = analysis.undecided()
    if not undecided:
        return f"every verdict decided after {number} rounds"
    left = None if planned is None else planned - number
    if left is not None and all(v.long_shot is None or v.long_shot > left for v in undecided):
        chance = (f"even a 1-in-{round(1 / stats.LONG_SHOT)} chance of being decided in the {left} rounds "
                  "the budget has left")
        return (f"no undecided verdict has {chance}" if len(undecided) > 1
                else f"the undecided verdict has not {chance}")
    return None


def next_round_fits(elapsed: float, per_cell: list[float], round_size: int, budget: float) -> bool:
    """Whether another round, at the slower of the last two rounds' seconds a cell, ends within the budget."""
    return not per_cell or elapsed + max(per_cell[-2:]) * round_size <= budget


def seconds_to_go(per_cell: list[float], round_size: int, rounds_left: int) -> float:
    """The rounds left at the mean seconds a cell took so far (per_cell: one mean a round; a resumed
    round's cells found done are not in it, so a half-done round does not look short)."""
    return rounds_left * round_size * sum(per_cell) / len(per_cell) if per_cell else 0.0


def drive(configurations: list[Cell], store, args, python_for) -> int:
    """Run rounds until the verdicts are decided or the budget is spent, then top-up rounds
    (--min-uncontended) for the configurations short of uncontended trials; the failures."""
    def missing(cell: Cell) -> list[str]:
        return list(missing_in(python_for(cell), framework(cell.framework).needs(cell.backend, cell.profile)))

    start, per_cell, number, failures = time.time(), [], 0, 0  # per_cell: seconds a cell took, per round
    planned = None
    round_size = len(configurations) + 2 * (not args.no_controls)
    drive_id = time.strftime("%Y%m%dT%H%M%S") + f"-{random.randrange(16**6):06x}"
    warn_if_busy(print)
    while True:
        number += 1
        elapsed = time.time() - start
        if args.rounds and number > args.rounds:
            short = short_of(configurations, store, args.min_uncontended) if args.min_uncontended else []
            if short and number > 2 * args.rounds:
                print(f"{len(short)} configurations still have fewer than {args.min_uncontended} uncontended "
                      f"trials after {args.rounds} top-up rounds: " + ", ".join(c.label for c in short[:3]))
            if not short or number > 2 * args.rounds:
                break
            print(f"top-up round {number}: {len(short)} configurations have fewer than {args.min_uncontended} "
                  "uncontended trials", flush=True)
            cells = round_cells(short, number, args.seed[0], args.same_seed, controls=False)
        else:
            if not args.rounds and not next_round_fits(elapsed, per_cell, round_size, args.budget):
                print(f"stop: round {number} would not end within the budget ({args.budget / 60:.0f} min)")
                break
            cells = round_cells(configurations, number, args.seed[0], args.same_seed, not args.no_controls)
            if not args.rounds:
                planned = rounds_planned(number, elapsed, per_cell, round_size, args.budget)
        order_seed = random.randrange(2**31)
        random.Random(order_seed).shuffle(cells)
        context = {c.id: {"round": {"drive": drive_id, "number": number, "position": i + 1, "size": len(cells),
                                    "seed": order_seed, "margin": args.margin,
                                    "planned": planned}} for i, c in enumerate(cells)}
        began = time.time()
        local = executor("local", python_for=python_for, missing_for=missing, context_for=lambda c: context[c.id])
        counts = local.run(cells, store, args.force, args.quiet)
        ran = sum(v for k, v in counts.items() if k not in ("skipped", "done before"))
        if ran:  # cells a resumed round found done say nothing of the time to go
            per_cell.append((time.time() - began) / ran)
        failures += sum(counts.get(k, 0) for k in FAILED)
        if args.rounds:
            rounds_left = max(0, args.rounds - number)
            to_go = seconds_to_go(per_cell, round_size, rounds_left)
            left = f"; about {to_go / 60:.0f} min to go ({rounds_left} rounds)"
        else:
            left = f"; {max(0.0, args.budget - (time.time() - start)) / 60:.0f} min of the budget left"
        print(f"round {number} done in {(time.time() - began) / 60:.1f} min: "
              + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + left, flush=True)
        if not args.rounds and number >= VERDICT_ROUNDS:
            results = [r for _, r in store.results() if not isinstance(r, Exception)]
            analysis = analyse(results, args.margin)
            pending = [v.text for v in analysis.undecided()]
            if pending:
                more = "; ..." if len(pending) > 3 else ""
                print(f"{len(pending)} verdicts undecided: " + "; ".join(pending[:3]) + more)
            reason = stop_reason(number, planned, analysis)
            if reason:
                print(f"stop: {reason}")
                break
    return failures


# ---------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m harness.drive", description=__doc__.split("\n")[0],
               epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_matrix_options(p)
    p.add_argument("--budget", type=parse_budget, default=parse_budget(DEFAULT_BUDGET),
                   help=f"add rounds until the verdicts are decided or this time is spent (default {DEFAULT_BUDGET})")
    p.add_argument("--rounds", type=positive_int, help="run exactly this many rounds (in place of --budget)")
    p.add_argument("--min-uncontended", type=positive_int, metavar="N",
                   help="after --rounds, up to as many top-up rounds, each of the configurations that have fewer "
                        "than N finished trials that no other process contended for")
    p.add_argument("--same-seed", action="store_true", help="every round at the first seed (default: seed first+r-1)")
    p.add_argument("--margin", type=margin_fraction, default=stats.MARGIN, metavar="FRACTION",
                   help=f"the practical margin, declared before the run: a difference within it is a tie "
                        f"(default {stats.MARGIN:g}, i.e. {stats.MARGIN:.0%}".replace("%", "%%") + ")")
    p.add_argument("--no-controls", action="store_true",
                   help="no A/A twin and no planted slowdown (the summary then cannot say whether the run could see)")
    p.add_argument("--variant", nargs="+", default=[], type=variant, metavar="VAR=VALUE[,VAR=VALUE]",
                   help="a noise experiment: beside each configuration, a copy whose process runs with these "
                        "environment variables, in the same rounds (e.g. TF_NUM_INTEROP_THREADS=1 or "
                        "OMP_WAIT_POLICY=passive,KMP_BLOCKTIME=0); one copy per variant given")
    p.add_argument("--python", nargs="+", default=[], metavar="FRAMEWORK=PATH",
                   help="the interpreter of a framework's environment, e.g. torch=~/venvs/torch/bin/python or "
                        "'keras[jax]=...' (default: the tox env's, .tox/<env>/bin/python)")
    p.add_argument("--no-report", action="store_true",
                   help="do not report at the end (the report goes to results/report, or beside the results "
                        "of an --out folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = given_options(argv)
    args = parser().parse_args(argv)
    if args.plan in FIXED_ROUNDS and not args.rounds:
        args.rounds = FIXED_ROUNDS[args.plan]
    refuse_ignored(args, given_options(argv) - {"trials"})
    if args.min_uncontended and not args.rounds:
        raise HarnessError("--min-uncontended tops up after a fixed number of rounds: give --rounds too")
    if "trials" in chosen:
        raise HarnessError("the driver makes one trial per round: give --rounds (or --budget), not --trials")
    given = given_pythons(args.python)
    store = Store(check_out(args.out))
    selection = selection_of(args, argv)
    if not chosen & {"framework", "model", "mode", "profile", "plan", "recipe", "epochs", "dataset", "batch_size"}:
        selection = dataclasses.replace(MAIN_JOB, **{k: v for k, v in vars(selection).items() if v is not None})
    configurations = [c for c in data.checked(plan_cells(args.plan, args.threads) if args.plan
                                              else expand(selection, args.threads)) if c.trial == 0]
    configurations = list({dataclasses.replace(c, hyper=dataclasses.replace(c.hyper, seed=0)).id: c
                           for c in configurations}.values())  # seeds come from the rounds
    configurations += [dataclasses.replace(c, env=env) for env in args.variant for c in configurations]
    pythons = env_pythons(configurations, given)
    absent = lacking(configurations, pythons)
    for (name, backend), python in pythons.items():
        why = ""
        if (name, backend) in absent:
            why = (f" (lacks {', '.join(absent[name, backend])}: its cells are skipped; "
                   f"`{make_envs_command([framework(name).tox_env(backend)])}` makes its environment)")
        print(f"{framework(name).label(backend)}: {python}{why}")
    failures = drive(configurations, store, args, lambda cell: pythons[cell.framework, cell.backend])
    if not args.no_report:  # the default results' report in results/report; another --out's beside its results
        beside = [] if store.root == WORKSPACE.resolve() else ["--out-dir", str(store.root)]
        report_main([str(store.root), "--html", *beside])
    return 1 if failures else 0

