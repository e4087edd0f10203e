"""The matrix on Ray: each cell a Ray task on whichever node has room for it.

    python -m harness.run ... --executor ray                     a Ray instance on this machine
    python -m harness.run ... --executor ray --address HOST:PORT  an existing Ray cluster

A task reserves what its cell needs (one whole GPU for a GPU cell, its threads in CPUs for
a CPU cell), runs the same cell process as the local executor (harness.launch) in a
temporary folder on its worker, and returns the result with the files beside it; the
driver writes them under --out in the local layout, stamped with the Ray node that ran the
cell. Workers must have the repository at the same path and the driver's Python
environment (the framework's) at the same path, as the cell process runs with that Python.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

from harness.cell import Cell
from harness.spec import HarnessError

INSTALL_HINT = "pip install -e '.[ray]' (or run in the tox env test-ray)"
# A cell whose worker dies (killed, node lost) runs once more elsewhere, then is recorded "killed".
RETRIES = 1
# Node-local state shared by every cell running on a node, whichever driver sent it: one
# lock file per core (held while a cell is pinned to it) and one per running cell. flock
# locks die with their process, so a killed cell leaves no core claimed.
NODE_STATE = Path(tempfile.gettempdir()) / "fwcompare-ray"
SAMPLE_S = 0.5  # how often a running cell counts the cells beside it


def import_ray():
    """ray, or one line saying how to install it: it is an optional extra."""
    try:
        import ray
    except ImportError:
        raise HarnessError(f"--executor ray needs the ray package, not installed here: {INSTALL_HINT}") from None
    return ray


def cpus_reserved(cell: Cell) -> int:
    """CPUs a cell reserves: its threads; "every core" (0) means one under Ray, where cells share nodes."""
    return max(cell.threads, 1)


# ---------------------------------------------------------------- on the worker
class NodeShare:
    """One running cell's share of its node: the cores it is pinned to, and how many cells ran beside it."""

    def __init__(self, cores_wanted: int):
        self.cores_wanted = cores_wanted  # 0: not pinned (a GPU cell)
        self.cores: list[int] = []
        self.most_concurrent = 1
        self._locks: list[Any] = []  # open files this cell holds an flock on
        self._marker: Path | None = None
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "NodeShare":
        (NODE_STATE / "cores").mkdir(parents=True, exist_ok=True)
        (NODE_STATE / "cells").mkdir(parents=True, exist_ok=True)
        self._mark_running()
        usable = sorted(os.sched_getaffinity(0))
        self.cores = self._claim_cores(usable) if self.cores_wanted else usable
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()
        self._count_running()  # a last look, for a cell shorter than one sample
        self._marker.unlink(missing_ok=True)
        for f in self._locks:
            f.close()

    def _mark_running(self) -> None:
        """A file in cells/, locked before it gets its name, so that no counter takes it for a stale one."""
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        unnamed = NODE_STATE / "cells" / f".{name}"
        f = open(unnamed, "w")
        fcntl.flock(f, fcntl.LOCK_EX)
        self._locks.append(f)
        self._marker = unnamed.with_name(name)
        os.rename(unnamed, self._marker)

    def _claim_cores(self, usable: list[int]) -> list[int]:
        """The first free cores; where too few are free (Ray was told of more CPUs than there are), shared ones too."""
        free = []
        for core in usable:
            f = open(NODE_STATE / "cores" / str(core), "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            self._locks.append(f)
            free.append(core)
            if len(free) == self.cores_wanted:
                return free
        shared = [c for c in usable if c not in free]
        return sorted(free + shared[:self.cores_wanted - len(free)])

    def _count_running(self) -> None:
        running = 0
        for path in (NODE_STATE / "cells").iterdir():
            if path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError), open(path) as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    running += 1  # locked: that cell is running
                else:
                    path.unlink(missing_ok=True)  # left by a killed cell
        self.most_concurrent = max(self.most_concurrent, running)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._count_running()


@contextlib.contextmanager
def pinned(cores: list[int]) -> Iterator[None]:
    """This thread, and so the processes it starts, on these cores only; restored after (the worker is reused)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_cell_task(cell_dict: dict, say: bool) -> dict[str, Any]:
    """Body of a cell's Ray task: run the cell process here, into a store of its own; return its
    result, the files beside it and the node."""
    import ray

    from harness.launch import run_cell_process
    from harness.store import Store

    cell = Cell.fromdict(cell_dict)
    on_line = print if say else None  # Ray forwards a task's prints to the driver
    with tempfile.TemporaryDirectory(prefix="fwcompare-ray-") as tmp:
        store = Store(Path(tmp))
        with NodeShare(cpus_reserved(cell) if cell.device == "cpu" else 0) as share, pinned(share.cores):
            run_cell_process(cell, store.begin(cell), on_line=on_line)
        result = store.read(cell).to_dict()
        # files the cell wrote beside its result (weights/), by path relative to the store
        files = {path.relative_to(store.root).as_posix(): path.read_bytes()
                 for path in (store.root / "weights").rglob("*") if path.is_file()}
    result["env"]["settings"].update(concurrent_cells=share.most_concurrent, cpu_affinity=share.cores)
    context = ray.get_runtime_context()
    node = {"node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "gpu_ids": context.get_accelerator_ids().get("GPU", [])}  # the GPUs Ray gave this cell
    result["env"]["ray"] = node
    return {"result": result, "files": files}


# ---------------------------------------------------------------- on the driver
def worker_runtime_env() -> dict[str, Any]:
    """What every worker needs: the driver's Python (the framework's environment) and its FWCOMPARE_* settings."""
    return {"py_executable": sys.executable,
            "env_vars": {k: v for k, v in os.environ.items() if k.startswith("FWCOMPARE_")}}


def connect(address: str | None, quiet: bool):
    """Join the Ray cluster at address, or start Ray on this machine; returns ray."""
    ray = import_ray()
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                 runtime_env=worker_runtime_env())
    except ConnectionError as exc:
        raise HarnessError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


def first_line(exc: Exception) -> str:
    return next(iter(str(exc).strip().splitlines()), type(exc).__name__)


def run_tasks(ray, claimed: dict[Cell, Any], store, quiet: bool, done, say) -> None:
    """Submit each claimed cell as a task and store each result as it comes back; done(cell, status) after each.

    Each cell's attempt begins before it is submitted (the result from before set aside), so
    a task that fails or a worker that dies ends it as the local executor ends a killed cell:
    a failure record, or the earlier final result put back. Ctrl-C cancels the tasks still
    out; every result stored before stays.
    """
    task = ray.remote(max_retries=RETRIES, retry_exceptions=False)(run_cell_task)
    attempts = {cell: store.begin(cell, scratch=False) for cell in claimed}
    pending = {task.options(num_cpus=cpus_reserved(cell), num_gpus=1 if cell.device == "cuda" else 0)
               .remote(cell.asdict(), not quiet): cell for cell in claimed}
    unknown_node = {"ray": {"node_id": None, "node_ip": None, "gpu_ids": []}}  # the task did not return
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ref)
            attempt = attempts[cell]
            try:
                returned = ray.get(ref)
                status = attempt.accept(returned["result"], returned["files"], say)
            except ray.exceptions.RayTaskError as exc:  # the task raised: recorded, and the matrix goes on
                status = attempt.fail("error", f"the Ray task failed: {first_line(exc)}", say, unknown_node)
            except ray.exceptions.RayError as exc:  # its worker or node died on every try
                status = attempt.fail("killed", f"the Ray worker running it died {RETRIES + 1} times "
                                      f"({type(exc).__name__}: {first_line(exc)})", say, unknown_node)
            claimed[cell].release()
            done(cell, status)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def run_on_ray(cells: list[Cell], store, force: bool, quiet: bool, address: str | None = None) -> dict[str, int]:
    """Run the cells as Ray tasks, each result written into the store; returns the count of each outcome.

    As with the local executor: finished cells are not run again unless force, and a cell
    another run on the folder is training is put off to the end, then waited for.
    """
    from harness.executor import progress, why_not_run
    from harness.results import STATUSES

    import_ray()  # before anything else: without ray, one line and nothing done
    store.clean_stale()
    counts: dict[str, int] = {}
    bar, say = progress(len(cells), quiet)

    def done(cell: Cell, outcome: str) -> None:
        counts[outcome] = counts.get(outcome, 0) + 1
        bar.update(1)
        if outcome in STATUSES:  # it ran (not skipped): its status, as the local executor prints it
            say(f"{cell.label}: status {outcome}")

    ray, queue, waited = None, list(cells), False
    try:
        while queue:
            claimed, put_off = {}, []
            for cell in queue:
                lock = store.lock(cell)
                if not lock.acquire(wait=waited):
                    say(f"wait {cell.label}: another run on {store.root} is training it; it comes last")
                    lock.release()
                    put_off.append(cell)
                elif outcome := why_not_run(cell, store, force, quiet, waited, say):
                    lock.release()
                    done(cell, outcome)
                else:
                    claimed[cell] = lock
            if claimed:
                ray = ray or connect(address, quiet)
                run_tasks(ray, claimed, store, quiet, done, say)
            queue, waited = put_off, True
    finally:
        bar.close()
        if ray:
            ray.shutdown()
    return counts
