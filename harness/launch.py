"""The parent side of one cell: its environment, its process, and what is recorded when it dies.

run_cell_process starts `python -m harness.child` for a cell and waits for it. The child
writes its own result; when it dies without one (a kill, a crash, a full disk), this side
records why, from evidence: the kernel's OOM killer is named only when the cgroup's
oom_kill counter rose during the cell, never from an exit code alone. The child dies with
its parent (PR_SET_PDEATHSIG), so a killed runner leaves no orphan cell, and its scratch
folder lives under the output folder, where the next run removes what a killed one left.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from harness.cell import Cell
from harness.results import FINAL_STATUSES, REPO_ROOT, write_json_atomic

SCRATCH = ".scratch"  # hidden folder in the output folder: per-cell compiler caches
CGROUP_EVENTS = Path("/sys/fs/cgroup/memory.events")  # cgroup v2: oom_kill counts the OOM killer's kills


def cell_env(cell: Cell) -> dict[str, str]:
    """Environment pinned before any framework is imported: threads, allocators, backend, precision."""
    from impls.records import framework

    env = dict(os.environ)
    # 0 threads: every core this process may run on (under the Ray executor, those it was given)
    threads = str(cell.threads or len(os.sched_getaffinity(0)) or 1)
    env.update({
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
        # the child imports the harness from this checkout, whatever the working directory
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    })
    for name, value in framework(cell.framework).cell_env(cell.backend, cell.device, cell.precision, int(threads),
                                                                    cell.profile).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGKILL when its parent dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: a killed runner may leave its cell running


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed in this cgroup, or None if unknown."""
    try:
        for line in CGROUP_EVENTS.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def death_status(code: int, oom_before: int | None, oom_after: int | None) -> tuple[str, str]:
    """(status, why) for a child that exited with `code` and wrote no result."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        if oom_before is not None and oom_after is not None and oom_after > oom_before:
            return "oom", (f"killed by {name}: the kernel's OOM killer (cgroup memory.events oom_kill "
                           f"{oom_before} -> {oom_after})")
        return "killed", f"killed by {name}"
    return "error", f"the cell's process exited with code {code}"


def run_cell_process(cell: Cell, path: Path, on_line: Callable[[str], None] | None = None,
                     python: str = sys.executable) -> str:
    """Train `cell` in a fresh process that writes `path`; returns its status ("write failed" if none).

    on_line gets each line the child prints. A child that dies without writing a result
    gets a failure result written here; if that write fails too, the status is "write failed"
    and nothing is on disk, so a rerun tries the cell again.
    """
    from harness.child import WRITE_FAILED
    from harness.results import read_result

    path = Path(path).resolve()
    scratch_root = path.parent / SCRATCH
    try:
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=scratch_root))
    except OSError as exc:
        return _record(cell, path, "error", f"cannot write in {path.parent}: {exc.strerror or exc}")
    # A fresh compiler cache per cell, so that first-epoch (compile) times are cold and
    # repeatable, not shortened by whatever an earlier run left on disk.
    env = {**cell_env(cell), "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
           "TMPDIR": str(scratch)}
    # The result from before stays aside until this run has one: a forced rerun that dies
    # does not lose a good result (remove_stale_scratch puts it back after a killed runner).
    previous, backup = read_result(path), path.with_name(f".{path.name}.previous")
    if path.exists():
        os.replace(path, backup)
    oom_before = oom_kills()
    proc = subprocess.Popen([python, "-m", "harness.child", json.dumps(cell.asdict()), str(path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_die_with_parent)
    tail: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if on_line:
                on_line(line)
        code = proc.wait()
    except BaseException:  # Ctrl-C or a kill of the runner: the cell goes with it
        proc.kill()
        proc.wait()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = read_result(path)
    if result is not None:
        backup.unlink(missing_ok=True)
        return result["status"]
    if code == WRITE_FAILED:
        status, why = "error", tail[-1].removeprefix("status error: ") if tail else "write failed"
    else:
        status, why = death_status(code, oom_before, oom_kills())
        why = f"{why}; last lines: " + " | ".join(tail[-5:])
    if previous is not None and previous["status"] in FINAL_STATUSES:
        os.replace(backup, path)
        if on_line:
            on_line(f"status {status}: {why}; the result from before ({previous['status']}) is kept")
        return status
    backup.unlink(missing_ok=True)
    return _record(cell, path, status, why)


def _record(cell: Cell, path: Path, status: str, message: str) -> str:
    """Write a failure result for the cell; "write failed" when even that cannot be written."""
    from harness.child import failure_payload

    try:
        write_json_atomic(path, failure_payload(cell, status, message))
    except OSError:
        return "write failed"
    return status


def remove_stale_scratch(out_dir: Path) -> None:
    """Remove the scratch folders and temporary files that killed runs left in out_dir, and put
    back a result that a killed runner's forced rerun had set aside."""
    import time

    for folder in (out_dir / SCRATCH).glob("*"):
        pid = folder.name.split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    for backup in out_dir.glob(".*.json.previous"):  # a killed runner's cell: its result from before
        final = backup.with_name(backup.name[1:].removesuffix(".previous"))
        try:
            if final.exists():
                backup.unlink()
            else:
                os.replace(backup, final)
        except OSError:
            pass
    # write_atomic's temporaries live for milliseconds: one a minute old is a killed write's
    for tmp in [*out_dir.glob(".*.tmp"), *out_dir.glob("weights/.*.tmp")]:
        try:
            if time.time() - tmp.stat().st_mtime > 60:
                tmp.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
