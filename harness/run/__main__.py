"""python -m harness.run: train and measure a matrix of cells, one subprocess per cell.

    python -m harness.run --framework jax --model mlp --epochs 5      one cell
    python -m harness.run                                              the default matrix
    python -m harness.run --framework torch keras --model mlp cnn --batch-size 32 256 --seed 0 1
    python -m harness.run --model mlp --trials 3                       three processes per configuration
    python -m harness.run --plan gpu --out results/gpu-h200          a named set of matrices

Each cell runs in a fresh process (harness.run.launch) so that peak memory and allocator state
do not leak between cells, and writes one JSON file atomically under --out (default
results/runs/, git-ignored). Every option is checked, and the data loaded and validated,
before any cell trains. A rerun keeps the cells that ended ok or diverged and runs the rest
again (--force reruns all). Two runs on one --out never train the same cell at once.
For verdicts that survive this machine's noise, run the matrix through python -m harness.drive.
"""
from __future__ import annotations

import argparse
import sys
import time

from harness import data
from harness.measure.store import Store
from harness.plan.errors import HarnessError, cli_main
from harness.plan.matrix import expand, plan_cells
from harness.plan.options import Parser, add_matrix_options, check_out, given_options, refuse_ignored, selection_of
from harness.run.executor import FAILED, progress, warn_if_busy
from harness.run.executors import EXECUTORS, executor


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m harness.run", description=__doc__.split("\n")[0],
               epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_matrix_options(p)
    p.add_argument("--executor", default="local",
                   help=f"of {', '.join(EXECUTORS)}: local, one cell after another here; ray, cells in parallel "
                        "as Ray tasks (harness/run/ray_cluster.py, the ray extra) (default local)")
    p.add_argument("--address", help="with --executor ray: the Ray cluster to join (default: start Ray here)")
    return p


def cells_of(args, argv: list[str]):
    """The cells the command line selects (a plan's, or the axes'), each checked."""
    refuse_ignored(args, given_options(argv))
    cells = (plan_cells(args.plan, args.threads, args.trials) if args.plan
             else expand(selection_of(args, argv), args.threads, args.trials))
    return data.checked(cells)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.address and args.executor != "ray":
        raise HarnessError(f"--address joins a Ray cluster: give it with --executor ray, not {args.executor}")
    runner = executor(args.executor, **({"address": args.address} if args.address else {}))
    store = Store(check_out(args.out))
    cells = cells_of(args, argv)
    start = time.perf_counter()
    if args.executor == "local":
        warn_if_busy(progress(0, True)[1])
    counts = runner.run(cells, store, args.force, args.quiet)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"{len(cells)} cells in {time.perf_counter() - start:.0f} s: {summary}; results in {store.root}/")
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
