"""Where the suite writes by default, and how: every file whole or absent.

Every default path is absolute and anchored at the checkout, the same from any directory.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "results"
WORKSPACE = RESULTS_DIR / "runs"  # a user's runs (git-ignored); committed archives sit beside it
REPORT_DIR = RESULTS_DIR / "report"  # python -m harness.report's default output (git-ignored)


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


def write_text_atomic(path: Path, text: str) -> Path:
    write_atomic(path, lambda f: f.write(text.encode()))
    return path


class Tee:
    """stdout and stderr to the terminal and to the log at once; the log is flushed at every
    write, so a remake killed mid-round keeps every line it printed."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        self.log.flush()
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log.flush()
