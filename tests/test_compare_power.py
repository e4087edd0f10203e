"""`--compare` sees what its data allow, shown on runs of known truth made from a committed one.

Run A is the committed Xeon main job (8 rounds, 6 configurations and both controls). Each run B
is A with every result file given a fresh process's luck (log-normal noise 0.10 on its epochs)
and, where a test says so, some configurations made slower by a known factor: so each B has
round effects of its own (A's) and the truth of every row is known.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.report import compare as comparing
from harness.report.read import read_results
from harness.report.summary import summarise
from tests.helpers import ROOT

A = ROOT / "results" / "cpu-xeon-2c-main-job" / "a"


def run_b(out: Path, seed: int, slower: dict[str, float] | None = None, noise: float = 0.10) -> Path:
    """A copy of run A with fresh luck per file, and each 'framework mode' in `slower` that many times slower."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(A.glob("*.json")):
        doc = json.loads(path.read_text())
        cell = doc["cell"]
        factor = float(np.exp(rng.normal(0, noise))) * (slower or {}).get(f"{cell['framework']} {cell['mode']}", 1.0)
        doc["metrics"]["steady_epoch_s"] = [t * factor for t in doc["metrics"]["steady_epoch_s"]]
        (out / path.name).write_text(json.dumps(doc))
    return out


def side(folder: Path):
    df = read_results([folder])
    cells = df[df["source"] == "harness"]
    return str(folder), summarise(cells), cells


def compared(b: Path) -> comparing.Comparison:
    return comparing.compare(side(A), side(b))


def flagged(comparison: comparing.Comparison) -> set[str]:
    rows = comparison.rows
    judged = rows[rows["verdict"].isin(["REGRESSION", "faster"])]
    return {f"{r['label']} {r['profile']}" for r in judged.to_dict("records")}


JAX_STEP = {f"jax step {profile}" for profile in ("equal", "native")}


def test_a_1_5x_regression_of_two_configurations_is_found_in_4_of_5_seeds_and_nothing_else(tmp_path):
    found = 0
    for seed in range(5):
        comparison = compared(run_b(tmp_path / str(seed), seed, slower={"jax step": 1.5}))
        assert flagged(comparison) <= JAX_STEP, flagged(comparison)  # no other row is flagged
        found += flagged(comparison) == JAX_STEP
        assert any("jax's configurations moved" in d for d in comparison.drift.disagreements)
    assert found >= 4  # measured 5 of 5; the drift over every configuration's trials found 0 of 5


def test_unchanged_code_flags_nothing_in_5_of_5(tmp_path):
    for seed in range(5):
        comparison = compared(run_b(tmp_path / str(seed), 10 + seed))
        assert flagged(comparison) == set() and not comparison.regressed


def test_a_drift_on_one_framework_leaves_the_others_rows_where_they_were(tmp_path):
    # without noise the others' rows read exactly unchanged (a mean drift would read them 1.055x)
    comparison = compared(run_b(tmp_path / "exact", 0, slower={"torch eager": 1 / 0.85}, noise=0.0))
    rows = comparison.rows[comparison.rows["control"].isna()].to_dict("records")
    others = [r for r in rows if r["framework"] != "torch"]
    assert len(others) == 4 and all(r["after drift"] == pytest.approx(1.0, abs=0.005) for r in others)
    assert comparison.drift.disagreements == ("torch's configurations moved 0.85x, the others 1.00x",)
    for seed in range(3):  # with each file's own luck, none of the others is flagged
        comparison = compared(run_b(tmp_path / str(seed), 20 + seed, slower={"torch eager": 1 / 0.85}))
        assert not flagged(comparison) - {"torch eager equal", "torch eager native"}, flagged(comparison)


def test_the_comparison_says_what_it_could_see(tmp_path):
    comparison = compared(run_b(tmp_path / "b", 30))
    assert 1.05 < comparison.could_see < 1.8
    lines = comparing.headline(comparison)
    assert any(line.strip().startswith(f"this comparison could see a change in training speed of "
                                       f"{comparison.could_see:.2f}x") for line in lines)
