"""Result files: one JSON per cell, its schema, atomic writes, where results live, and where each
number was measured (the machine's fingerprint, the commit, the sources' digest)."""
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

SCHEMA_VERSION = 2
# How a cell ended. Only FINAL ones are kept by a rerun: an error, an out-of-memory or a
# killed process may go another way next time, so a plain rerun tries it again.
STATUSES = ("ok", "diverged", "oom", "killed", "error")
FINAL_STATUSES = ("ok", "diverged")

# Every path the suite writes to by default is absolute, the same from any directory.
REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "results"
WORKSPACE = RESULTS_DIR / "runs"  # a user's runs (git-ignored); committed archives sit beside it
REPORT_DIR = RESULTS_DIR / "report"  # python -m harness.report's default output (git-ignored)

_SPREAD = {"type": ["object", "null"], "required": ["median", "iqr", "min", "max", "n"]}
_NA = {"type": "object", "required": ["available", "reason"]}
# A measurement, or why this machine could not take it; null only in a failed cell.
_NUMBER_OR_NA = {"anyOf": [{"type": ["number", "null"]}, _NA]}
_SPREAD_OR_NA = {"anyOf": [_SPREAD, _NA]}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fwcompare cell result",
    "type": "object",
    "required": ["schema_version", "cell", "status", "message", "data", "metrics", "curves", "env"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "cell": {"type": "object", "required": [
            "id", "framework", "backend", "model", "mode", "profile", "dataset", "data_sha256", "batch_size",
            "seed", "precision", "device", "epochs", "hyper", "threads"]},
        # what the cell trained on: where it came from and the SHA-256 of its arrays
        "data": {"type": "object", "required": ["name", "source", "sha256", "train", "val", "test"]},
        "status": {"enum": list(STATUSES)},
        "message": {"type": "string"},
        "metrics": {"type": "object", "required": [
            "samples_per_epoch", "steps_per_epoch", "first_epoch_s", "epoch_s", "steady_epoch_s", "train_samples_per_s", "infer_samples_per_s",
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
            "hostname", "platform", "commit", "dirty", "timestamp", "settings", "machine"],
            "properties": {"machine": {"type": "object", "required": ["id", "cpu", "cores", "gpus", "driver", "cuda"]}}},
    },
}


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """write(f) into a temporary file in the same folder, fsync, then rename: whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make results private to their writer
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


def schema_problem(doc) -> str | None:
    """Why doc is not a result of this schema version (its required fields), or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("schema_version") != SCHEMA_VERSION:
        return f"schema_version {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}"
    absent = [k for k in SCHEMA["required"] if k not in doc]
    for name, spec in SCHEMA["properties"].items():
        if "required" in spec and isinstance(doc.get(name), dict):
            absent += [f"{name}.{k}" for k in spec["required"] if k not in doc[name]]
    if doc.get("status") not in STATUSES:
        absent.append(f"a status of {', '.join(STATUSES)}")
    return f"missing {', '.join(absent)}" if absent else None


def read_result(path: Path) -> dict | None:
    """The result at path if it is one of this schema, else None (absent, damaged, older)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return None if schema_problem(doc) else doc


def finished(path: Path) -> bool:
    """A cell is finished when its file is a valid result with a final status (ok or diverged)."""
    doc = read_result(path)
    return doc is not None and doc["status"] in FINAL_STATUSES


CODE_PATHS = ("harness", "impls", "pyproject.toml", "tox.ini")


def git_info() -> tuple[str, bool]:
    root = REPO_ROOT
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

    root, h = REPO_ROOT, hashlib.sha256()
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


def slug(text: str) -> str:
    """Lower-case words joined by '-': 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    import re

    return "-".join(re.findall(r"[a-z0-9]+", text.lower().replace("(r)", "").replace("(tm)", "")))


def nvidia_gpus() -> tuple[list[str], str | None, str | None]:
    """The host's NVIDIA GPUs by name, the driver version and the CUDA version the driver supports.

    Asks nvidia-smi, which, like NVML, sees every GPU whatever CUDA_VISIBLE_DEVICES says: a
    CPU cell on a GPU machine is on the same machine as its GPU cells.
    """
    import shutil

    if not shutil.which("nvidia-smi"):
        return [], None, None
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return [], None, None
    rows = [line.split(",") for line in query.stdout.strip().splitlines() if "," in line]
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
