"""python -m harness.archive: remake a machine's committed archive at one commit, in one command.

    python -m harness.archive cpu results/cpu-xeon-2c --fresh     every step below, from nothing
    python -m harness.archive cpu results/cpu-xeon-2c             resume one cut short
    python -m harness.archive cpu results/cpu-xeon-2c --dry-run   the steps, nothing run

Steps, in this order (the timing evidence first), each resumable: the matrix through the
interleaving driver (harness.drive: every model, framework, mode, Keras backend and profile,
4 rounds with an A/A twin each, then top-up rounds for any configuration with fewer than 4
uncontended trials); the plain reference and example loops beside their suite cells (in each
framework's environment); the seed spread that the parity tolerances come from and the seeds'
recipes (accuracy only, so a busy machine does not spoil them); then the archive's report. A rerun of the same
command continues where it stopped. The commit is checked: an archive holds one commit's
results (the code's commit: harness.measure.machine.git_info), and a remake at another commit must
start afresh (--fresh removes the steps' old results; git's history keeps the committed
ones). Everything the command prints goes to <archive>/remake.log too (a --dry-run's
only to the terminal).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.drive import rounds
from harness.measure.machine import git_info
from harness.plan.cell import Cell
from harness.plan.errors import HarnessError
from harness.plan.files import REPO_ROOT, Tee, write_json_atomic
from harness.plan.frameworks import frameworks, make_envs_command
from harness.plan.matrix import plan_cells
from harness.plan.options import Parser
from harness.plan.plans import ARCHIVES, LOOPS, PLAIN_LOOPS, REPORTED
from harness.plan.spec import DataSpec, Hyper
from harness.report.__main__ import main as report_main


def check_commit(archive: Path, fresh: bool) -> str:
    """The commit this remake runs at; refused where the archive already holds another commit's results."""
    commit, dirty = git_info()
    if dirty:
        raise HarnessError("the harness or impls have uncommitted changes: an archive's results must come from one "
                           "commit; commit or stash them first")
    marker = archive / "remake.json"
    record = json.loads(marker.read_text()) if marker.exists() else {}
    before = record.get("commit")
    if before and before != commit:
        if not fresh:
            raise HarnessError(f"{archive} holds the results of commit {before[:10]}, this checkout is {commit[:10]}: "
                               "remake it whole with --fresh (git history keeps the old results)")
    if fresh:
        for step in {folder for steps in ARCHIVES.values() for part in steps for folder, _, _ in part} | {LOOPS}:
            shutil.rmtree(archive / step, ignore_errors=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if fresh or before != commit:
        record = {"commit": commit, "started": now}
    else:  # a resume keeps when the remake started, and adds when it was resumed
        record["resumed"] = [*record.get("resumed", []), now]
    write_json_atomic(marker, record)
    return commit


def unready_environments(kind: str) -> str | None:
    """Why the archive cannot run here yet, in one line, or None: a framework environment that its
    cells need is missing or lacks a package. An archive holds every configuration, so it refuses
    before anything runs rather than skipping a framework's cells in every round."""
    cells = [c for part in ARCHIVES[kind] for _, plan, _ in part for c in plan_cells(plan, 0)]
    absent = rounds.lacking(cells, rounds.env_pythons(cells, {}))
    if not absent:
        return None
    named = "; ".join(f"{frameworks()[n].label(b)} lacks {', '.join(packages)}" for (n, b), packages in absent.items())
    command = make_envs_command(frameworks()[n].tox_env(b) for n, b in absent)
    return (f"the archive runs every framework in its own environment, and here {named}: make "
            f"{'them' if len(absent) > 1 else 'it'} with `{command}`, then run this again")


def loop_pythons() -> list[str]:
    """Each framework environment's interpreter that exists here (tox's), once each."""
    cells = [Cell(name, backend, "mlp", record.idiomatic_mode, DataSpec(), Hyper())
             for name, record in frameworks().items() if record.plain_loop_modes
             for backend in (list(record.backends)[:1] or [None])]
    return list(dict.fromkeys(rounds.env_pythons(cells, {}).values()))


def remake(kind: str, archive: Path, dry_run: bool) -> int:
    """Run the steps; the number of failed cells."""
    before, after = ARCHIVES[kind]
    total = len(before) + len(after) + 2
    failures, start, number = 0, time.time(), 0

    def header(what: str) -> None:
        nonlocal number
        number += 1
        print(f"\n== step {number}/{total}: {what}  ({(time.time() - start) / 60:.0f} min so far)", flush=True)

    def drive_steps(steps) -> int:
        failed = 0
        for folder, plan, options in steps:
            full = ["--plan", plan, *options, "--out", str(archive / folder), "--quiet", "--no-report"]
            header(f"python -m harness.drive {' '.join(full)}")
            if not dry_run:
                failed += rounds.main(full)
        return failed

    failures += drive_steps(before)
    loops = [*PLAIN_LOOPS[kind], "--out", str(archive / LOOPS), "--quiet"]
    header(f"python -m harness.run.plain_loops {' '.join(loops)}, in each framework's environment")
    if not dry_run:
        for python in loop_pythons():
            proc = subprocess.run([python, "-m", "harness.run.plain_loops", *loops], cwd=REPO_ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            print(proc.stdout, end="", flush=True)  # through the log
            failures += proc.returncode != 0
    failures += drive_steps(after)
    report = [*(str(archive / f) for f in REPORTED), "--out-dir", str(archive), "--html"]
    header(f"python -m harness.report {' '.join(report)}")
    if not dry_run:
        report_main(report)
    print(f"\narchive {archive} remade in {(time.time() - start) / 3600:.1f} h; {failures} failures")
    return failures


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m harness.archive", description=__doc__.split("\n")[0],
               epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=ARCHIVES, help="which machine's archive")
    p.add_argument("archive", type=Path, help="its folder, e.g. results/cpu-xeon-2c")
    p.add_argument("--fresh", action="store_true", help="start afresh: remove the steps' results first")
    p.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    archive = args.archive.expanduser().resolve()
    unready = unready_environments(args.kind)
    if args.dry_run:  # the steps only: the archive and its log stay as they are
        print(f"not ready: {unready}" if unready else "every framework environment is ready")
        return 1 if remake(args.kind, archive, dry_run=True) else 0
    if unready:
        raise HarnessError(unready)
    archive.mkdir(parents=True, exist_ok=True)
    check_commit(archive, args.fresh)
    mode = "w" if args.fresh else "a"  # a fresh remake starts a fresh log
    with open(archive / "remake.log", mode) as log, contextlib.redirect_stdout(Tee(sys.stdout, log)), \
            contextlib.redirect_stderr(Tee(sys.stderr, log)):
        print(f"\n# python -m harness.archive {' '.join(argv or sys.argv[1:])}  "
              f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        return 1 if remake(args.kind, archive, dry_run=False) else 0

