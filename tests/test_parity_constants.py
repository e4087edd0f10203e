"""harness/analysis/parity.py's constants are what seed_spread computes from the committed CPU archive,
not numbers copied by hand: remaking the seed spread without updating them fails here. And they
cover every committed CPU archive's spread, so the bound holds on each kind of machine CI runs on."""
from __future__ import annotations

import pytest

from harness.analysis.parity import NATIVE_MEAN_GAP, NATIVE_SEED_SD, SEED_SD, seed_spread
from harness.measure.results import Result
from harness.measure.store import Store
from harness.plan.plans import PLANS
from tests.helpers import CPU_ARCHIVE, CPU_ARCHIVES, ROOT

SEED_SPREAD = CPU_ARCHIVE / "seed-spread"


@pytest.fixture(scope="module")
def measured():
    spread = seed_spread(SEED_SPREAD)
    remake = f"python -m harness.archive cpu {CPU_ARCHIVE.relative_to(ROOT)}"
    assert spread, f"no seed-spread results in {SEED_SPREAD}: {remake}"
    return spread


def test_equal_sds_are_the_archives(measured):
    assert SEED_SD == {model: v["sd"] for model, v in measured["equal"].items()}


def test_native_sds_and_mean_gaps_are_the_archives(measured):
    assert NATIVE_SEED_SD == {model: v["sd"] for model, v in measured["native"].items()}
    assert NATIVE_MEAN_GAP == {model: v["mean_gap"] for model, v in measured["native"].items()}


@pytest.mark.parametrize("archive", CPU_ARCHIVES, ids=lambda folder: folder.name)
def test_the_bounds_cover_every_cpu_archives_seed_spread(archive):
    used = {"equal": {"sd": SEED_SD}, "native": {"sd": NATIVE_SEED_SD, "mean_gap": NATIVE_MEAN_GAP}}
    above = [f"{profile} {model} {name} {figures[name]} > {used[profile][name][model]}"
             for profile, models in seed_spread(archive / "seed-spread").items() for model, figures in models.items()
             for name in used[profile] if figures[name] > used[profile][name][model]]
    assert not above, f"{archive.name}'s seed spread is wider than harness/analysis/parity.py's bounds: {above}"


def test_seed_spread_counts_every_framework_and_five_seeds():
    seeds: dict[tuple, set] = {}
    for _, r in Store(SEED_SPREAD).results():
        if isinstance(r, Result) and r.status == "ok":
            seeds.setdefault((r.cell.profile, r.cell.model, r.cell.framework), set()).add(r.cell.hyper.seed)
    assert {len(s) for s in seeds.values()} == {5}, seeds
    (plan,) = PLANS["cpu-seed-spread"]
    assert {fw for _, _, fw in seeds} == set(plan.framework)  # every framework the plan names
