"""What the runner's tests share: the tiny matrix, running harness.run in a real process with
the fake impls, reading what it wrote, and watching processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.measure.results import FINAL_STATUSES, SchemaError, read

ROOT = Path(__file__).resolve().parents[1]
# The CPU archive that the README's CPU section and harness/analysis/parity.py's constants come from
# (python -m harness.archive cpu ...): the tests that hold them to it read this one folder.
CPU_ARCHIVE = ROOT / "results" / "cpu-xeon-2c"
# Every committed CPU archive, one per machine kind: each must still be what the archive promises,
# and the parity bounds must cover each one's seed spread (CI runs on either kind of machine).
CPU_ARCHIVES = (ROOT / "results" / "cpu-epyc-2c", CPU_ARCHIVE)
# Impls that misbehave on purpose (tests/fake_impls.py), plugged in through $FWCOMPARE_IMPLS.
FAKES = ",".join(f"{name}=tests.fake_impls:{cls}" for name, cls in [
    ("diverging", "DivergingImpl"), ("failing", "FailingImpl"), ("oom", "OomImpl"), ("slow", "SlowImpl"),
    ("timed", "KnownSplitImpl"), ("slowepoch", "SlowEpochImpl")])
# tiny5x5 with batch 2: five steps an epoch, so a whole cell takes a fraction of a second
TINY = ["--dataset", "tiny5x5", "--model", "logistic", "--batch-size", "2", "--epochs", "3"]


def ctrl_c_as_a_terminal_sends_it() -> None:
    """In a child before exec: Ctrl-C's default disposition. A process started in the background
    of a non-interactive shell (nohup ... &) inherits SIGINT ignored, and Python then keeps it
    ignored, so the tests that interrupt a runner would wait on one that cannot hear them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def harness_run(*args, out, module: str = "harness.run", cwd=ROOT, env=None, popen=False, timeout=300):
    """python -m harness.run (or another module) with the fake impls, quiet, writing to out."""
    cmd = [sys.executable, "-m", module, *args, "--out", str(out), "--quiet"]
    env = {**os.environ, "FWCOMPARE_IMPLS": FAKES, **(env or {})}
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=ctrl_c_as_a_terminal_sends_it)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def results_in(out: Path) -> dict[str, dict]:
    """framework -> its result's JSON, for every result file in out."""
    return {d["cell"]["framework"]: d for d in (json.loads(p.read_text()) for p in Path(out).glob("*.json"))}


def finished(path: Path) -> bool:
    """Whether path holds a valid result with a final status (ok or diverged)."""
    try:
        return read(path).status in FINAL_STATUSES
    except SchemaError:
        return False


def children(pid: int) -> list[int]:
    """The processes whose parent is pid, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The error, asserting it is exactly one line and no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]
