"""The executor interface: what every executor shares, written once. An executor is given cells
and a store and runs each cell in its own process (harness.run.launch) somewhere; the locking, the
skipping and the putting off are the same for all, here:

- each cell's lock in the store is taken first; a cell another run on the same folder is training
  is put off to the end, then waited for, so no cell is ever trained twice at once;
- a cell that needs no run (its framework missing here, finished before) is skipped, and says so;
- the claimed cells go to the executor's own `run_claimed`, which ends each one through the store
  (a success or failure record, or the result from before put back) and calls done(cell, outcome).

Implementations: harness.run.local (one after another, here) and harness.run.ray_cluster (Ray
tasks); harness.run.executors names them.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

from harness.measure.machine import CONTENDED_CORES, busy_now
from harness.measure.results import FINAL_STATUSES
from harness.measure.store import Store
from harness.plan.cell import Cell
from harness.plan.frameworks import framework, make_envs_command
from harness.plan.matrix import missing_packages

FAILED = ("oom", "killed", "error", "write failed")


def warn_if_busy(say: Callable[[str], None], seconds: float = 0.3) -> float:
    """Say so when other processes already load the machine: what trains now will be contended."""
    busy = busy_now(seconds)
    if busy > CONTENDED_CORES:
        say(f"warning: other processes are using {busy:.1f} cores of this machine right now; timings taken "
            f"beside them are marked contended (env.contention) and left out of verdicts")
    return busy


def why_not_run(cell: Cell, store: Store, force: bool, quiet: bool, waited: bool, say,
                missing: Callable[[Cell], list[str]]) -> str | None:
    """The outcome of a cell that needs no run (skipped, done before, done elsewhere), or None;
    says so, and says when a failed cell is run again. missing(cell): the packages the cell's
    interpreter lacks."""
    absent = missing(cell)
    if absent:
        env = framework(cell.framework).tox_env(cell.backend)
        say(f"skip {cell.label}: {', '.join(absent)} not installed in its environment "
            f"(run it in its tox env: tox -e {env}; harness.drive uses .tox/{env} "
            f"once `{make_envs_command([env])}` made it)")
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


class Executor:
    """Runs cells through a store; a subclass says how the claimed cells run (run_claimed)."""

    claim_at_once: int | None = 1  # cells claimed before they run: 1, one after another; None, all at once

    def missing(self, cell: Cell) -> list[str]:
        """The packages the cell's interpreter lacks (this interpreter's, by default)."""
        return missing_packages(cell)

    @contextlib.contextmanager
    def session(self, say: Callable[[str], None]) -> Iterator[None]:
        """Around the whole run: what the executor starts before its first cell and stops after its last."""
        yield

    def run_claimed(self, claimed: dict[Cell, object], store: Store, quiet: bool, bar, say,
                    done: Callable[[Cell, str], None]) -> None:
        """Run the claimed cells (each lock released once its cell is ended), done(cell, outcome) after each."""
        raise NotImplementedError

    def run(self, cells: list[Cell], store: Store, force: bool = False, quiet: bool = False) -> dict[str, int]:
        """Run the cells that need it; returns the count of each outcome."""
        store.clean_stale()
        counts: dict[str, int] = {}
        bar, say = progress(len(cells), quiet)

        def done(cell: Cell, outcome: str) -> None:
            counts[outcome] = counts.get(outcome, 0) + 1
            bar.update(1)

        queue, waited = list(cells), False
        try:
            with self.session(say):
                while queue:
                    claimed, put_off = {}, []
                    for cell in queue:
                        lock = store.lock(cell)
                        if not lock.acquire(wait=waited):
                            say(f"wait {cell.label}: another run on {store.root} is training it; it comes last")
                            lock.release()
                            put_off.append(cell)
                        elif outcome := why_not_run(cell, store, force, quiet, waited, say, self.missing):
                            lock.release()
                            done(cell, outcome)
                        else:
                            claimed[cell] = lock
                            if self.claim_at_once and len(claimed) >= self.claim_at_once:
                                self.run_claimed(claimed, store, quiet, bar, say, done)
                                claimed = {}
                    if claimed:
                        self.run_claimed(claimed, store, quiet, bar, say, done)
                    queue, waited = put_off, True
        finally:
            bar.close()
        return counts
