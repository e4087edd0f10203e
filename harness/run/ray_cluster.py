"""The matrix on Ray: each cell a Ray task on whichever node has room for it.

    python -m harness.run ... --executor ray                     a Ray instance on this machine
    python -m harness.run ... --executor ray --address HOST:PORT  an existing Ray cluster

A task reserves what its cell needs (one whole GPU for a GPU cell, its threads in CPUs for
a CPU cell), runs the same cell process as the local executor (harness.run.launch) in a
temporary folder on its worker, and returns the result with the files beside it; the
driver writes them under --out in the local layout, stamped with the Ray node that ran the
cell. Workers must have the repository at the same path and the driver's Python
environment (the framework's) at the same path, as the cell process runs with that Python.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from harness.measure.store import Store
from harness.plan.cell import Cell
from harness.plan.errors import HarnessError
from harness.run.executor import Executor
from harness.run.launch import run_cell_process

INSTALL_HINT = "pip install -e '.[ray]' (or run in the tox env test-ray)"
# A cell whose worker dies (killed, node lost) runs once more elsewhere, then is recorded "killed".
RETRIES = 1
# Node-local state shared by every cell running on a node, whichever driver sent it: one
# lock file per core (held while a cell is pinned to it) and one per running cell. flock
# locks die with their process, so a killed cell leaves no core claimed.
NODE_STATE = Path(tempfile.gettempdir()) / "fwcompare-ray"
SAMPLE_S = 0.5  # how often a running cell counts the cells beside it
# This harness's scratch folders in the temp dir, "fwcompare-ray-<pid>-<random>", each owned by
# process <pid>: the Ray instance a driver starts keeps its session there (sockets, logs, spilled
# objects), and a cell's task its result. What a run starts, it stops and removes on every exit
# it sees; a folder whose owner is dead was left by a killed run (SIGKILL), with any process that
# still uses it (a killed driver's ray::DashboardAgent and ray::RuntimeEnvAgent live on under
# pid 1), and the next run clears both (clear_leftovers).
SCRATCH_PREFIX = "fwcompare-ray-"
# Ray's sockets live in its session folder and a socket's path has at most 107 bytes: in a folder
# named as above, "/session_<date>_<time>_<pid>/sockets/plasma_store" leaves 12 bytes for the temp
# dir's own path; where it is longer, the session goes in /tmp.
SOCKET_ROOM = 12


def scratch_roots() -> list[Path]:
    """Where this harness's scratch folders may be: the temp dir, and /tmp (see SOCKET_ROOM)."""
    return list(dict.fromkeys([Path(tempfile.gettempdir()), Path("/tmp")]))


def new_scratch() -> Path:
    """A scratch folder for the Ray instance this process starts."""
    root = Path(tempfile.gettempdir())
    root = root if len(str(root).encode()) <= SOCKET_ROOM else Path("/tmp")
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=root))


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


def run_cell_task(cell_dict: dict, say: bool, scratch: str | None = None) -> dict[str, Any]:
    """Body of a cell's Ray task: run the cell process here, into a store of its own (in scratch, the
    folder of the Ray instance the driver started, if it did); return its result, the files beside
    it and the node."""
    import ray


    cell = Cell.fromdict(cell_dict)
    # Ray forwards a task's prints to the driver; the cell's status line is the driver's to say
    on_line = (lambda line: None if line.startswith("status ") else print(line)) if say else None
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=scratch) as tmp:
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


def connect(address: str | None, quiet: bool, scratch: Path | None):
    """Join the Ray cluster at address, or start Ray on this machine with its session in scratch; returns ray."""
    ray = import_ray()
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                 runtime_env=worker_runtime_env(), **({"_temp_dir": str(scratch)} if scratch else {}))
    except ConnectionError as exc:
        raise HarnessError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


def stop(scratch: Path | None) -> None:
    """Leave Ray; where this run started it (its session in scratch), stop what is left of it and remove the folder."""
    import ray

    ray.shutdown()
    if scratch is not None:
        stop_processes(processes_using(scratch))
        shutil.rmtree(scratch, ignore_errors=True)


def _owner(folder: Path) -> int | None:
    pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _running(pid: int) -> bool:
    """Whether process pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_using(folder: Path) -> dict[int, str]:
    """pid -> name of every other process whose command line, environment or open files name the
    folder (Ray renames its processes, ray::DashboardAgent, but their open logs still name it)."""
    mark = re.compile(re.escape(os.fsencode(folder)) + rb"(?![\w.-])")  # the folder, not a longer name
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            uses = any(mark.search((proc / f).read_bytes()) for f in ("cmdline", "environ"))
            uses = uses or any(mark.search(_link(fd)) for fd in (proc / "fd").iterdir())
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if uses:
            found[pid] = Path(argv[0].decode(errors="replace")).name or f"pid {pid}"
    return found


def _link(fd: Path) -> bytes:
    try:
        return os.readlink(os.fsencode(fd))
    except OSError:
        return b""


def stop_processes(pids, wait_s: float = 10.0) -> None:
    """SIGKILL each process, and wait (a while) until they are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def clear_leftovers(say) -> None:
    """Stop the processes of every scratch folder whose owner is dead (a killed run's), and remove
    the folder; one line saying what was cleared, if anything. A live run's folder is never touched."""
    stale = [f for root in scratch_roots() for f in root.glob(f"{SCRATCH_PREFIX}*")
             if f.is_dir() and (owner := _owner(f)) is not None and not _running(owner)]
    if not stale:
        return
    stopped: dict[int, str] = {}
    for folder in stale:
        using = processes_using(folder)
        stop_processes(using)
        stopped.update(using)
        shutil.rmtree(folder, ignore_errors=True)
    names = ", ".join(sorted(set(stopped.values())))
    say(f"cleared what a killed Ray run left: {len(stale)} scratch folders ({', '.join(f.name for f in stale)})"
        + (f" and {len(stopped)} of its processes ({names})" if stopped else ""))


def first_line(exc: Exception) -> str:
    return next(iter(str(exc).strip().splitlines()), type(exc).__name__)


def run_tasks(ray, claimed: dict[Cell, Any], store, quiet: bool, done, say, scratch: Path | None = None) -> None:
    """Submit each claimed cell as a task and store each result as it comes back; done(cell, status) after each.

    Each cell's attempt begins before it is submitted (the result from before set aside), so
    a task that fails or a worker that dies ends it as the local executor ends a killed cell:
    a failure record, or the earlier final result put back. Ctrl-C cancels the tasks still
    out; every result stored before stays.
    """
    task = ray.remote(max_retries=RETRIES, retry_exceptions=False)(run_cell_task)
    attempts = {cell: store.begin(cell, scratch=False) for cell in claimed}
    pending = {task.options(num_cpus=cpus_reserved(cell), num_gpus=1 if cell.device == "cuda" else 0)
               .remote(cell.asdict(), not quiet, scratch and str(scratch)): cell for cell in claimed}
    unknown_node = {"ray": {"node_id": None, "node_ip": None, "gpu_ids": []}}  # the task did not return
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ref)
            attempt, kept = attempts[cell], []  # kept: the line of a result from before put back
            try:
                returned = ray.get(ref)
                status, why = returned["result"]["status"], returned["result"]["message"]
                outcome = attempt.accept(returned["result"], returned["files"], kept.append)
            except ray.exceptions.RayTaskError as exc:  # the task raised: recorded, and the matrix goes on
                status, why = "error", f"the Ray task failed: {first_line(exc)}"
                outcome = attempt.fail(status, why, kept.append, unknown_node)
            except ray.exceptions.RayError as exc:  # its worker or node died on every try
                status, why = "killed", (f"the Ray worker running it died {RETRIES + 1} times "
                                         f"({type(exc).__name__}: {first_line(exc)})")
                outcome = attempt.fail(status, why, kept.append, unknown_node)
            claimed[cell].release()
            # one line per cell, however it ended, as the local executor prints it
            why = why.split("; last lines: ")[0]  # those are in the result's message, not on the terminal
            say(f"{cell.label}: " + (kept[0] if kept else f"status {status}" + (f": {why}" if why else "")))
            if outcome == "write failed":
                say(f"{cell.label}: its result could not be written to {store.root}; a rerun tries it again")
            done(cell, outcome)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


class RayExecutor(Executor):
    """Every claimed cell a Ray task at once, each result written into the store as it comes back.
    Ray starts (or is joined, at address) with the first cell that needs a run, and is left after
    the last, on every exit."""

    claim_at_once = None

    def __init__(self, address: str | None = None):
        import_ray()  # before anything else: without ray, one line and nothing done
        self.address, self.ray, self.scratch = address, None, None

    @contextlib.contextmanager
    def session(self, say) -> Iterator[None]:
        clear_leftovers(say)
        try:
            yield
        finally:
            if self.ray is not None:
                stop(self.scratch)
                self.ray = None

    def run_claimed(self, claimed, store, quiet: bool, bar, say, done) -> None:
        if self.ray is None:
            # a Ray instance of its own: its session in a folder of ours, so that it can be cleared
            self.scratch = None if self.address or os.environ.get("RAY_ADDRESS") else new_scratch()
            self.ray = connect(self.address, quiet, self.scratch)
        run_tasks(self.ray, claimed, store, quiet, done, say, self.scratch)
