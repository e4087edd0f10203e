"""Frameworks trained from the same weights on the same batches reach the same test accuracy,
and each framework's own code (profile native) reaches it within the spread of its seeds.

Reads the result files that the framework envs wrote (tox.ini: test-torch, test-keras,
test-jax write the [ci] matrix to results/ci; the parity env runs this file). Skipped
when FWCOMPARE_PARITY_DIR is unset; fails when it is set and a framework's cells are missing.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from harness.analysis.parity import tolerance
from harness.measure.results import Result
from harness.measure.store import Store
from harness.plan.frameworks import default_frameworks
from harness.plan.spec import PROFILES

RESULTS = os.environ.get("FWCOMPARE_PARITY_DIR")
pytestmark = pytest.mark.skipif(not RESULTS, reason="FWCOMPARE_PARITY_DIR unset (tox -e parity sets it)")
# The envs that write the cells checked here (tox.ini's [ci] matrix).
MAKERS = "tox -e test-torch,test-keras,test-jax"


@pytest.fixture(autouse=True, scope="module")
def results_exist():
    """One line, not a traceback per test, when the parity env runs before the envs that feed it."""
    if not any(isinstance(r, Result) for _, r in Store(Path(RESULTS)).results()):
        pytest.exit(f"no results in {RESULTS}: run `{MAKERS}` first, which write them (or `tox -m tests`)",
                    returncode=1)


def load_rows() -> list[dict]:
    rows = []
    for _, r in Store(Path(RESULTS)).results():
        if not isinstance(r, Result):
            continue  # not a result: the makers rewrite it
        c = r.cell
        rows.append({"framework": c.framework + (f"-{c.backend}" if c.backend else ""), "model": c.model,
                     "seed": c.hyper.seed, "profile": c.profile, "status": r.status,
                     "accuracy": r.metrics.test_accuracy})
    return rows


def table(rows) -> str:
    lines = [f"{'model':<9} {'seed':>4}  " + "  ".join(f"{fw:>16}" for fw in sorted({r['framework'] for r in rows}))]
    for (model, seed), group in itertools.groupby(
            sorted(rows, key=lambda r: (r["model"], r["seed"], r["framework"])), key=lambda r: (r["model"], r["seed"])):
        accs = {r["framework"]: r["accuracy"] for r in group}
        lines.append(f"{model:<9} {seed:>4}  " + "  ".join(
            f"{accs.get(fw) if accs.get(fw) is not None else 'missing':>16}"
            for fw in sorted({r['framework'] for r in rows})))
    return "\n".join(lines)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_framework_finished_every_cell(profile):
    rows = [r for r in load_rows() if r["profile"] == profile]
    assert rows, f"no {profile} results in {RESULTS}: run `{MAKERS}` first"
    frameworks = {r["framework"].split("-")[0] for r in rows}
    assert frameworks >= set(default_frameworks()), (f"missing {profile}: {set(default_frameworks()) - frameworks}; "
                                                     f"run `{MAKERS}` first")
    assert all(r["status"] == "ok" for r in rows), table(rows)


def assert_same_seed_gap_within(model: str, profile: str, tolerance: float) -> None:
    """At every seed, the frameworks' test accuracies are at most tolerance apart."""
    rows = [r for r in load_rows() if r["model"] == model and r["profile"] == profile and r["status"] == "ok"]
    seeds = sorted({r["seed"] for r in rows})
    assert len(seeds) >= 2, f"parity needs at least two seeds\n{table(rows)}"
    worst = 0.0
    for seed in seeds:
        accs = [r["accuracy"] for r in rows if r["seed"] == seed]
        worst = max(worst, max(accs) - min(accs))
    assert worst <= tolerance, f"{model} ({profile}): frameworks differ by {worst:.4f} > {tolerance:.4f}\n" + table(rows)


def models_run(profile: str) -> list[str]:
    return sorted({r["model"] for r in load_rows() if r["profile"] == profile})


def test_every_model_run_has_a_parity_bound():
    # a model without a measured seed spread fails here, loudly, rather than skipping its parity
    for profile in PROFILES:
        for model in models_run(profile):
            tolerance(model, profile)


@pytest.mark.parametrize("model", ["logistic", "mlp", "cnn"])
def test_same_seed_accuracies_agree_between_frameworks(model):
    assert_same_seed_gap_within(model, "equal", tolerance(model, "equal"))


# Profile native cannot agree step by step: each framework draws its own initial weights
# and its own batch order from the seed, and its stock optimizer has its own defaults
# (Keras's Adam epsilon is 1e-7, torch's and optax's 1e-8), and torch's pipeline
# normalises the images (and does not shuffle on a CPU). Two native runs at one seed are two
# independent runs whose means may differ, so they agree within their seed-to-seed spread plus
# the gap between the frameworks' measured means (harness/analysis/parity.py: NATIVE_TOLERANCE).
@pytest.mark.parametrize("model", ["logistic", "mlp", "cnn"])
def test_native_accuracies_agree_within_their_seed_spread(model):
    assert_same_seed_gap_within(model, "native", tolerance(model, "native"))
