"""python -m harness.run: train and measure a matrix of cells, one subprocess per cell.

    python -m harness.run --framework jax --model mlp --epochs 5      one cell
    python -m harness.run                                              the default matrix
    python -m harness.run --framework torch keras --model mlp cnn --batch-size 32 256 --seed 0 1
    python -m harness.run --plan gpu --out results/gpu-h100          a named set of matrices

A cell is (framework, backend, model, mode, batch size, seed, dataset, precision, device,
recipe). Each runs in a fresh process so that peak memory and allocator state do not
leak between cells, and writes one JSON file atomically under --out; finished cells are
skipped on a re-run unless --force.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cell import BACKEND_REQUIRES, Cell, cell_env, child_main, failure_payload
from harness.spec import (DEFAULT_FRAMEWORKS, GPU_ONLY_PRECISIONS, MODELS, PRECISIONS, RECIPE_MODELS, DataSpec,
                          HarnessError, Hyper, check_precision, cli_main, impls, modes)

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
DEVICES = ("cpu", "cuda")
SWEEP_BATCHES = "32 128 256 512 2048 8192"  # 256: the batch of the issue-7 targets beside 32
# Named sets of matrices, run in this order into one --out folder (the first matters most,
# so that a run cut short keeps it). Each line is a harness.run command line.
PLANS: dict[str, tuple[str, ...]] = {
    # The GPU run issue 7 asks for: every framework's idiomatic mode, then its fast paths,
    # then TF32 and bf16 for its plain and best modes, then throughput against batch size.
    # Keras on TensorFlow runs where TensorFlow is installed, and is skipped elsewhere.
    "gpu": (
        "--framework torch jax keras --backend jax torch tensorflow --device cuda",
        "--framework torch --mode compile cudagraph --device cuda",
        "--framework jax --mode scan --device cuda",
        "--framework keras --backend jax tensorflow --mode fit-jit --device cuda",
        "--framework keras --backend torch --mode fit-jit --model mlp --device cuda",
        "--framework torch --mode eager cudagraph --model mlp cnn --precision tf32 bf16 --device cuda",
        "--framework jax --mode step scan --model mlp cnn --precision tf32 bf16 --device cuda",
        "--framework keras --backend jax --mode fit-jit --model mlp cnn --precision tf32 bf16 --device cuda",
        f"--framework torch --mode eager cudagraph --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
        f"--framework jax --mode step scan --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
        f"--framework keras --backend jax --mode fit-jit --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
    ),
    # Behind results/gpu-h100; what fits in ten minutes of an H100 (15 cells took 344 s,
    # most of it process start-up and compilation): the mlp,
    # whose targets the suite was set, in every Keras-on-jax, torch and jax mode, then the
    # fastest modes on the other models and in TF32 and bf16.
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
# Python packages a framework's cells need; a framework missing here is skipped.
REQUIRES = {"torch": ("torch",), "jax": ("jax", "flax", "optax"), "keras": ("keras",), "numpy": ()}


def missing_packages(cell: Cell) -> list[str]:
    names = REQUIRES.get(cell.framework, ()) + ((BACKEND_REQUIRES[cell.backend],) if cell.backend else ())
    return [n for n in names if importlib.util.find_spec(n) is None]


def check_choice(kind: str, values, valid) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise HarnessError(f"unknown {kind} {', '.join(map(repr, bad))}; valid {kind}s: {', '.join(valid)}")


def expand(args) -> list[Cell]:
    from harness.data import DATASETS
    from harness.recipes import recipe

    registry = impls()
    check_choice("framework", args.framework, registry)
    check_choice("model", args.model, {**MODELS, **RECIPE_MODELS})
    check_choice("dataset", args.dataset, DATASETS)
    check_choice("backend", args.backend, KERAS_BACKENDS)
    check_choice("precision", args.precision, PRECISIONS)
    check_choice("device", args.device, DEVICES)
    check_choice("mode", args.mode or [], sorted({m for fw in registry for m in modes(fw)}))
    if all(d == "cpu" for d in args.device):
        for prec in args.precision:
            check_precision(prec, "cpu")
    if args.recipe:
        r = recipe(args.recipe)
        runs = [(model, dataclasses.replace(hyper, batch_size=bs))
                for model, hyper in r.runs for bs in (args.batch_size or [hyper.batch_size])]
        datas = [r.data]
    else:
        base = Hyper(optimizer=args.optimizer, lr=args.lr, **({"eps": args.eps} if args.eps else {}))
        runs = [(model, dataclasses.replace(base, batch_size=bs))
                for model in args.model for bs in (args.batch_size or [base.batch_size])]
        datas = [DataSpec(name) for name in args.dataset]
    cells = []
    for fw, (model, hyper), ds, seed, prec, dev in itertools.product(
            args.framework, runs, datas, args.seed, args.precision, args.device):
        if dev == "cpu" and prec in GPU_ONLY_PRECISIONS:
            continue  # asked for beside a GPU device: runs there only
        hyper = dataclasses.replace(hyper, seed=seed, init=args.init,
                                    epochs=hyper.epochs if args.epochs is None else args.epochs)
        chosen = [m for m in (args.mode or modes(fw)[:1]) if m in modes(fw)]
        for mode, backend in itertools.product(chosen, args.backend if fw == "keras" else [None]):
            cells.append(Cell(fw, backend, model, mode, ds, hyper, prec, dev, args.threads, args.recipe))
    return cells


def plan_cells(name: str, threads: int) -> list[Cell]:
    """The cells of a named plan, in its order, each once."""
    if name not in PLANS:
        raise HarnessError(f"unknown plan {name!r}; valid plans: {', '.join(PLANS)}")
    cells: dict[str, Cell] = {}
    for line in PLANS[name]:
        for cell in expand(parser().parse_args(line.split() + ["--threads", str(threads)])):
            cells.setdefault(cell.id, cell)
    return list(cells.values())


def run_matrix(cells: list[Cell], out_dir: Path, force: bool, quiet: bool) -> dict[str, int]:
    """Run each cell in its own process; returns the count of each outcome."""
    from tqdm import tqdm

    from harness.results import finished

    counts: dict[str, int] = {}
    bar = tqdm(total=len(cells), unit="cell", disable=quiet, dynamic_ncols=True)
    for cell in cells:
        path = out_dir / f"{cell.id}.json"
        label = cell.id.rsplit("-", 1)[0]
        missing = missing_packages(cell)
        if missing:
            outcome = "skipped"
            tqdm.write(f"skip {label}: {', '.join(missing)} not installed here "
                       f"(run it in its tox env: tox -e {cell.framework})", file=sys.stderr)
        elif finished(path) and not force:
            outcome = "done before"
            if not quiet:
                tqdm.write(f"skip {label}: finished before ({path.name}); --force reruns it",
                           file=sys.stderr)
        else:
            bar.set_description(label)
            outcome = run_child(cell, path, bar, quiet)
        counts[outcome] = counts.get(outcome, 0) + 1
        bar.update(1)
    bar.close()
    return counts


def run_child(cell: Cell, path: Path, bar, quiet: bool) -> str:
    from tqdm import tqdm
    from harness.results import write_json_atomic

    cmd = [sys.executable, "-m", "harness.run", "--cell", json.dumps(cell.asdict()), "--cell-out", str(path)]
    compile_cache = tempfile.TemporaryDirectory(prefix="fwcompare-cache-")
    # A fresh compiler cache per cell, so that first-epoch (compile) times are cold and
    # repeatable, not shortened by whatever an earlier run left on disk.
    env = {**cell_env(cell), "TORCHINDUCTOR_CACHE_DIR": compile_cache.name}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    tail: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith("epoch"):
                bar.set_postfix_str(line.split("  ")[0])
            if not quiet or line.startswith("status"):
                tqdm.write(f"  {line}" if not line.startswith("status")
                           else f"{cell.id.rsplit('-', 1)[0]}: {line}", file=sys.stderr)
        code = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    finally:
        compile_cache.cleanup()
    if code != 0 or not path.exists():  # a crash (segfault, kill) still leaves a result
        message = f"cell process exited with code {code}: " + " | ".join(tail[-5:])
        write_json_atomic(path, failure_payload(cell, "oom" if code in (-9, 137) else "error", message))
    return json.loads(path.read_text())["status"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = Hyper()
    p.add_argument("--framework", nargs="+", default=list(DEFAULT_FRAMEWORKS), help=f"of {', '.join(impls())}")
    p.add_argument("--model", nargs="+", default=list(MODELS), help=f"of {', '.join(MODELS)}")
    p.add_argument("--mode", nargs="+", help="default: each framework's first mode")
    p.add_argument("--backend", nargs="+", default=[os.environ.get("KERAS_BACKEND", "tensorflow")],
                   help=f"Keras backends, of {', '.join(KERAS_BACKENDS)}")
    p.add_argument("--dataset", nargs="+", default=["mnist"])
    p.add_argument("--recipe", help="a seed's recipe from harness/recipes.py (sets data, models, optimizer)")
    p.add_argument("--plan", help=f"a named set of matrices ({', '.join(PLANS)}; see PLANS in harness/run.py), "
                                  "in place of the axis options")
    p.add_argument("--batch-size", nargs="+", type=int, help=f"default {d.batch_size}, or the recipe's")
    p.add_argument("--seed", nargs="+", type=int, default=[d.seed])
    p.add_argument("--precision", nargs="+", default=["float32"], help=f"of {', '.join(PRECISIONS)}")
    p.add_argument("--device", nargs="+", default=["cpu"])
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}, or the recipe's")
    p.add_argument("--optimizer", default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eps", type=float, help=f"Adam epsilon (default {d.eps})")
    p.add_argument("--init", default=d.init, help="canonical (harness weights) or native")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per cell; 0 = all cores")
    p.add_argument("--out", type=Path, default=Path("results/runs"), help="folder for the JSON files")
    p.add_argument("--force", action="store_true", help="rerun cells that already have results")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines (CI)")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    p.add_argument("--cell-out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cell:
        return child_main(args.cell, args.cell_out)
    cells = plan_cells(args.plan, args.threads) if args.plan else expand(args)
    start = time.perf_counter()
    counts = run_matrix(cells, args.out, args.force, args.quiet)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"{len(cells)} cells in {time.perf_counter() - start:.0f} s: {summary}; results in {args.out}/")
    return 1 if counts.get("error") else 0


if __name__ == "__main__":
    cli_main(main)
