"""harness.stats on synthetic trials of known truth.

Process-to-process timing noise is modelled as log-normal: "15% noise" is an sd of 0.15 of
the log time. Every test draws from its own fixed seed, so each result below is reproducible;
the shares asserted sit below the measured ones by a few binomial standard errors.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from harness import stats
from harness.stats import (MIN_TRIALS, Interval, accuracy_equivalence, accuracy_summary, compare_regression,
                           compare_speed, median_interval, noise_floor, speed_ratio, stability_warning)


def trials(rng: np.random.Generator, n: int, noise: float, seconds: float = 1.0) -> np.ndarray:
    """n trials' steady epoch times: `seconds` times log-normal noise of sd `noise` in log time."""
    return seconds * np.exp(rng.normal(0.0, noise, n))


def verdict_shares(seed: int, n: int, draws: int, slowdown: float, noise: float = 0.15, **kw) -> dict:
    """Share of each verdict kind of jax (1 s) against torch (`slowdown` s) over `draws` draws."""
    rng = np.random.default_rng(seed)
    kinds = [compare_speed("jax", trials(rng, n, noise), "torch", trials(rng, n, noise, slowdown), **kw).kind
             for _ in range(draws)]
    return {kind: kinds.count(kind) / draws for kind in set(kinds)}


# 1. A 1.3x difference under 15% noise. No valid test finds it every time at 5 trials a side
# (a t-test on log times, the best there is for log-normal noise, would in 68%), so the share
# asserted is what the exact permutation test gives, and more trials make it near certain.
@pytest.mark.parametrize("n, draws, least", [
    (5, 200, 0.58),   # measured 134/200 here; 67% over 2000 draws
    (8, 100, 0.82),   # measured 89/100 here; 91% over 500 draws
    (12, 60, 0.93),   # measured 59/60 here; 98% over 300 draws
])
def test_a_1_3x_difference_is_found(n, draws, least):
    shares = verdict_shares(seed=n, n=n, draws=draws, slowdown=1.3)
    assert shares.get("faster", 0) >= least
    assert shares.get("slower", 0) == 0  # never the wrong way round


def test_three_trials_a_side_never_give_a_verdict():
    # The exact test's smallest p-value at 3 against 3 is 2/20 = 0.1: even a 3x gap stays open.
    verdict = compare_speed("jax", [1.0, 1.01, 0.99], "torch", [3.0, 3.02, 2.97])
    assert verdict.kind == "undecided" and not verdict.decided
    assert verdict.p_value == pytest.approx(0.1)
    assert compare_speed("jax", [1.0, 1.01, 0.99, 1.0], "torch", [3.0, 3.02, 2.97, 3.01]).kind == "faster"


# 2. A/A: identical distributions get a verdict in about 5% of draws (alpha), no more.
def test_identical_samples_rarely_get_a_verdict():
    shares = verdict_shares(seed=2, n=5, draws=1000, slowdown=1.0)
    # measured 0.055 here (55/1000), 0.049-0.054 on three other seeds; the exact test's size at
    # 5 against 5 is 12/252 = 0.048. Without the test (the interval alone) it would be 0.13 (measured).
    assert shares.get("faster", 0) + shares.get("slower", 0) <= 0.07


# 3. The noise floor: a verdict needs an effect beyond it; equal samples inside it are "same".
def test_an_effect_inside_the_noise_floor_gives_no_verdict():
    shares = verdict_shares(seed=3, n=8, draws=40, slowdown=1.15, noise=0.05, noise_floor=1.3)
    assert shares.get("faster", 0) == 0 and shares.get("slower", 0) == 0
    assert verdict_shares(seed=3, n=8, draws=40, slowdown=1.15, noise=0.05)["faster"] >= 0.95  # floor 1


def test_an_effect_beyond_the_noise_floor_gets_a_verdict():
    assert verdict_shares(seed=4, n=5, draws=40, slowdown=2.0, noise=0.05, noise_floor=1.3)["faster"] == 1.0


def test_a_tight_pair_of_equal_samples_inside_the_floor_is_the_same():
    rng = np.random.default_rng(5)
    verdict = compare_speed("jax", trials(rng, 5, 0.02), "torch", trials(rng, 5, 0.02), noise_floor=1.1)
    assert verdict.kind == "same" and verdict.decided
    assert re.fullmatch(r"jax against torch: no measurable difference \(0\.\d\d-1\.\d\d\)", verdict.text)
    assert compare_speed("jax", [1.0] * 4, "torch", [1.0] * 4, noise_floor=1.1).kind == "same"
    with pytest.raises(ValueError):
        compare_speed("jax", [1.0] * 4, "torch", [1.0] * 4, noise_floor=0.9)


def test_noise_floor_is_the_widest_side_of_the_a_a_interval():
    rng = np.random.default_rng(6)
    twin_a, twin_b = trials(rng, 5, 0.15), trials(rng, 5, 0.15)
    ratio, reverse = speed_ratio(twin_a, twin_b), speed_ratio(twin_b, twin_a)
    assert noise_floor(twin_a, twin_b) == max(ratio.high, 1 / ratio.low) > 1.0
    assert noise_floor(twin_b, twin_a) == max(reverse.high, 1 / reverse.low) > 1.0
    assert 1 / ratio.low > ratio.high or 1 / reverse.low > reverse.high  # both sides are looked at
    assert noise_floor(twin_a[:2], twin_b) == 1.0  # too few trials: no floor known
    assert noise_floor([2.0] * 3, [2.0] * 3) == 1.0


# 4. Too few trials, and comparing two archives.
def test_too_few_trials_give_no_verdict():
    verdict = compare_speed("torch eager", [1.0, 1.1], "jax step", [2.0, 2.1, 1.9, 2.0, 2.2])
    assert verdict.kind == "too few" and not verdict.decided
    assert verdict.text == "torch eager against jax step: 2 and 5 trials, no verdict (3 needed)"
    assert MIN_TRIALS == 3
    one = compare_regression([1.0], [2.0])
    assert (one.kind, one.text) == ("too few", "one trial: no verdict")


def test_regression_is_rarely_called_on_identical_archives():
    rng = np.random.default_rng(7)
    verdicts = [compare_regression(trials(rng, 5, 0.15), trials(rng, 5, 0.15)) for _ in range(200)]
    regressions = sum(v.text.startswith("REGRESSION") for v in verdicts)
    assert regressions <= 2  # measured 0/200 (2 "faster", 4 "same", 194 "undecided")
    assert all(v.kind != "slower" for v in verdicts if not v.text.startswith("REGRESSION"))


def test_a_1_5x_slowdown_is_a_regression():
    rng = np.random.default_rng(8)
    verdicts = [compare_regression(trials(rng, 5, 0.10), trials(rng, 5, 0.10, 1.5)) for _ in range(50)]
    assert sum(v.kind == "slower" for v in verdicts) >= 48  # measured 50/50
    assert re.fullmatch(r"REGRESSION: B \d\.\d\d?x slower than A \(\d\.\d\d?-\d\.\d\d?\)", verdicts[0].text)


def test_a_slowdown_within_the_threshold_or_the_floor_is_no_regression():
    rng = np.random.default_rng(9)
    a, b = trials(rng, 8, 0.01), trials(rng, 8, 0.01, 1.05)  # 5% slower, measured precisely
    assert compare_regression(a, b, threshold=0.10).kind == "same"
    assert compare_regression(a, b, threshold=0.02).kind == "slower"
    assert compare_regression(a, b, threshold=0.02, noise_floor=1.10).kind == "same"
    assert compare_regression(a, b * 3, noise_floor=2.5).kind == "same"  # floor past 2x: no regression
    faster = compare_regression(b, a, threshold=0.02)
    assert faster.kind == "faster" and faster.text.startswith("B 1.05x faster than A (")


# 5. Texts: the faster one named first, the interval in brackets.
def test_verdict_texts_name_the_faster_first():
    rng = np.random.default_rng(10)
    jax, torch = trials(rng, 6, 0.05, 1.0), trials(rng, 6, 0.05, 1.8)
    for verdict in (compare_speed("jax step", jax, "torch eager", torch),
                    compare_speed("torch eager", torch, "jax step", jax)):
        match = re.fullmatch(r"jax step (\d\.\d)x faster than torch eager \((\d\.\d)-(\d\.\d)\)", verdict.text)
        assert match, verdict.text
        jax_speedup = verdict.ratio if verdict.kind == "faster" else Interval(
            1 / verdict.ratio.estimate, 1 / verdict.ratio.high, 1 / verdict.ratio.low, verdict.ratio.n)
        assert match.groups() == tuple(f"{v:.1f}" for v in (jax_speedup.estimate, jax_speedup.low,
                                                             jax_speedup.high))
    assert [v.kind for v in (compare_speed("jax step", jax, "torch eager", torch),
                             compare_speed("torch eager", torch, "jax step", jax))] == ["faster", "slower"]


def test_no_difference_text_and_interval_text():
    rng = np.random.default_rng(11)
    verdict = compare_speed("a", trials(rng, 5, 0.15), "b", trials(rng, 5, 0.15))
    assert verdict.kind == "undecided" and not verdict.decided
    assert verdict.text == f"a against b: no measurable difference ({verdict.ratio.low:.2f}-{verdict.ratio.high:.2f})"
    assert Interval(1.82, 1.61, 2.03, 5).text(".2f") == "1.82 (1.61-2.03)"
    assert Interval(1.82, math.nan, math.nan, 2).text(".2f") == "1.82"


# The intervals themselves.
def test_speed_ratio_is_the_ratio_of_geometric_means():
    x, y = [1.0, 2.0, 8.0], [3.0, 3.0, 3.0]
    ratio = speed_ratio(x, y)
    assert ratio.estimate == pytest.approx(3.0 / 16 ** (1 / 3))  # geomean(y) / geomean(x); medians: 3 / 2
    assert ratio.low < ratio.estimate < ratio.high and ratio.n == 3
    assert speed_ratio(y, x).estimate == pytest.approx(1 / ratio.estimate)
    assert math.isnan(speed_ratio(x[:2], y).low)


def test_median_interval():
    rng = np.random.default_rng(12)
    values = trials(rng, 7, 0.15, 2.0)
    interval = median_interval(values)
    assert interval.estimate == np.median(values) and interval.n == 7
    assert values.min() <= interval.low <= interval.estimate <= interval.high <= values.max()
    assert median_interval([1.5, 1.5, 1.5]) == Interval(1.5, 1.5, 1.5, 3)
    short = median_interval([1.0, 2.0])
    assert short.estimate == 1.5 and math.isnan(short.low) and math.isnan(short.high)


def test_stability_warning():
    assert stability_warning("torch eager", [1.0, 1.02, 0.99]) is None
    assert "torch eager is unstable" in stability_warning("torch eager", [1.0, 1.5, 2.2])


def test_the_module_imports_no_framework_and_nothing_of_the_suite():
    source = open(stats.__file__).read()
    imports = set(re.findall(r"^(?:from|import) (\w+)", source, re.MULTILINE))
    assert imports <= {"__future__", "dataclasses", "math", "numpy", "scipy"}


# 6. Accuracy.
def test_accuracy_summary():
    mean, sd, n = accuracy_summary([0.97, 0.98, 0.99])
    assert (mean, sd, n) == (pytest.approx(0.98), pytest.approx(0.01), 3)
    mean, sd, n = accuracy_summary([0.97])
    assert mean == 0.97 and math.isnan(sd) and n == 1


def test_accuracy_equivalence():
    torch = {0: 0.9800, 1: 0.9750, 2: 0.9700}
    same = accuracy_equivalence(torch, {0: 0.9810, 1: 0.9719, 3: 0.5}, tolerance=0.0102)  # seed 3: jax only
    assert (same.kind, same.seeds) == ("same", 2) and same.largest_gap == pytest.approx(0.0031)
    assert same.text == "same accuracy within 0.0102 (largest same-seed gap 0.0031)"
    different = accuracy_equivalence(torch, {0: 0.9810, 1: 0.9600}, tolerance=0.0102)
    assert different.kind == "different" and different.largest_gap == pytest.approx(0.0150)
    assert different.text == "accuracy differs by 0.0150 at seed 1, beyond 0.0102"
    none = accuracy_equivalence(torch, {7: 0.98}, tolerance=0.0102)
    assert none.kind == "too few" and none.seeds == 0
