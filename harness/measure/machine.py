"""Where each number was measured, and what else ran meanwhile: the machine's fingerprint, the
commit and sources, and the CPU time other processes took while a cell trained (contention)."""
from __future__ import annotations

import gc
import os
import platform
import resource
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.plan.files import REPO_ROOT

CODE_PATHS = ("harness", "impls", "pyproject.toml", "tox.ini")
# A trial is contended when other processes used more than this many cores' worth of CPU, on
# average, while it trained (or the hypervisor took that much as steal time). An idle VM
# here shows 0.01-0.03 (the runner reading its cell's output, the kernel); a low-priority
# `pip install` on the other core shows about 1.0, and slowed torch's MLP epoch 6x.
CONTENDED_CORES = 0.2


# ---------------------------------------------------------------- the machine and the code
def git_info() -> tuple[str, bool]:
    """(the commit of the code, whether the code has uncommitted changes).

    The code's commit is the last one that changed CODE_PATHS, not HEAD: a commit of results or
    docs changes nothing that runs, so results made before and after it are one commit's, and
    a long archive run resumes across it."""
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", *CODE_PATHS], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        # the code's files only: rewriting results/ while a matrix runs is not a dirty tree
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                                    cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit or "unknown", dirty


def source_digest() -> str:
    """SHA-256 over the harness's and impls' Python sources: which code ran, even where the
    commit cannot tell (a dirty tree, or a copy whose .git is not the code's)."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted([*REPO_ROOT.glob("harness/**/*.py"), *REPO_ROOT.glob("impls/**/*.py")]):
        h.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    """Lower-case words joined by '-': 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    import re

    return "-".join(re.findall(r"[a-z0-9]+", text.lower().replace("(r)", "").replace("(tm)", "")))


def nvidia_smi(*args: str) -> str | None:
    """nvidia-smi's output, or None where there is none (no driver, no GPU)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def nvidia_gpus() -> tuple[list[str], str | None, str | None]:
    """The host's NVIDIA GPUs by name, the driver version and the CUDA version the driver supports.

    Asks nvidia-smi, which, like NVML, sees every GPU whatever CUDA_VISIBLE_DEVICES says: a
    CPU cell on a GPU machine is on the same machine as its GPU cells.
    """
    query = nvidia_smi("--query-gpu=name,driver_version", "--format=csv,noheader")
    header = nvidia_smi() or ""
    if query is None:
        return [], None, None
    rows = [line.split(",") for line in query.strip().splitlines() if "," in line]
    cuda = next((part.split(":")[1].strip().split()[0] for part in header.split("|")
                 if "CUDA Version" in part), None)
    return [r[0].strip() for r in rows], (rows[0][1].strip() if rows else None), cuda


def machine_fingerprint() -> dict[str, Any]:
    """What makes two results comparable: the CPU model and cores, the GPUs, driver and CUDA.

    id names the machine: its GPU model(s) where it has NVIDIA GPUs, else its CPU model and
    core count. The report never pools two ids; the hostname is left out, as two VMs of one
    kind are one machine for the numbers.
    """
    gpus, driver, cuda = nvidia_gpus()
    cpu, cores = cpu_name(), os.cpu_count() or 1
    if gpus:
        names = sorted(set(gpus))
        machine_id = "-".join(slug(n) for n in names) + (f"-x{len(gpus)}" if len(gpus) > 1 else "")
    else:
        machine_id = f"{slug(cpu)}-{cores}c"
    return {"id": machine_id, "cpu": cpu, "cores": cores, "gpus": gpus, "driver": driver, "cuda": cuda}


def machine_env() -> dict[str, Any]:
    """Where and when: everything about the machine that does not depend on the framework."""
    import numpy

    commit, dirty = git_info()
    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "hostname": socket.gethostname(),
            "platform": platform.platform(), "commit": commit, "dirty": dirty,
            "source_sha256": source_digest(), "machine": machine_fingerprint(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ---------------------------------------------------------------- contention
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def machine_times() -> tuple[float, float, float]:
    """(busy, idle, steal) CPU seconds of the whole machine since boot, summed over its cores, from
    /proc/stat: busy is user, nice, system and interrupts; idle counts waiting for I/O; steal is
    the time the hypervisor ran something else while one of this VM's cores wanted to run."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) * TICK_S, (idle + iowait) * TICK_S, steal * TICK_S


@dataclass(frozen=True)
class ThreadTimes:
    name: str  # the thread's name as the kernel has it ("main" for the process's first thread)
    cpu_s: float  # user + system seconds it ran
    wait_s: float  # seconds it was ready to run but waited for a core (the run-queue delay)
    migrations: int = 0  # times the scheduler moved it to another core


def migrations(task: Path) -> int:
    """se.nr_migrations from the thread's /proc sched file; 0 where the kernel does not show it."""
    for line in (task / "sched").read_text().splitlines():
        if line.startswith("se.nr_migrations"):
            return int(line.rsplit(":", 1)[1])
    return 0


def thread_times() -> dict[int, ThreadTimes]:
    """This process's live threads, by thread id, from /proc/self/task: CPU from stat, run-queue
    waits from schedstat and moves between cores from sched (0 where the kernel keeps neither)."""
    threads = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            tid, stat = int(task.name), (task / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            name = "main" if tid == os.getpid() else stat[stat.index("(") + 1:stat.rindex(")")]
            waits = (task / "schedstat").read_text().split()
            threads[tid] = ThreadTimes(name, (int(fields[11]) + int(fields[12])) * TICK_S,
                                       int(waits[1]) / 1e9 if len(waits) > 1 else 0.0, migrations(task))
        except (OSError, ValueError, IndexError):
            continue
    return threads


def thread_deltas(before: dict[int, ThreadTimes], after: dict[int, ThreadTimes]) -> dict[int, ThreadTimes]:
    """Each thread's CPU, waits and migrations between two thread_times(); a thread that ended in
    between is not counted, one that started is counted from its start."""
    zero = ThreadTimes("", 0.0, 0.0)
    return {tid: ThreadTimes(t.name, t.cpu_s - before.get(tid, zero).cpu_s, t.wait_s - before.get(tid, zero).wait_s,
                             t.migrations - before.get(tid, zero).migrations) for tid, t in after.items()}


class GcClock:
    """Seconds Python's garbage collector ran in this process while the clock was installed
    (`with clock:`), from gc.callbacks' start and stop of each collection."""

    def __init__(self):
        self.seconds, self._start = 0.0, None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def __enter__(self) -> "GcClock":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)


def _descendants(pid: int) -> list[int]:
    """The live processes below pid (a DataLoader's workers, say), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def own_cpu_s() -> float:
    """CPU seconds this process and everything below it has used (threads included)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for pid in _descendants(os.getpid()):  # live children are not in RUSAGE_CHILDREN until reaped
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * TICK_S
        except (OSError, ValueError, IndexError):
            continue
    return total


def other_gpu_processes() -> list[str]:
    """Processes other than this one on the GPUs ('pid name'), as nvidia-smi lists them."""
    out = nvidia_smi("--query-compute-apps=pid,process_name", "--format=csv,noheader")
    rows = [line.split(",", 1) for line in (out or "").strip().splitlines() if "," in line]
    return [f"{pid.strip()} {name.strip()}" for pid, name in rows if pid.strip() != str(os.getpid())]


class ContentionMeter:
    """What other processes took from the machine between start() and stop()."""

    def start(self) -> "ContentionMeter":
        self.wall0 = time.perf_counter()
        (self.busy0, _, self.steal0), self.own0 = machine_times(), own_cpu_s()
        return self

    def stop(self, gpu: bool = False) -> dict[str, Any]:
        """The contention record (harness.measure.results.Contention's fields)."""
        wall = time.perf_counter() - self.wall0
        (busy, _, steal), own = machine_times(), own_cpu_s()
        other = max(0.0, (busy - self.busy0) - (own - self.own0))
        other_cores, steal_cores = other / wall if wall else 0.0, (steal - self.steal0) / wall if wall else 0.0
        gpu_others = other_gpu_processes() if gpu else []
        return {"other_cores": other_cores, "steal_cores": steal_cores, "other_cpu_s": other,
                "own_cpu_s": own - self.own0, "wall_s": wall, "load_avg": list(os.getloadavg()),
                "gpu_processes": gpu_others, "threshold": CONTENDED_CORES,
                "contended": max(other_cores, steal_cores) > CONTENDED_CORES or bool(gpu_others)}


def busy_now(seconds: float = 1.0) -> float:
    """Cores' worth of CPU that other processes use now, over `seconds` (this process idles)."""
    meter = ContentionMeter().start()
    time.sleep(seconds)
    record = meter.stop()
    return max(record["other_cores"], record["steal_cores"])
