"""A fourth framework is its record, its impl and its tox env: one defined in the test tree
alone runs end to end through the runner, the driver, the step parity tests and the report, with
no file of the suite changed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT, TINY, harness_run

TOY = {"FWCOMPARE_FRAMEWORKS": "tests.toy_framework:RECORD"}


def test_a_toy_framework_from_the_test_tree_runs_through_the_runner_and_the_report(tmp_path):
    runs = tmp_path / "runs"
    proc = harness_run("--framework", "toy", "numpy", *TINY, "--profile", "equal", out=runs, env=TOY)
    assert proc.returncode == 0, proc.stderr
    toy = [json.loads(p.read_text()) for p in runs.glob("*-toy-*.json")]
    assert len(toy) == 1 and toy[0]["status"] == "ok" and toy[0]["cell"]["mode"] == "step"
    assert toy[0]["metrics"]["split"]["probe_steps"] == 5  # the overhead probe ran on it too
    report = subprocess.run([sys.executable, "-m", "harness.report", str(runs), "--out-dir", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, **TOY})
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "| toy step |" in text and "| numpy reference |" in text


def test_the_toy_framework_is_unknown_without_its_record(tmp_path):
    proc = harness_run("--framework", "toy", *TINY, out=tmp_path)
    assert proc.returncode == 2 and "unknown framework 'toy'" in proc.stderr


def test_the_toy_framework_runs_through_the_driver_and_its_report(tmp_path):
    out = tmp_path / "drive"
    proc = harness_run("--framework", "toy", "numpy", *TINY, "--profile", "equal", "--rounds", "1", "--no-report",
                       out=out, module="harness.drive", env=TOY)
    assert proc.returncode == 0, proc.stderr
    toy = [json.loads(p.read_text()) for p in out.glob("*-toy-*.json")]
    assert toy and all(r["status"] == "ok" and r["env"]["round"]["number"] == 1 for r in toy)
    report = subprocess.run([sys.executable, "-m", "harness.report", str(out), "--out-dir", str(tmp_path / "rep")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, **TOY})
    assert report.returncode == 0, report.stderr
    assert "| toy step |" in (tmp_path / "rep" / "REPORT.md").read_text()


def test_the_toy_framework_passes_the_step_parity_tests_against_the_oracle():
    """The parity suite takes its frameworks from the registry: plugged in, the toy is one of them
    (logistic only, and no narrow precisions: see tests/toy_framework.py)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_parity.py", "-q", "-p", "no:cacheprovider",
                           "-k", "toy and not mlp and not cnn and not bf16 and not narrow"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **TOY})
    assert proc.returncode == 0, proc.stdout[-2000:]
    passed = int(proc.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed == 7, proc.stdout[-500:]  # round trip, native init, forward, 50 steps of Adam and of SGD, bad mode, tf32
