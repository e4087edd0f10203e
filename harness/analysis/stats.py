"""Speed claims from trials run in rounds: a ratio with its interval, a verdict against a margin.

A trial is one process of a benchmark configuration and gives one number, its steady epoch
time per sample (the median over its epochs, taken by the caller). What is compared is
trials, never epochs: the epochs of one process share its luck. Timing noise is
multiplicative, close to log-normal, so everything here works on log times, and a speed
ratio is exp(mean log time of y - mean log time of x): above 1, x is faster.

* Paired (`paired_ratio`): the interleaving driver runs every configuration once a round, in
  a shuffled order, so two configurations' trials of one round met the same hour of the
  machine. Their per-round log-ratios cancel what moves the whole machine (one round of the
  CPU archive ran everything 10% faster), and the interval is a t interval on the mean
  log-ratio over rounds (df = rounds - 1): exact for log-normal noise, and in simulation
  (tests/test_stats.py) it covers 95% at 4 to 10 rounds with a round effect as large as the
  process noise, where the former percentile bootstrap of each side covered 87% at 4.
* Unpaired (`unpaired_ratio`): where the trials share no rounds (a plain --trials run), a
  Welch t interval on the difference of mean log times.
* Verdict (`verdict_kind`): against a practical margin m declared before the run (MARGIN,
  5%): "faster"/"slower" when the whole interval lies beyond 1 + m (or below 1/(1 + m));
  "within" when the equivalence interval lies wholly inside [1/(1 + m), 1 + m] (two one-sided
  tests), a tie that was measured; "undecided" otherwise, with the rounds that would decide it
  (`more_rounds`, at POWER predictive power). The caller sets the levels
  (harness.analysis.verdicts: Bonferroni over a table's comparisons, spent over the driver's
  looks). `could_see` is the smallest ratio a run's rounds and spread would find at POWER.

The ideas are criterion.rs's (a declared noise threshold, "within noise" apart from "no
change detected"), Kalibera and Jones's (spend repetitions where the variance lives) and
Google Benchmark's (interleave); scipy.stats gives the t quantiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_TRIALS = 3  # shared rounds (paired) or trials a side (unpaired): 2 give an sd, 3 an interval worth printing
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # a table's chance of any false speed verdict
MARGIN = 0.05  # a difference under 5% is no difference worth naming: the default practical margin
MAX_MORE_ROUNDS = 100  # "undecided" estimates the rounds still needed up to this many
POWER = 0.8  # "more rounds would decide it" and "this run could see": at this chance of deciding
LONG_SHOT = 0.2  # a driver stops when no undecided verdict has even this chance within its budget


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval over n trials (NaN bounds where n is too small)."""
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
class Ratio:
    """How many times faster x is than y, with its interval and how it was estimated.

    unit_se is the standard error of the mean log-ratio times sqrt(n): what it would be over
    n' rounds is unit_se / sqrt(n'), which is how `more_rounds` looks ahead."""
    estimate: float
    low: float
    high: float
    n: int  # shared rounds (paired) or the smaller side's trials (unpaired)
    paired: bool
    unit_se: float
    df: float  # the t interval's degrees of freedom
    confidence: float

    @property
    def known(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def inverse(self) -> "Ratio":
        """y's speed over x's."""
        return Ratio(1 / self.estimate, 1 / self.high, 1 / self.low, self.n, self.paired, self.unit_se, self.df,
                     self.confidence)

    def at(self, confidence: float) -> "Ratio":
        """The same estimate with its interval at another confidence."""
        se = self.unit_se / math.sqrt(self.n) if self.n else math.nan
        return _t_ratio(math.log(self.estimate), se, self.df, self.n, self.paired, confidence)


def log_times(times) -> np.ndarray:
    values = np.asarray(times, dtype=float).ravel()
    if np.any(values <= 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"times must be positive and finite, got {values}")
    return np.log(values)


def _t_ratio(mean: float, se: float, df: float, n: int, paired: bool, confidence: float) -> Ratio:
    unit_se = se * math.sqrt(n) if n else math.nan
    if n < MIN_TRIALS or not np.isfinite(se):
        return Ratio(math.exp(mean), math.nan, math.nan, n, paired, unit_se, df, confidence)
    half = min(float(stats.t.isf((1 - confidence) / 2, df)) * se, 700.0) if se > 0 else 0.0  # exp(700): no bound
    return Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, paired, unit_se, df, confidence)


def paired_ratio(times_x, times_y, confidence: float = CONFIDENCE) -> Ratio:
    """x's speed over y's from trials paired by round (times_x[i] and times_y[i] ran in one round)."""
    diffs = log_times(times_y) - log_times(times_x)
    n = len(diffs)
    if n == 0:
        return Ratio(math.nan, math.nan, math.nan, 0, True, math.nan, math.nan, confidence)
    se = float(np.std(diffs, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return _t_ratio(float(np.mean(diffs)), se, n - 1, n, True, confidence)


def unpaired_ratio(times_x, times_y, confidence: float = CONFIDENCE) -> Ratio:
    """x's speed over y's from trials of separate processes with nothing shared: Welch's t interval."""
    log_x, log_y = log_times(times_x), log_times(times_y)
    n_x, n_y = len(log_x), len(log_y)
    if min(n_x, n_y) == 0:
        return Ratio(math.nan, math.nan, math.nan, 0, False, math.nan, math.nan, confidence)
    mean = float(np.mean(log_y) - np.mean(log_x))
    if min(n_x, n_y) < 2:
        return Ratio(math.exp(mean), math.nan, math.nan, min(n_x, n_y), False, math.nan, math.nan, confidence)
    v_x, v_y = np.var(log_x, ddof=1) / n_x, np.var(log_y, ddof=1) / n_y
    se = float(math.sqrt(v_x + v_y))
    df = float((v_x + v_y) ** 2 / (v_x ** 2 / (n_x - 1) + v_y ** 2 / (n_y - 1))) if se > 0 else n_x + n_y - 2
    n = min(n_x, n_y)
    return _t_ratio(mean, se, df, n, False, confidence)


def verdict_kind(ratio: Ratio, margin: float = MARGIN, equivalence: Ratio | None = None) -> str:
    """"faster" | "slower" | "within" | "undecided" | "too few", said of x against y.

    "faster"/"slower" when ratio's interval lies wholly beyond the margin; "within" when the
    equivalence interval (ratio's own where none is given) lies wholly inside it: two one-sided
    tests (TOST), each at the level that makes the equivalence interval's confidence 1 - 2 level."""
    if margin < 0:
        raise ValueError(f"a margin is a fraction of at least 0, got {margin}")
    if not ratio.known:
        return "too few"
    equivalence = equivalence or ratio
    if ratio.low > 1 + margin:
        return "faster"
    if ratio.high < 1 / (1 + margin):
        return "slower"
    if 1 / (1 + margin) <= equivalence.low and equivalence.high <= 1 + margin:
        return "within"
    return "undecided"


def critical(level: float, df: float) -> float:
    """The t quantile a one-sided test at this level needs (df degrees of freedom)."""
    return float(stats.t.isf(level, df))


def more_rounds(ratio: Ratio, margin: float = MARGIN, level_at=None, power: float = POWER) -> int | None:
    """How many more rounds would decide an undecided ratio with this chance, judged on what is known
    now: the fewest n' at which the final estimate, predicted from the rounds so far (its centre the
    estimate, its spread what the n' - n new rounds and the estimate's own uncertainty add), clears
    the interval's half-width at n' from the margin with probability `power` (predictive power, so a
    noisy estimate is not taken for the truth). level_at(n', within) is the one-sided level a verdict
    would use at n' rounds ("within": the equivalence test's); by default the ratio's own confidence.
    None beyond MAX_MORE_ROUNDS, or when the spread is unknown."""
    if not ratio.known or not np.isfinite(ratio.unit_se) or ratio.unit_se <= 0:
        return None
    if level_at is None:
        def level_at(rounds: int, within: bool) -> float:
            return (1 - ratio.confidence) * (1 if within else 0.5)
    distance = abs(math.log(ratio.estimate))
    within = distance < math.log(1 + margin)
    distance = abs(distance - math.log(1 + margin))
    extra_df = ratio.df - (ratio.n - 1)  # Welch's df grows with the trials as the paired df does
    n = ratio.n

    def decides(more: int) -> bool:
        total = n + more
        half = critical(level_at(total, within), total - 1 + extra_df) * ratio.unit_se / math.sqrt(total)
        predicted = ratio.unit_se * math.sqrt(more / (total * n))  # the final estimate's sd, given the rounds so far
        return float(stats.t.cdf((distance - half) / predicted, ratio.df)) >= power
    low, high = 0, MAX_MORE_ROUNDS  # decides(high) or None; bisect for the fewest
    if not decides(high):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if decides(middle) else (middle, high)
    return high


def could_see(unit_se: float, n: int, df: float, level: float, margin: float = MARGIN,
              power: float = POWER) -> float:
    """The smallest speed ratio that n rounds at this spread would find beyond the margin with this
    power, at this one-sided level: what an "undecided" of such a run still rules out."""
    if n < MIN_TRIALS or not np.isfinite(unit_se) or unit_se <= 0:
        return math.nan
    distance = (critical(level, df) + critical(1 - power, df)) * unit_se / math.sqrt(n)
    return math.exp(math.log(1 + margin) + distance) if distance < 700 else math.inf


def rate_interval(seconds_per_sample, confidence: float = CONFIDENCE) -> Interval:
    """Samples per second from trials: 1 / the geometric mean time, with a t interval on the mean
    log time (NaN bounds below MIN_TRIALS). The estimate the ratios and verdicts use."""
    logs = log_times(seconds_per_sample) if len(seconds_per_sample) else np.array([])
    n = len(logs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(logs))
    if n < MIN_TRIALS:
        return Interval(math.exp(-mean), math.nan, math.nan, n)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * float(np.std(logs, ddof=1)) / math.sqrt(n)
    return Interval(math.exp(-mean), math.exp(-mean - half), math.exp(-mean + half), n)


@dataclass(frozen=True)
class AccuracyVerdict:
    """kind: "same" (every same-seed gap within tolerance) | "different" | "too few" (no common seed)."""
    kind: str
    largest_gap: float
    tolerance: float
    seeds: int
    text: str


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
