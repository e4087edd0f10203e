"""Running cells: what both executors ask first (why_not_run), and the local executor, which
runs one cell after another in its own process (harness.launch), through the folder's store.

A cell that another run on the same folder is training is put off to the end, and then
waited for: it is never trained twice at once.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from harness.cell import Cell
from harness.results import FINAL_STATUSES
from harness.store import Store

FAILED = ("oom", "killed", "error", "write failed")


def warn_if_busy(say: Callable[[str], None], seconds: float = 0.3) -> float:
    """Say so when other processes already load the machine: what trains now will be contended."""
    from harness.machine import CONTENDED_CORES, busy_now

    busy = busy_now(seconds)
    if busy > CONTENDED_CORES:
        say(f"warning: other processes are using {busy:.1f} cores of this machine right now; timings taken "
            f"beside them are marked contended (env.contention) and left out of verdicts")
    return busy


def why_not_run(cell: Cell, store: Store, force: bool, quiet: bool, waited: bool, say,
                missing: Callable[[Cell], list[str]] | None = None) -> str | None:
    """The outcome of a cell that needs no run (skipped, done before, done elsewhere), or None;
    says so, and says when a failed cell is run again. Every executor asks this first.

    missing(cell): the packages the cell's interpreter lacks (default: this interpreter's).
    """
    from harness.matrix import missing_packages
    from impls.records import framework

    absent = (missing or missing_packages)(cell)
    if absent:
        env = framework(cell.framework).tox_env(cell.backend)
        say(f"skip {cell.label}: {', '.join(absent)} not installed in its environment "
            f"(run it in its tox env: tox -e {env}; harness.drive uses .tox/{env} "
            f"once `tox -e {env} --notest` made it)")
        return "skipped"
    before = store.read(cell)
    if before and before.status in FINAL_STATUSES and not force:
        if not quiet or waited:
            say(f"skip {cell.label}: {'another run finished it' if waited else 'finished before'} "
                f"({before.status}); --force reruns it")
        return "done elsewhere" if waited else "done before"
    if before:
        say(f"rerun {cell.label}: it ended {before.status} before ({before.message[:120]})")
    return None


def progress(total: int, quiet: bool):
    """A progress bar on stderr, and a say() that prints above it."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="cell", disable=quiet, dynamic_ncols=True)

    def say(text: str) -> None:
        tqdm.write(text, file=sys.stderr)

    return bar, say


def run_matrix(cells: list[Cell], store: Store, force: bool, quiet: bool, python_for=None,
               context_for: Callable[[Cell], dict[str, Any]] | None = None,
               missing: Callable[[Cell], list[str]] | None = None) -> dict[str, int]:
    """Run each cell in its own process; returns the count of each outcome.

    python_for(cell): the interpreter of the cell's framework environment (default this one),
    missing(cell): what that interpreter lacks; context_for(cell): what the cell records of the
    schedule that ran it (the driver's round).
    """
    store.clean_stale()
    counts: dict[str, int] = {}
    bar, say = progress(len(cells), quiet)
    queue, put_off = list(cells), []
    while queue:
        cell = queue.pop(0)
        waiting = cell in put_off
        lock = store.lock(cell)
        if not lock.acquire(wait=waiting):
            say(f"wait {cell.label}: another run on {store.root} is training it; it comes last")
            put_off.append(cell)
            queue.append(cell)
            lock.release()
            continue
        try:
            outcome = why_not_run(cell, store, force, quiet, waiting, say, missing) or run_one(
                cell, store, quiet, bar, say, python_for(cell) if python_for else sys.executable,
                context_for(cell) if context_for else None)
        finally:
            lock.release()
        counts[outcome] = counts.get(outcome, 0) + 1
        bar.update(1)
    bar.close()
    return counts


def run_one(cell: Cell, store: Store, quiet: bool, bar, say, python: str, context: dict | None) -> str:
    """One cell in its own process; its status."""
    from harness.launch import run_cell_process

    bar.set_description(cell.label)

    def on_line(line: str) -> None:
        if line.startswith("epoch"):
            bar.set_postfix_str(line.split("  ")[0])
        if line.startswith("status"):
            say(f"{cell.label}: {line}")
        elif not quiet:
            say(f"  {line}")

    outcome = run_cell_process(cell, store.begin(cell), on_line, python, context)
    if outcome == "write failed":
        say(f"{cell.label}: its result could not be written to {store.root}; a rerun tries it again")
    return outcome
