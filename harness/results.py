"""Result files: one JSON per cell, its schema, atomic writes, and where each number was measured."""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable

SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "oom", "error")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"

_SPREAD = {"type": ["object", "null"], "required": ["median", "iqr", "min", "max", "n"]}
_NA = {"type": "object", "required": ["available", "reason"]}
# A measurement, or why this machine could not take it; null only in a failed cell.
_NUMBER_OR_NA = {"anyOf": [{"type": ["number", "null"]}, _NA]}
_SPREAD_OR_NA = {"anyOf": [_SPREAD, _NA]}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fwcompare cell result",
    "type": "object",
    "required": ["schema_version", "cell", "status", "message", "metrics", "curves", "env"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "cell": {"type": "object", "required": [
            "id", "framework", "backend", "model", "mode", "dataset", "batch_size", "seed",
            "precision", "device", "epochs", "hyper", "threads"]},
        "status": {"enum": list(STATUSES)},
        "message": {"type": "string"},
        "metrics": {"type": "object", "required": [
            "first_epoch_s", "epoch_s", "train_samples_per_s", "infer_samples_per_s",
            "latency_b1_ms", "test_accuracy", "test_loss", "per_class_accuracy",
            "peak_rss_mb", "peak_device_mb", "gpu_busy_s", "gpu_utilization", "energy_j_per_epoch",
            "harness_overhead_s", "harness_overhead_fraction"],
            "properties": {"epoch_s": _SPREAD, "train_samples_per_s": _SPREAD,
                           "peak_device_mb": _NUMBER_OR_NA, "gpu_busy_s": _SPREAD_OR_NA,
                           "gpu_utilization": _NUMBER_OR_NA, "energy_j_per_epoch": _SPREAD_OR_NA}},
        # optional: a few test images with their labels (the report's digit grid), and the
        # final weights of a logistic model as .npz beside the results (its weight images)
        "predictions": {"type": "object", "required": ["index", "true", "predicted", "shape", "images_b64"]},
        "weights_file": {"type": "string"},
        "curves": {"type": "object", "required": [
            "epoch", "train_loss", "test_loss", "test_accuracy", "epoch_s"]},
        "env": {"type": "object", "required": [
            "python", "numpy", "framework_version", "keras_backend", "device_name", "cpu",
            "hostname", "platform", "commit", "dirty", "timestamp", "settings"]},
    },
}


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """write(f) into a temporary file in the same folder, fsync, then rename: whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(payload, indent=1, allow_nan=False).encode()))


def write_npz_atomic(path: Path, arrays: dict) -> None:
    import numpy as np

    write_atomic(path, lambda f: np.savez(f, **arrays))


def finished(path: Path) -> bool:
    """A cell is finished when its file parses and holds a final status."""
    try:
        return json.loads(path.read_text()).get("status") in STATUSES
    except (OSError, ValueError):
        return False


CODE_PATHS = ("harness", "impls", "pyproject.toml", "tox.ini")


def git_info() -> tuple[str, bool]:
    root = RESULTS_DIR.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # the code's files only: rewriting results/ while a matrix runs is not a dirty tree
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                                    cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit or "unknown", dirty


def source_digest() -> str:
    """SHA-256 over the harness's and impls' Python sources: which code ran, even where the
    commit cannot tell (a dirty tree, or a copy whose .git is not the code's)."""
    import hashlib

    root, h = RESULTS_DIR.parent, hashlib.sha256()
    for path in sorted([*root.glob("harness/*.py"), *root.glob("impls/*.py")]):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_env() -> dict[str, Any]:
    """Where and when: everything about the machine that does not depend on the framework."""
    import numpy

    commit, dirty = git_info()
    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "hostname": socket.gethostname(),
            "platform": platform.platform(), "commit": commit, "dirty": dirty,
            "source_sha256": source_digest(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
