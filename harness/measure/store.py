"""One results folder, owned here: where a cell's file lives, its lock, whether it is done,
the result from before set aside and put back, scratch folders and their cleanup, success
and failure records, and reading. Both executors, the cell's process, the plain loops and
the report go through it; nothing else opens a cell's path.

A run of a cell is an Attempt: begun (the result from before set aside, a scratch folder
made), then finished with the cell's own result, or failed. A failure never overwrites a
result that ended ok or diverged: a forced rerun that dies puts the earlier result back,
whichever executor ran it, and the next run on the folder puts back what a killed runner
had set aside.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.measure.machine import machine_env
from harness.measure.results import (FINAL_STATUSES, SCHEMA_VERSION, Curves, Data, Env, Metrics, Result, SchemaError,
                                     build, parse, read)
from harness.plan.cell import Cell
from harness.plan.files import write_atomic, write_json_atomic
from harness.plan.frameworks import framework

SCRATCH = ".scratch"  # per-attempt compiler caches and temporary files
LOCKS = ".locks"
WEIGHTS = "weights"  # a logistic model's final weights, for the report's weight images
STALE_TEMP_S = 60  # write_atomic's temporaries live for milliseconds: one a minute old is a killed write's


class CellLock:
    """An exclusive lock on one cell's result in one folder, released when the process ends."""

    def __init__(self, store: "Store", cell: Cell):
        folder = store.root / LOCKS
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


class Store:
    """The results folder at root."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def _path(self, cell: Cell) -> Path:
        return self.root / f"{cell.id}.json"

    def weights_path(self, cell: Cell) -> Path:
        return self.root / WEIGHTS / f"{cell.id}.npz"

    # ------------------------------------------------------------ reading
    def read(self, cell: Cell) -> Result | None:
        """The cell's result, or None where it has none this checkout can read."""
        try:
            return read(self._path(cell))
        except SchemaError:
            return None

    def documents(self) -> Iterator[tuple[Path, Any]]:
        """Every JSON file under the folder (hidden ones left out): (path, parsed JSON or the error)."""
        for path in sorted(self.root.rglob("*.json")):
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                continue  # a temporary, a result set aside, a tool's cache
            try:
                yield path, json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                yield path, exc

    def results(self) -> Iterator[tuple[Path, Result | SchemaError]]:
        """Every result file under the folder, upgraded to this schema, or why it is not one."""
        for path, doc in self.documents():
            try:
                yield path, parse(doc) if not isinstance(doc, Exception) else _unreadable(doc)
            except SchemaError as exc:
                yield path, exc

    def lock(self, cell: Cell) -> CellLock:
        return CellLock(self, cell)

    # ------------------------------------------------------------ writing
    def write(self, cell: Cell, result: Result) -> None:
        """The cell's result, atomically (OSError if it cannot be written: a full disk)."""
        write_json_atomic(self._path(cell), result.to_dict())

    def write_weights(self, cell: Cell, arrays: dict) -> str:
        """A model's final weights beside the results; their path relative to the folder."""
        import numpy as np

        path = self.weights_path(cell)
        write_atomic(path, lambda f: np.savez(f, **arrays))
        return path.relative_to(self.root).as_posix()

    def write_failure(self, cell: Cell, status: str, message: str, env_extra: dict | None = None) -> str:
        """A failure record for the cell; its status, or "write failed" when even that cannot be written."""
        try:
            self.write(cell, failure_record(cell, status, message, env_extra))
        except OSError:
            return "write failed"
        return status

    def begin(self, cell: Cell, scratch: bool = True) -> "Attempt":
        return Attempt(self, cell, scratch)

    def update_json(self, name: str, update: Callable[[dict], dict]) -> dict:
        """A side file of the folder (say plain-loops.json) rewritten by update(old), one writer at a time."""
        (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCKS / f"{name}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            new = update(self.read_json(name))
            write_json_atomic(self.root / name, new)
        return new

    def read_json(self, name: str) -> dict:
        path = self.root / name
        return json.loads(path.read_text()) if path.exists() else {}

    # ------------------------------------------------------------ cleaning up after killed runs
    def clean_stale(self) -> None:
        """Remove the scratch folders and temporaries that killed runs left, and put back a result
        that a killed runner's forced rerun had set aside."""
        for folder in (self.root / SCRATCH).glob("*"):
            pid = folder.name.split("-", 1)[0]
            if not pid.isdigit() or not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        for backup in self.root.glob(".*.json.previous"):
            final = backup.with_name(backup.name[1:].removesuffix(".previous"))
            try:
                backup.unlink() if final.exists() else os.replace(backup, final)
            except OSError:
                pass
        for tmp in [*self.root.glob(".*.tmp"), *self.root.glob(f"{WEIGHTS}/.*.tmp")]:
            try:
                if time.time() - tmp.stat().st_mtime > STALE_TEMP_S:
                    tmp.unlink()
            except OSError:
                pass


class Attempt:
    """One run of a cell into a store: the result from before kept aside until this run ends."""

    def __init__(self, store: Store, cell: Cell, scratch: bool):
        self.store, self.cell = store, cell
        self.path = store._path(cell)
        self.previous = store.read(cell)
        self._backup = self.path.with_name(f".{self.path.name}.previous")
        self.scratch: Path | None = None
        store.root.mkdir(parents=True, exist_ok=True)
        if scratch:
            (store.root / SCRATCH).mkdir(exist_ok=True)
            # a fresh folder per attempt: compiler caches start cold, so first epochs are repeatable
            self.scratch = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=store.root / SCRATCH))
        if self.path.exists():
            os.replace(self.path, self._backup)

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def finish(self, say: Callable[[str], None] | None = None) -> str | None:
        """The status of the result the cell wrote, or None if it wrote none. A failure it wrote
        does not replace a final result from before: that one is put back."""
        self.close()
        result = self.store.read(self.cell)
        if result is None:
            return None
        if result.status not in FINAL_STATUSES and self._previous_was_final():
            return self._put_back(result.status, result.message, say)
        self._backup.unlink(missing_ok=True)
        return result.status

    def accept(self, result: dict, files: dict[str, bytes], say: Callable[[str], None] | None = None) -> str:
        """A result (and the files beside it) that the cell wrote elsewhere, now in this store (Ray)."""
        self.close()
        try:
            record = parse(result)
        except SchemaError as exc:
            return self.fail("error", f"its result could not be read: {exc}", say)
        if record.status not in FINAL_STATUSES and self._previous_was_final():
            return self._put_back(record.status, record.message, say)
        try:
            for name, content in files.items():
                write_atomic(self.store.root / name, lambda f, content=content: f.write(content))
            self.store.write(self.cell, record)
        except OSError as exc:
            return self.fail("error", f"its result could not be stored: {exc.strerror or exc}", say)
        self._backup.unlink(missing_ok=True)
        return record.status

    def fail(self, status: str, message: str, say: Callable[[str], None] | None = None,
             env_extra: dict | None = None) -> str:
        """The attempt ended without a result: the one from before is put back if it was final,
        else a failure record is written. Returns the attempt's status ("write failed" if none)."""
        self.close()
        if self._previous_was_final():
            return self._put_back(status, message, say)
        self._backup.unlink(missing_ok=True)
        return self.store.write_failure(self.cell, status, message, env_extra)

    def _previous_was_final(self) -> bool:
        return self.previous is not None and self.previous.status in FINAL_STATUSES and self._backup.exists()

    def _put_back(self, status: str, message: str, say: Callable[[str], None] | None) -> str:
        os.replace(self._backup, self.path)
        if say:
            say(f"status {status}: {message}; the result from before ({self.previous.status}) is kept")
        return status


def failure_record(cell: Cell, status: str, message: str, env_extra: dict | None = None) -> Result:
    """A cell that ended without measurements (an error, out of memory, a kill)."""
    env = {**machine_env(), "framework_version": framework(cell.framework).versions(cell.backend, cell.profile),
           "keras_backend": cell.backend, "device_name": None, "settings": {}, **(env_extra or {})}
    metrics = {name: None for name in Metrics.__dataclass_fields__} | {"steady_epoch_s": []}
    return Result(schema_version=SCHEMA_VERSION, cell=cell, status=status, message=message,
                  data=Data(cell.data.name, None, cell.data_sha256 or None, None, None, None),
                  metrics=build(Metrics, metrics), curves=Curves([], [], [], [], []), env=build(Env, env))


def _unreadable(exc: Exception):
    raise SchemaError(f"not JSON ({exc})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
