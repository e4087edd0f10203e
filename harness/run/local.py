"""The local executor: one cell after another, each in its own process, on this machine."""
from __future__ import annotations

import sys
from typing import Any, Callable

from harness.measure.store import Store
from harness.plan.cell import Cell
from harness.run.executor import Executor
from harness.run.launch import run_cell_process


class LocalExecutor(Executor):
    """Each cell in a process of its own, here, in the cells' order.

    python_for(cell): the interpreter of the cell's framework environment (default this one);
    missing_for(cell): what that interpreter lacks; context_for(cell): what the cell records of
    the schedule that ran it (the driver's round).
    """

    claim_at_once = 1

    def __init__(self, python_for: Callable[[Cell], str] | None = None,
                 missing_for: Callable[[Cell], list[str]] | None = None,
                 context_for: Callable[[Cell], dict[str, Any]] | None = None):
        self.python_for, self.missing_for, self.context_for = python_for, missing_for, context_for

    def missing(self, cell: Cell) -> list[str]:
        return self.missing_for(cell) if self.missing_for else super().missing(cell)

    def run_claimed(self, claimed, store: Store, quiet: bool, bar, say, done) -> None:
        for cell, lock in claimed.items():
            try:
                outcome = self.run_one(cell, store, quiet, bar, say)
            finally:
                lock.release()
            done(cell, outcome)

    def run_one(self, cell: Cell, store: Store, quiet: bool, bar, say) -> str:
        """One cell in its own process; its status."""
        bar.set_description(cell.label)

        def on_line(line: str) -> None:
            if line.startswith("epoch"):
                bar.set_postfix_str(line.split("  ")[0])
            if line.startswith("status"):
                say(f"{cell.label}: {line}")
            elif not quiet:
                say(f"  {line}")

        python = self.python_for(cell) if self.python_for else sys.executable
        context = self.context_for(cell) if self.context_for else None
        outcome = run_cell_process(cell, store.begin(cell), on_line, python, context)
        if outcome == "write failed":
            say(f"{cell.label}: its result could not be written to {store.root}; a rerun tries it again")
        return outcome
