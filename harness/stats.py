"""Speed claims from several trials: intervals, verdicts and the machine's noise floor.

A trial is one process of a benchmark configuration and gives one number, its steady epoch
time in seconds (the median over its epochs, computed by the caller). On a shared machine one
configuration moves 1.3x-2.4x between processes, so every claim comes from several trials,
with an interval. What is resampled is trials, never epochs: the epochs of one process share
its luck (its cores, caches and neighbours) and are not independent draws. The ideas are
criterion.rs's, pyperf's and Google Benchmark's; scipy.stats does the resampling and the test.

* Speed ratio: `speed_ratio(x, y)` = geomean(times_y) / geomean(times_x), the ratio of the
  geometric means of the per-trial times; above 1 means x is faster. Why not medians: timing
  noise is multiplicative, close to log-normal, and the mean log time estimates it best. In
  a simulation (1.3x effect, sd 0.15 of log time, 200 draws, 5 and 8 trials a side) it gave a
  verdict in 64% and 89% of draws, the ratio of medians in 55% and 82%; with one trial in five
  slowed 1.3x-2.4x, 32% against 23% at 5. Both kept A/A false verdicts at or below 5%.
* Interval: 95% percentile bootstrap over trials, each side resampled on its own (separate
  processes, not pairs), with a fixed seed so the same trials always print the same interval.
  At few trials it is narrow (it held the true ratio in 80% of simulated draws at 3 trials a
  side, 88% at 5, 90% at 8), so a "faster"/"slower" verdict also needs the test.
* Test: a two-sided permutation test of the difference in mean log time. If nothing differs,
  every split of the pooled trials into the two groups is equally likely, so the test is exact
  at any size and assumes no distribution; it enumerates the splits up to 9999 of them (7
  trials a side) and samples 9999 beyond. At 3 trials a side its smallest p-value is 0.1, so
  a verdict needs 4 a side (or 3 against 5). Few trials limit any valid test: for 1.3x under
  15% noise this one decides in 0%, 38%, 67%, 91% and 98% of draws at 3, 4, 5, 8 and 12
  trials a side (a t-test on log times, the best test for log-normal noise: 38%, 55%, 68%,
  90% at 3-8), and identical samples get a verdict in 5% of draws at 5 a side.
* Noise floor: each round runs one configuration twice as two configurations, an A/A pair of
  identical code. Their speed-ratio interval shows how far apart identical code lands here;
  `noise_floor` makes it a factor >= 1, and a verdict needs its whole interval beyond it.

Verdicts: "faster"/"slower" when p < alpha AND the whole ratio interval lies beyond the noise
floor; "same" when it lies wholly within (wrongly, for an effect just past the floor, in 7%
of draws at 3 trials a side, 3% at 5); else "undecided" ("no measurable difference"), which
more trials may still decide. `stability_warning` flags a configuration whose trials scatter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_TRIALS = 3
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 4999
PERMUTATIONS = 9999
RESAMPLING_SEED = 0  # fixed, so the same trials always give the same interval


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval over n trials (NaN bounds where n is too small)."""
    estimate: float
    low: float
    high: float
    n: int

    @property
    def known(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self, fmt: str = ".3g") -> str:
        """'1.82 (1.61-2.03)' with fmt a format spec such as '.2f'; the estimate alone without bounds."""
        if not self.known:
            return format(self.estimate, fmt)
        return f"{self.estimate:{fmt}} ({self.low:{fmt}}-{self.high:{fmt}})"


@dataclass(frozen=True)
class Verdict:
    """kind: "faster" | "slower" | "same" | "undecided" | "too few", said of x against y.

    ratio is always x's speed over y's (speed_ratio(times_x, times_y)), whichever is faster."""
    kind: str
    ratio: Interval
    p_value: float
    text: str

    @property
    def decided(self) -> bool:
        """Whether more trials are pointless: a driver stops when every verdict is decided."""
        return self.kind in ("faster", "slower", "same")


@dataclass(frozen=True)
class AccuracyVerdict:
    """kind: "same" (every same-seed gap within tolerance) | "different" | "too few" (no common seed)."""
    kind: str
    largest_gap: float
    tolerance: float
    seeds: int
    text: str


def _log_times(times) -> np.ndarray:
    values = np.asarray(times, dtype=float).ravel()
    if np.any(values <= 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"times must be positive and finite, got {values}")
    return np.log(values)


def _log_speed_gain(log_x, log_y, axis=-1):
    """log of x's speed over y's: mean log time of y minus that of x (vectorized for scipy)."""
    return np.mean(log_y, axis=axis) - np.mean(log_x, axis=axis)


def _bootstrap_bounds(samples: tuple, statistic) -> tuple[float, float]:
    """Percentile bootstrap interval over trials, each sample resampled on its own."""
    result = stats.bootstrap(samples, statistic, vectorized=True, paired=False, method="percentile",
                             n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                             rng=np.random.default_rng(RESAMPLING_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def median_interval(values) -> Interval:
    """The median over trials with its 95% bootstrap interval (NaN bounds below MIN_TRIALS)."""
    values = np.asarray(values, dtype=float).ravel()
    if len(values) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    estimate = float(np.median(values))
    if len(values) < MIN_TRIALS:
        return Interval(estimate, math.nan, math.nan, len(values))
    low, high = _bootstrap_bounds((values,), lambda v, axis=-1: np.median(v, axis=axis))
    return Interval(estimate, low, high, len(values))


def speed_ratio(times_x, times_y) -> Interval:
    """How many times faster x is than y: geomean(times_y) / geomean(times_x), >1 = x faster.

    The 95% bootstrap interval resamples the trials of each side independently; NaN bounds
    when either side has fewer than MIN_TRIALS. n is the smaller side's number of trials."""
    log_x, log_y = _log_times(times_x), _log_times(times_y)
    n = min(len(log_x), len(log_y))
    estimate = math.exp(_log_speed_gain(log_x, log_y))
    if n < MIN_TRIALS:
        return Interval(estimate, math.nan, math.nan, n)
    low, high = _bootstrap_bounds((log_x, log_y), _log_speed_gain)
    return Interval(estimate, math.exp(low), math.exp(high), n)


def difference_p_value(times_x, times_y) -> float:
    """Two-sided permutation-test p-value of the difference in mean log time between x and y."""
    result = stats.permutation_test((_log_times(times_x), _log_times(times_y)), _log_speed_gain,
                                    vectorized=True, permutation_type="independent",
                                    n_resamples=PERMUTATIONS, alternative="two-sided",
                                    rng=np.random.default_rng(RESAMPLING_SEED))
    return float(result.pvalue)


def noise_floor(times_a, times_a_twin) -> float:
    """The machine's noise floor from an A/A pair: max(high, 1/low) of their speed-ratio interval.

    A factor >= 1; 1.0 (no floor known) when either twin has fewer than MIN_TRIALS trials."""
    ratio = speed_ratio(times_a, times_a_twin)
    if not ratio.known:
        return 1.0
    return max(ratio.high, 1.0 / ratio.low, 1.0)


def _ratio_texts(*ratios: float) -> list[str]:
    """The ratios with the decimals that give each 2-3 significant digits: 0.94, 1.31, 1.8, 12."""
    smallest = min(ratios)
    decimals = 2 if smallest < 1.5 else 1 if smallest < 10 else 0
    return [f"{r:.{decimals}f}" for r in ratios]


def _beyond_text(first: str, word: str, second: str, ratio: Interval) -> str:
    """'jax step 1.8x faster than torch eager (1.6-2.0)', ratio being a factor above 1."""
    estimate, low, high = _ratio_texts(ratio.estimate, ratio.low, ratio.high)
    return f"{first} {estimate}x {word} than {second} ({low}-{high})"


def _inverse(ratio: Interval) -> Interval:
    return Interval(1.0 / ratio.estimate, 1.0 / ratio.high, 1.0 / ratio.low, ratio.n)


def _too_few(n_x: int, n_y: int, text: str) -> Verdict:
    return Verdict("too few", Interval(math.nan, math.nan, math.nan, min(n_x, n_y)), math.nan, text)


def _too_few_text(name_x: str, name_y: str, n_x: int, n_y: int) -> str:
    return f"{name_x} against {name_y}: {n_x} and {n_y} trials, no verdict ({MIN_TRIALS} needed)"


def _verdict(name_x, times_x, name_y, times_y, faster_above: float, slower_below: float,
             alpha: float) -> Verdict:
    """The verdict of x against y once both sides have enough trials, given the ratio bounds."""
    ratio = speed_ratio(times_x, times_y)
    p_value = difference_p_value(times_x, times_y)
    if p_value < alpha and ratio.low > faster_above:
        return Verdict("faster", ratio, p_value, _beyond_text(name_x, "faster", name_y, ratio))
    if p_value < alpha and ratio.high < slower_below:
        return Verdict("slower", ratio, p_value, _beyond_text(name_y, "faster", name_x, _inverse(ratio)))
    kind = "same" if slower_below <= ratio.low and ratio.high <= faster_above else "undecided"
    low, high = _ratio_texts(ratio.low, ratio.high)
    return Verdict(kind, ratio, p_value, f"{name_x} against {name_y}: no measurable difference ({low}-{high})")


def compare_speed(name_x: str, times_x, name_y: str, times_y, noise_floor: float = 1.0,
                  alpha: float = 0.05) -> Verdict:
    """Is x faster than y? "faster"/"slower" need p < alpha and the whole interval beyond the floor.

    "same": the whole interval within [1/noise_floor, noise_floor]; "undecided": neither;
    "too few": fewer than MIN_TRIALS trials on a side."""
    if noise_floor < 1.0:
        raise ValueError(f"a noise floor is a factor of at least 1, got {noise_floor}")
    n_x, n_y = len(times_x), len(times_y)
    if min(n_x, n_y) < MIN_TRIALS:
        return _too_few(n_x, n_y, _too_few_text(name_x, name_y, n_x, n_y))
    return _verdict(name_x, times_x, name_y, times_y, noise_floor, 1.0 / noise_floor, alpha)


def compare_regression(times_a, times_b, threshold: float = 0.10, noise_floor: float = 1.0,
                       alpha: float = 0.05, name_a: str = "A", name_b: str = "B") -> Verdict:
    """B (new archive) against A (old), on one machine: "slower" is a REGRESSION.

    With margin m = max(threshold, noise_floor - 1), a regression needs B's speed over A's
    (A-time over B-time) to have its whole interval below 1 - m, and p < alpha; "faster"
    needs it above 1 / (1 - m) (the same margin the other way), "same" wholly between."""
    n_a, n_b = len(times_a), len(times_b)
    if min(n_a, n_b) < MIN_TRIALS:
        text = "one trial: no verdict" if min(n_a, n_b) == 1 else _too_few_text(name_b, name_a, n_b, n_a)
        return _too_few(n_a, n_b, text)
    slowest_allowed = 1.0 - max(threshold, noise_floor - 1.0)  # at or below 0: never a regression
    fastest_allowed = 1.0 / slowest_allowed if slowest_allowed > 0 else math.inf
    verdict = _verdict(name_b, times_b, name_a, times_a, fastest_allowed, slowest_allowed, alpha)
    if verdict.kind != "slower":
        return verdict
    slowdown = _beyond_text(name_b, "slower", name_a, _inverse(verdict.ratio))
    return Verdict("slower", verdict.ratio, verdict.p_value, f"REGRESSION: {slowdown}")


def stability_warning(name: str, times, max_spread: float = 0.10) -> str | None:
    """pyperf-like: a warning when the trials' sd of log time exceeds max_spread, else None."""
    spread = float(np.std(_log_times(times), ddof=1)) if len(times) >= 2 else 0.0
    if spread <= max_spread:
        return None
    return (f"{name} is unstable: its trials spread {spread:.0%} (sd of log time, above "
            f"{max_spread:.0%}); compare it only through intervals over more trials")


def accuracy_summary(values) -> tuple[float, float, int]:
    """(mean, sample sd, n) of accuracies; sd NaN below 2 values, mean NaN for none."""
    values = np.asarray(values, dtype=float).ravel()
    mean = float(np.mean(values)) if len(values) else math.nan
    sd = float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan
    return mean, sd, len(values)


def accuracy_equivalence(acc_x_by_seed: dict[int, float], acc_y_by_seed: dict[int, float],
                         tolerance: float) -> AccuracyVerdict:
    """Same accuracy when the largest |x - y| over the seeds both ran is at most tolerance.

    Same seed means same initial weights and batch order, so the gaps are paired by seed;
    seeds only one side ran are ignored."""
    seeds = sorted(set(acc_x_by_seed) & set(acc_y_by_seed))
    if not seeds:
        return AccuracyVerdict("too few", math.nan, tolerance, 0, "no seed in common: no verdict")
    gaps = {seed: abs(acc_x_by_seed[seed] - acc_y_by_seed[seed]) for seed in seeds}
    worst_seed = max(gaps, key=gaps.get)
    largest = gaps[worst_seed]
    if largest <= tolerance:
        text = f"same accuracy within {tolerance:.4f} (largest same-seed gap {largest:.4f})"
        return AccuracyVerdict("same", largest, tolerance, len(seeds), text)
    text = f"accuracy differs by {largest:.4f} at seed {worst_seed}, beyond {tolerance:.4f}"
    return AccuracyVerdict("different", largest, tolerance, len(seeds), text)
