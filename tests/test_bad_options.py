"""The driver and the report refuse what they cannot honour, in one line and before any work,
and an interrupted report leaves the previous one whole."""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from harness.plan.errors import HarnessError
from harness.report import plots
from harness.report.__main__ import main as report_main
from tests.helpers import harness_run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
TWO = ["--framework", "numpy", "--dataset", "tiny5x5", "--model", "logistic", "--batch-size", "2",
       "--epochs", "2", "--no-report"]


def refused(proc) -> str:
    """The one line a refused command printed, after checking that it trained nothing."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("budget", ["0", "-5", "nan", "inf", "0m"])
def test_the_driver_refuses_a_budget_that_is_not_a_positive_duration(tmp_path, budget):
    line = refused(harness_run(*TWO, "--budget", budget, out=tmp_path, module="harness.drive"))
    assert "a budget is a positive time like 30m" in line and not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize("given, said", [
    ("torch=/nonexistent/python", "/nonexistent/python does not exist"),
    ("bogus=/usr/bin/python3", "no framework 'bogus'"),
    ("numpy", "--python takes FRAMEWORK=PATH"),
])
def test_the_driver_refuses_a_python_it_cannot_use(tmp_path, given, said):
    line = refused(harness_run(*TWO, "--rounds", "1", "--python", given, out=tmp_path, module="harness.drive"))
    assert said in line and not list(tmp_path.glob("*.json"))


def test_the_driver_refuses_an_interpreter_without_the_harness(tmp_path):
    bare = tmp_path / "bare-python"  # a python that exits 1 on any import: it cannot run a cell
    bare.write_text("#!/bin/sh\nexit 1\n")
    bare.chmod(0o755)
    line = refused(harness_run(*TWO, "--rounds", "1", "--python", f"numpy={bare}", out=tmp_path / "out",
                               module="harness.drive"))
    assert "cannot import this harness" in line


def run_report(*argv) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return report_main([str(a) for a in argv])


def test_the_report_refuses_an_out_dir_it_cannot_write(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(HarnessError, match=r"^--out-dir .*a-file is a file; give a folder for the report$"):
        run_report(FIXTURES / "gpu", "--out-dir", tmp_path / "a-file")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(HarnessError, match="is not writable"):
            run_report(FIXTURES / "gpu", "--out-dir", locked / "report")


def test_an_interrupted_report_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run_report(FIXTURES / "gpu", "--out-dir", out, "--html") == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert any(p.parts[0] == "plots" for p in before)
    real_save = plots.save

    def save_then_interrupt(plt, fig, path):  # the first plot is written, then Ctrl-C
        real_save(plt, fig, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_report(FIXTURES / "cpu", "--out-dir", out, "--html")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # REPORT.md, report.html and every plot as they were, and nothing beside them
    monkeypatch.setattr(plots, "save", real_save)
    assert run_report(FIXTURES / "cpu", "--out-dir", out) == 0 and (out / "REPORT.md").read_bytes() != before[
        Path("REPORT.md")]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
