"""A fourth framework is its record, its impl and its tox env: one defined in the test tree
alone runs end to end through the runner and the report, with no file of the suite changed."""
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
