"""python -m harness.run: train and measure a matrix of cells, one subprocess per cell.

    python -m harness.run --framework jax --model mlp --epochs 5      one cell
    python -m harness.run                                              the default matrix
    python -m harness.run --framework torch keras --model mlp cnn --batch-size 32 256 --seed 0 1
    python -m harness.run --plan gpu --out results/gpu-h100          a named set of matrices

Each cell runs in a fresh process (harness.launch) so that peak memory and allocator state
do not leak between cells, and writes one JSON file atomically under --out (default
results/runs/, git-ignored). Every option is checked, and the data loaded and validated,
before any cell trains. A rerun keeps the cells that ended ok or diverged and runs the rest
again (--force reruns all). Two runs on one --out never train the same cell at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import importlib.util
import itertools
import math
import os
import sys
import time
from pathlib import Path

from harness.cell import Cell
from harness.results import FINAL_STATUSES, WORKSPACE
from harness.spec import (DEVICES, GPU_ONLY_PRECISIONS, MODELS, PRECISIONS, PROFILES, RECIPE_MODELS,
                          DataSpec, HarnessError, Hyper, check_precision, cli_main)
from impls.records import default_frameworks, framework, frameworks

# What the main job runs: both questions, the users' code and the equalised code.
DEFAULT_PROFILES = ("equal", "native")
SWEEP_BATCHES = "32 128 256 512 2048 8192"  # 256: a second common batch beside seed 002's 32
# Named sets of matrices, run in this order into one --out folder (the first matters most,
# so that a run cut short keeps it). Each line is a harness.run command line.
PLANS: dict[str, tuple[str, ...]] = {
    # The GPU run: every framework's idiomatic mode in both profiles, three seeds of the MLP's
    # headline modes, the fast paths, TF32 and bf16 for the plain and best modes, then
    # throughput against batch size. Keras on TensorFlow runs where TensorFlow is installed,
    # and is skipped elsewhere.
    "gpu": (
        "--framework torch jax keras --backend jax torch tensorflow --device cuda --profile equal native",
        "--framework torch --mode eager cudagraph --model mlp --seed 0 1 2 --device cuda",
        "--framework jax --mode step scan --model mlp --seed 0 1 2 --device cuda",
        "--framework keras --backend jax --mode fit fit-jit --model mlp --seed 0 1 2 --device cuda",
        "--framework torch --mode compile cudagraph --device cuda",
        "--framework torch --mode compile --device cuda --profile native",
        "--framework jax --mode scan --device cuda",
        "--framework keras --backend jax tensorflow --mode fit-jit --device cuda --profile equal native",
        "--framework keras --backend torch --mode fit-jit --model mlp --device cuda",
        "--framework torch --mode eager cudagraph --model mlp cnn --precision tf32 bf16 --device cuda",
        "--framework jax --mode step scan --model mlp cnn --precision tf32 bf16 --device cuda",
        "--framework keras --backend jax --mode fit-jit --model mlp cnn --precision tf32 bf16 --device cuda",
        f"--framework torch --mode eager cudagraph --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
        f"--framework jax --mode step scan --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
        f"--framework keras --backend jax --mode fit fit-jit --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
    ),
    # What fits in ten minutes of an H100 (15 cells took 344 s, most of it process start-up
    # and compilation): the MLP in every Keras-on-jax, torch and jax mode, then the fastest
    # modes on the other models and in TF32 and bf16.
    "gpu-quick": (
        "--framework torch --mode cudagraph compile --model mlp --device cuda",
        "--framework jax --mode scan --model mlp --device cuda",
        "--framework keras --backend jax --mode fit-jit --model mlp --device cuda",
        "--framework torch jax keras --backend jax --model mlp --device cuda",
        "--framework torch --mode cudagraph --model logistic cnn --device cuda",
        "--framework jax --mode scan --model logistic cnn --device cuda",
        "--framework torch --mode cudagraph --model mlp --precision bf16 tf32 --device cuda",
        "--framework jax --mode scan --model mlp --precision bf16 tf32 --device cuda",
    ),
}
# The options that choose cells. A recipe sets the data, models and optimizer; a plan sets all.
AXES = ("framework", "model", "mode", "backend", "dataset", "batch_size", "seed", "precision", "device",
        "epochs", "optimizer", "lr", "eps", "init", "profile")
RECIPE_SETS = ("model", "dataset", "optimizer", "lr", "eps")
FAILED = ("oom", "killed", "error", "write failed")


# ---------------------------------------------------------------- checking options
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive finite number")
    return value


def check_choice(kind: str, values, valid) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise HarnessError(f"unknown {kind} {', '.join(map(repr, bad))}; valid {kind}s: {', '.join(valid)}")


def refuse_ignored(args, given: set[str]) -> None:
    """Options a --plan or --recipe would override: a one-line error rather than silence."""
    def flags(names):
        return ", ".join("--" + n.replace("_", "-") for n in names)

    if args.plan and (clash := [a for a in AXES if a in given]):
        raise HarnessError(f"--plan {args.plan} sets every axis itself; drop {flags(clash)} "
                           "(or run those cells without --plan)")
    if args.recipe and (clash := [a for a in RECIPE_SETS if a in given]):
        raise HarnessError(f"--recipe {args.recipe} sets the data, models and optimizer; drop {flags(clash)} "
                           "(or run without --recipe)")


def check_out(out: Path) -> Path:
    """--out as an absolute folder this process can write, made if absent; else a one-line error."""
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out} is a file; give a folder for the result files")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{id(out)}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"--out {out} is not writable ({exc.strerror or exc}); "
                           "give a folder you can write to") from None
    return out


# ---------------------------------------------------------------- the cells
def data_digests(specs: list[DataSpec]) -> dict[DataSpec, str]:
    """Each dataset loaded and validated once, before anything trains: its SHA-256 by spec."""
    from harness import data

    digests = {spec: data.load(spec).sha256 for spec in specs}
    data._load.cache_clear()  # the parent keeps only the sums; each cell loads its own copy
    data.load_raw.cache_clear()
    return digests


def expand(args, given: set[str] = frozenset()) -> list[Cell]:
    """The cells that args select, each checked; a HarnessError for anything that would not run."""
    from harness.data import DATASETS
    from harness.recipes import recipe

    registry = frameworks()
    names = args.framework or list(default_frameworks())
    check_choice("framework", names, registry)
    check_choice("model", args.model or [], {**MODELS, **RECIPE_MODELS})
    check_choice("dataset", args.dataset or [], DATASETS)
    keras_backends = registry["keras"].backends
    check_choice("backend", args.backend, keras_backends)
    check_choice("precision", args.precision or [], PRECISIONS)
    check_choice("device", args.device, DEVICES)
    check_choice("profile", args.profile or [], PROFILES)
    profiles = args.profile or list(DEFAULT_PROFILES)
    if args.mode:
        check_choice("mode", args.mode, sorted({m for n in names for m in registry[n].modes}))
        for name in names:
            if not set(args.mode) & set(registry[name].modes):
                raise HarnessError(f"{name} has none of the modes {', '.join(args.mode)}; its modes are "
                                   f"{', '.join(registry[name].modes)} (run frameworks with different modes apart)")
    precisions = args.precision or ["float32"]
    if all(d == "cpu" for d in args.device):
        for prec in precisions:
            check_precision(prec, "cpu")
    if "native" in profiles and "precision" in given:
        print("note: native cells run at each framework's default precision; --precision applies to "
              "the equal cells", file=sys.stderr)
    if args.recipe:
        r = recipe(args.recipe)
        runs = [(model, dataclasses.replace(hyper, batch_size=bs))
                for model, hyper in r.runs for bs in (args.batch_size or [hyper.batch_size])]
        datas = [r.data]
    else:
        d = Hyper()
        base = Hyper(optimizer=args.optimizer or d.optimizer, lr=args.lr or d.lr, eps=args.eps or d.eps)
        runs = [(model, dataclasses.replace(base, batch_size=bs))
                for model in (args.model or list(MODELS)) for bs in (args.batch_size or [base.batch_size])]
        datas = [DataSpec(name) for name in (args.dataset or ["mnist"])]
    cells = []
    for name, profile in itertools.product(names, profiles):
        record = registry[name]
        if profile not in record.profiles:
            if args.profile:
                raise HarnessError(f"{name} has no profile {profile}; its profiles: {', '.join(record.profiles)}")
            continue
        modes = [m for m in (args.mode or record.modes[:1]) if m in record.modes]
        if profile == "native":
            if args.mode and args.profile and not set(modes) & set(record.native_modes):
                raise HarnessError(f"{name} mode {', '.join(modes)} has no native form (what {name}'s users "
                                   f"write is {', '.join(record.native_modes) or 'none'}); run it with --profile equal")
            modes = [m for m in modes if m in record.native_modes]
        for (model, hyper), ds, seed, prec, dev, mode, backend in itertools.product(
                runs, datas, args.seed, precisions if profile == "equal" else ["default"], args.device,
                modes, args.backend if record.backends else [None]):
            if dev == "cpu" and prec in GPU_ONLY_PRECISIONS:
                continue  # asked for beside a GPU device: runs there only
            hyper = dataclasses.replace(hyper, seed=seed, init=args.init if profile == "equal" else "native",
                                        epochs=hyper.epochs if args.epochs is None else args.epochs)
            cells.append(Cell(name, backend, model, mode, ds, hyper, prec, dev, args.threads, args.recipe, profile))
    if not cells:
        raise HarnessError("these options select no cell; python -m harness.run --help lists them")
    digests = data_digests(sorted({c.data for c in cells}, key=repr))
    return [dataclasses.replace(c, data_sha256=digests[c.data]) for c in cells]


def plan_cells(name: str, threads: int) -> list[Cell]:
    """The cells of a named plan, in its order, each once."""
    if name not in PLANS:
        raise HarnessError(f"unknown plan {name!r}; valid plans: {', '.join(PLANS)}")
    cells: dict[str, Cell] = {}
    for line in PLANS[name]:
        argv = line.split() + ["--threads", str(threads)]
        for cell in expand(parser().parse_args(argv), given_options(argv)):
            cells.setdefault(cell.id, cell)
    return list(cells.values())


def missing_packages(cell: Cell) -> list[str]:
    return [n for n in framework(cell.framework).needs(cell.backend, cell.profile)
            if importlib.util.find_spec(n) is None]


# ---------------------------------------------------------------- running them
class CellLock:
    """An exclusive lock on one cell's result in one output folder, released when the process ends."""

    def __init__(self, out_dir: Path, cell: Cell):
        folder = out_dir / ".locks"
        folder.mkdir(exist_ok=True)
        self.file = open(folder / f"{cell.id}.lock", "a+")

    def acquire(self, wait: bool) -> bool:
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        self.file.close()


def run_matrix(cells: list[Cell], out_dir: Path, force: bool, quiet: bool) -> dict[str, int]:
    """Run each cell in its own process; returns the count of each outcome.

    A cell that another run on the same folder is training is put off to the end, and then
    waited for: it is never trained twice at once.
    """
    from tqdm import tqdm

    from harness.launch import remove_stale_scratch

    remove_stale_scratch(out_dir)
    counts: dict[str, int] = {}
    bar = tqdm(total=len(cells), unit="cell", disable=quiet, dynamic_ncols=True)

    def say(text: str) -> None:
        tqdm.write(text, file=sys.stderr)

    queue, put_off = list(cells), []
    while queue:
        cell = queue.pop(0)
        waiting = cell in put_off
        lock = CellLock(out_dir, cell)
        if not lock.acquire(wait=waiting):
            say(f"wait {cell.label}: another run on {out_dir} is training it; it comes last")
            put_off.append(cell)
            queue.append(cell)
            lock.release()
            continue
        try:
            outcome = run_one(cell, out_dir / f"{cell.id}.json", force, quiet, waiting, bar, say)
        finally:
            lock.release()
        counts[outcome] = counts.get(outcome, 0) + 1
        bar.update(1)
    bar.close()
    return counts


def why_not_run(cell: Cell, path: Path, force: bool, quiet: bool, waited: bool, say) -> str | None:
    """The outcome of a cell that needs no run (skipped, done before, done elsewhere), or None;
    says so, and says when a failed cell is run again. Every executor asks this first."""
    from harness.results import read_result

    missing = missing_packages(cell)
    if missing:
        say(f"skip {cell.label}: {', '.join(missing)} not installed here "
            f"(run it in its tox env: tox -e {frameworks()[cell.framework].tox_env(cell.backend)})")
        return "skipped"
    before = read_result(path)
    if before and before["status"] in FINAL_STATUSES and not force:
        if not quiet or waited:
            say(f"skip {cell.label}: {'another run finished it' if waited else 'finished before'} "
                f"({before['status']}); --force reruns it")
        return "done elsewhere" if waited else "done before"
    if before:
        say(f"rerun {cell.label}: it ended {before['status']} before ({before['message'][:120]})")
    return None


def run_one(cell: Cell, path: Path, force: bool, quiet: bool, waited: bool, bar, say) -> str:
    """One cell, or why it was not run: skipped, done before, done elsewhere."""
    from harness.launch import run_cell_process

    if outcome := why_not_run(cell, path, force, quiet, waited, say):
        return outcome
    bar.set_description(cell.label)

    def on_line(line: str) -> None:
        if line.startswith("epoch"):
            bar.set_postfix_str(line.split("  ")[0])
        if line.startswith("status"):
            say(f"{cell.label}: {line}")
        elif not quiet:
            say(f"  {line}")

    outcome = run_cell_process(cell, path, on_line)
    if outcome == "write failed":
        say(f"{cell.label}: its result could not be written to {path.parent}; a rerun tries it again")
    return outcome


# ---------------------------------------------------------------- command line
class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (a HarnessError), like every other bad input."""

    def error(self, message: str):
        raise HarnessError(f"{message} (python -m harness.run --help lists the options)")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m harness.run", description=__doc__.split("\n")[0],
               epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Hyper()
    names = ", ".join(frameworks())
    p.add_argument("--framework", nargs="+", help=f"of {names} (default {' '.join(default_frameworks())})")
    p.add_argument("--model", nargs="+", help=f"of {', '.join(MODELS)} (default all), or a recipe's models")
    p.add_argument("--mode", nargs="+", help="default: each framework's idiomatic (first) mode")
    p.add_argument("--profile", nargs="+", help=f"of {', '.join(PROFILES)} (default {' '.join(DEFAULT_PROFILES)})")
    p.add_argument("--backend", nargs="+", default=[os.environ.get("KERAS_BACKEND", "tensorflow")],
                   help="Keras backends, of tensorflow, jax, torch (default $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--dataset", nargs="+", help="of mnist, fashion, tiny5x5 (default mnist)")
    p.add_argument("--recipe", help="a seed's recipe from harness/recipes.py (sets data, models, optimizer)")
    p.add_argument("--plan", help=f"a named set of matrices ({', '.join(PLANS)}; see PLANS in harness/run.py), "
                                  "in place of the axis options")
    p.add_argument("--batch-size", nargs="+", type=positive_int, help=f"default {d.batch_size}, or the recipe's")
    p.add_argument("--seed", nargs="+", type=non_negative_int, default=[d.seed], help=f"default {d.seed}")
    p.add_argument("--precision", nargs="+", help=f"of {', '.join(PRECISIONS[:3])} (default float32; "
                                                  "profile native always runs the framework's default)")
    p.add_argument("--device", nargs="+", default=["cpu"], help=f"of {', '.join(DEVICES)} (default cpu)")
    p.add_argument("--epochs", type=positive_int, help=f"default {d.epochs}, or the recipe's")
    p.add_argument("--optimizer", help=f"adam or sgd (default {d.optimizer})")
    p.add_argument("--lr", type=positive_float, help=f"learning rate (default {d.lr})")
    p.add_argument("--eps", type=positive_float, help=f"Adam epsilon in profile equal (default {d.eps})")
    p.add_argument("--init", default=d.init, choices=("canonical", "native"),
                   help="profile equal's initial weights: the harness's (canonical, the default) or each "
                        "framework's own")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads per cell (default 0: every core the cell may use)")
    p.add_argument("--out", type=Path, default=WORKSPACE,
                   help="folder for the result files (default results/runs of this checkout)")
    p.add_argument("--force", action="store_true", help="rerun cells that already ended ok or diverged")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines (CI)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one cell after another here; ray: cells in parallel as Ray tasks "
                        "(harness/ray_executor.py, the ray extra)")
    p.add_argument("--address", help="with --executor ray: the Ray cluster to join (default: start Ray here)")
    return p


def given_options(argv: list[str]) -> set[str]:
    """The options written on the command line (not defaulted), by their argparse names."""
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    refuse_ignored(args, given_options(argv))
    out = check_out(args.out)
    cells = plan_cells(args.plan, args.threads) if args.plan else expand(args, given_options(argv))
    start = time.perf_counter()
    if args.executor == "ray":
        from harness.ray_executor import run_on_ray
        counts = run_on_ray(cells, out, args.force, args.quiet, args.address)
    else:
        counts = run_matrix(cells, out, args.force, args.quiet)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"{len(cells)} cells in {time.perf_counter() - start:.0f} s: {summary}; results in {out}/")
    failed = sum(counts.get(k, 0) for k in FAILED)
    if failed:
        print(f"{failed} cells failed; run the same command again to retry them", file=sys.stderr)
        return 1
    if counts.get("skipped") == len(cells):
        print("nothing ran: every cell's framework is missing here; run it in its tox env "
              "(tox -e torch,keras,jax)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli_main(main)
