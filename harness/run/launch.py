"""The parent side of one cell: its environment, its process, and what is recorded when it dies.

run_cell_process starts `python -m harness.measure.child` for a cell and waits for it. The child
writes its own result into the store; when it dies without one (a kill, a crash, a full
disk), this side records why, from evidence: out of memory when the kernel's OOM killer's
counter (the cgroup's oom_kill) rose during the cell, or when the cell's last lines carry an
allocator's own words (OOM_WORDS), never from an exit code alone. The child dies with its
parent (PR_SET_PDEATHSIG), so a killed runner leaves no orphan cell.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.measure.faults import WRITE_FAILED, out_of_memory
from harness.measure.store import Attempt
from harness.plan.cell import Cell
from harness.plan.files import REPO_ROOT
from harness.plan.frameworks import framework

CGROUP_EVENTS = Path("/sys/fs/cgroup/memory.events")  # cgroup v2: oom_kill counts the OOM killer's kills


def cell_env(cell: Cell) -> dict[str, str]:
    """Environment pinned before any framework is imported: threads, allocators, backend, precision."""
    env = dict(os.environ)
    # 0 threads: every core this process may run on (under the Ray executor, those it was given)
    threads = cell.threads or len(os.sched_getaffinity(0)) or 1
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1",
        # the child imports the harness from this checkout, whatever the working directory
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    })
    for name, value in framework(cell.framework).cell_env(cell.backend, cell.device, cell.precision, threads,
                                                         cell.profile).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env.update(dict(cell.env))  # a noise experiment's variant, last: it may override any of the above
    return env


def die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGKILL when its parent dies, and Ctrl-C is
    the parent's to handle (it kills the child), so that a cell interrupted mid-way records nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


def death_status(code: int, oom_before: int | None, oom_after: int | None,
                 last_lines: Sequence[str] = ()) -> tuple[str, str]:
    """(status, why) for a child that exited with `code` and wrote no result, its last lines in last_lines."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        how = f"killed by {name}"
    else:
        how = f"the cell's process exited with code {code}"
    if code < 0 and oom_before is not None and oom_after is not None and oom_after > oom_before:
        return "oom", f"{how}: the kernel's OOM killer (cgroup memory.events oom_kill {oom_before} -> {oom_after})"
    said = out_of_memory("\n".join(last_lines))
    if said:
        return "oom", f"{how}: out of memory ({said[:200]})"
    return ("killed" if code < 0 else "error"), how


def run_cell_process(cell: Cell, attempt: Attempt, on_line: Callable[[str], None] | None = None,
                     python: str = sys.executable, context: dict[str, Any] | None = None) -> str:
    """Train `cell` in a fresh process (of `python`) that writes its result into the attempt's
    store; returns its status ("write failed" if none could be written).

    on_line gets each line the child prints, and then, however the cell ended (ok, diverged,
    an error, out of memory, killed), exactly one line "status STATUS[: why]": the child's own,
    or the one this side writes for it. context (the driver's round) goes into the result.
    """
    env = {**cell_env(cell), "TORCHINDUCTOR_CACHE_DIR": str(attempt.scratch / "inductor"),
           "TMPDIR": str(attempt.scratch)}
    oom_before = oom_kills()
    argv = [python, "-m", "harness.measure.child", json.dumps(cell.asdict()), str(attempt.store.root),
            json.dumps(context or {})]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=die_with_parent)
    tail: list[str] = []
    own = None  # the child's status line: said once the attempt has ended, as it may yet be put back
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith("status "):
                own = line
            elif on_line:
                on_line(line)
        code = proc.wait()
    except BaseException:  # Ctrl-C or a kill of the runner: the cell goes with it
        proc.kill()
        proc.wait()
        attempt.close()
        raise
    said: list[str] = []

    def say(line: str) -> None:  # a put-back result's line ("... the result from before is kept")
        said.append(line)
        if on_line:
            on_line(line)

    status = attempt.finish(say)
    if status is not None:
        if not said:
            say(own or f"status {status}")
        return status
    if code == WRITE_FAILED:
        status, why = "error", tail[-1].removeprefix("status error: ") if tail else "write failed"
        recorded = why
    else:
        status, why = death_status(code, oom_before, oom_kills(), tail)
        recorded = f"{why}; last lines: " + " | ".join(tail[-5:])
    outcome = attempt.fail(status, recorded, say)
    if not said:
        say(f"status {status}: {why}")
    return outcome
