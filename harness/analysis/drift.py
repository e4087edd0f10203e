"""B against A, two runs made at different times: the drift of the whole machine measured
apart, and each configuration judged on its change after that drift.

Two runs of unchanged code, B after A, ran 0.77x on all nine configurations of the main job:
the machine, not the code, had slowed. So the drift is the geometric mean of every matched
configuration's B ÷ A, with a t interval over the configurations, and a configuration's
change is its own B ÷ A over the drift of the others (leave one out, so that a configuration
never corrects itself). Its interval adds both variances: its trials' in A and in B, and the
drift's over the other configurations. The verdict is the three outcomes against the margin,
at 1 - alpha/k for the k configurations compared (Bonferroni): "slower" on one machine is a
regression. With fewer than MIN_TRIALS configurations the drift cannot be told apart, and the
changes are the plain ratios (the output says so).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from harness.analysis import stats


@dataclass(frozen=True)
class Change:
    """B's speed over A's for one configuration, after the drift where one was measured."""
    kind: str  # "faster" | "slower" | "within" | "undecided" | "too few" (B against A)
    ratio: stats.Ratio
    corrected: bool  # whether the drift was taken out
    text: str


@dataclass(frozen=True)
class Drift:
    """How fast B's machine ran against A's across the matched configurations (None: too few to say)."""
    ratio: stats.Ratio | None
    configurations: int

    @property
    def text(self) -> str:
        if self.ratio is None or not self.ratio.known:
            return (f"the drift of the machine between A and B is unknown ({self.configurations} configurations "
                    f"measured in both, {stats.MIN_TRIALS} needed): the changes below are plain B ÷ A")
        r = self.ratio
        return (f"B's machine ran {r.estimate:.2f}x ({r.low:.2f}-{r.high:.2f}) of A's across {self.configurations} "
                "configurations; each verdict below is on a configuration's B ÷ A after this drift")


def _log_change(times_a, times_b) -> tuple[float, float, float]:
    """The log of B's speed over A's, its variance and Welch's degrees of freedom (NaN below 2 trials a side)."""
    log_a, log_b = stats.log_times(times_a), stats.log_times(times_b)
    mean = float(np.mean(log_a) - np.mean(log_b))
    if min(len(log_a), len(log_b)) < 2:
        return mean, math.nan, math.nan
    v_a, v_b = np.var(log_a, ddof=1) / len(log_a), np.var(log_b, ddof=1) / len(log_b)
    df = (v_a + v_b) ** 2 / (v_a ** 2 / (len(log_a) - 1) + v_b ** 2 / (len(log_b) - 1)) if v_a + v_b > 0 else math.inf
    return mean, float(v_a + v_b), float(df)


def drift(pairs: list[tuple[list[float], list[float]]]) -> Drift:
    """The machine's drift from every configuration's (A times, B times)."""
    logs = [_log_change(a, b)[0] for a, b in pairs if len(a) and len(b)]
    if len(logs) < stats.MIN_TRIALS:
        return Drift(None, len(logs))
    mean, se = float(np.mean(logs)), float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
    half = float(scipy_stats.t.ppf(1 - stats.ALPHA / 2, len(logs) - 1)) * se
    return Drift(stats.Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs), False,
                             se * math.sqrt(len(logs)), len(logs) - 1, stats.CONFIDENCE), len(logs))


def changes(pairs: list[tuple[list[float], list[float]]], margin: float = stats.MARGIN,
            alpha: float = stats.ALPHA) -> list[Change]:
    """Each configuration's change (B against A), after the drift of the others, corrected together."""
    measured = [i for i, (a, b) in enumerate(pairs) if len(a) and len(b)]
    logs = {i: _log_change(*pairs[i]) for i in measured}
    confidence = 1 - alpha / max(len(measured), 1)
    corrected = len(measured) >= stats.MIN_TRIALS + 1  # the others' drift needs MIN_TRIALS configurations
    out = []
    for i, (a, b) in enumerate(pairs):
        if i not in logs or math.isnan(logs[i][1]):
            n = min(len(a), len(b))
            text = "one trial: no verdict" if n == 1 else f"{len(a)} and {len(b)} trials: no verdict"
            out.append(Change("too few", stats.Ratio(math.nan, math.nan, math.nan, n, False, math.nan, math.nan,
                                                     confidence), False, text))
            continue
        mean, var, df = logs[i]
        if corrected:
            others = np.array([logs[j][0] for j in measured if j != i])
            var_drift = float(np.var(others, ddof=1)) / len(others)
            mean -= float(np.mean(others))
            if var + var_drift:  # Welch-Satterthwaite: the trials' df and the other configurations'
                df = (var + var_drift) ** 2 / (var ** 2 / df + var_drift ** 2 / (len(others) - 1))
            var += var_drift
        se = math.sqrt(var)
        half = float(scipy_stats.t.ppf(1 - (1 - confidence) / 2, df)) * se if se > 0 else 0.0
        n = min(len(a), len(b))
        ratio = stats.Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, False,
                            se * math.sqrt(n), df, confidence)
        kind = stats.verdict_kind(ratio, margin)
        out.append(Change(kind, ratio, corrected, change_text(kind, ratio, margin, corrected)))
    return out


def change_text(kind: str, ratio: stats.Ratio, margin: float, corrected: bool) -> str:
    """'B 1.31x slower than A after the drift (1.12-1.55)'."""
    after = " after the drift" if corrected else ""
    if kind == "slower":
        r = ratio.inverse
        return f"B {r.estimate:.2f}x slower than A{after} ({r.low:.2f}-{r.high:.2f})"
    if kind == "faster":
        return f"B {ratio.estimate:.2f}x faster than A{after} ({ratio.low:.2f}-{ratio.high:.2f})"
    interval = f"B ÷ A{after} {ratio.estimate:.2f} ({ratio.low:.2f}-{ratio.high:.2f})"
    if kind == "within":
        return f"within {margin:.0%}: {interval}"
    return f"undecided: {interval}"
