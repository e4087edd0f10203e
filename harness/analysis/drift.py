"""B against A, two runs made at different times: each run's round effects taken out, the drift of
the whole machine measured apart, and each configuration judged on its change after that drift.

* Within a run, every configuration met the same rounds (harness.drive), and a round moves every
  configuration together (one round of the CPU archive ran everything 10% faster). So each run's
  log times are fitted as configuration level + round effect, and a configuration's level keeps
  only its own processes' spread (the residuals'), not the rounds': a ratio of ratios. A run
  without rounds (a plain --trials run) gives each configuration the mean of its log times.
* Between the runs the machine drifts (0.77x on every configuration of unchanged code, B after
  A). The drift is the median of the configurations' changes, so that one framework's change
  (torch upgraded, say) does not move the others: each configuration is corrected by the median
  of the others' changes, never by its own. Where the frameworks disagree about the drift by
  more than the margin, a line says so.
* A configuration's change has the variance of its level in A and in B and of the drift (a
  median of K changes: pi/2 times their mean variance over K), with Welch-Satterthwaite degrees
  of freedom. Verdicts are the three outcomes against the margin, one family over every change
  the caller judges (training and inference together: k = 2 per configuration), "within" by
  two one-sided tests as in harness.analysis.verdicts.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from harness.analysis import stats

Timed = list[tuple[object, float]]  # one configuration's trials in one run: (its round, or None; seconds)


@dataclass(frozen=True)
class Level:
    """A configuration's mean log time in one run after that run's round effects, its variance and df."""
    log_time: float
    variance: float
    df: float


@dataclass(frozen=True)
class Change:
    """B's speed over A's for one configuration, after the drift where one was measured."""
    kind: str  # "faster" | "slower" | "within" | "undecided" | "too few" (B against A)
    ratio: stats.Ratio
    corrected: bool  # whether the drift was taken out
    text: str
    could_see: float = math.nan  # the smallest change its spread would have found at POWER


@dataclass(frozen=True)
class Drift:
    """How fast B's machine ran against A's across the matched configurations (None: too few to say)."""
    ratio: stats.Ratio | None
    configurations: int
    disagreements: tuple[str, ...] = ()  # "torch's configurations moved 0.85x, the others 1.00x"

    @property
    def text(self) -> str:
        if self.ratio is None or not self.ratio.known:
            return (f"the drift of the machine between A and B is unknown ({self.configurations} configurations "
                    f"measured in both, {stats.MIN_TRIALS} needed): the changes below are plain B ÷ A")
        r = self.ratio
        return (f"B's machine ran {r.estimate:.2f}x ({r.low:.2f}-{r.high:.2f}) of A's, the median over "
                f"{self.configurations} configurations; each verdict below is on a configuration's B ÷ A after "
                "the others' median, with each run's round effects taken out")


def levels(run: list[Timed]) -> list[Level | None]:
    """Each configuration's level in one run (None without trials; NaN variance with one trial)."""
    logs = [[(block, math.log(t)) for block, t in trials] for trials in run]
    with_rounds = all(block is not None for trials in logs for block, _ in trials)
    mean = [float(np.mean([v for _, v in trials])) if trials else math.nan for trials in logs]
    effect: dict[object, float] = defaultdict(float)
    measured = sum(len(trials) >= 2 for trials in logs)
    if with_rounds and measured >= 2:
        for _ in range(100):  # alternating means: level + round effect, to convergence
            sums: dict[object, list[float]] = defaultdict(list)
            for i, trials in enumerate(logs):
                for block, v in trials:
                    sums[block].append(v - mean[i])
            effect = defaultdict(float, {b: float(np.mean(v)) for b, v in sums.items()})
            centre = float(np.mean(list(effect.values())))
            effect = defaultdict(float, {b: e - centre for b, e in effect.items()})
            new = [float(np.mean([v - effect[b] for b, v in trials])) if trials else math.nan for trials in logs]
            if np.allclose(new, mean, atol=1e-12, equal_nan=True):
                break
            mean = new
    # a residual after both fits has (I-1)/I of a process's variance when I configurations share the rounds
    inflate = measured / (measured - 1) if with_rounds and measured >= 2 else 1.0
    out = []
    for i, trials in enumerate(logs):
        if not trials:
            out.append(None)
            continue
        n = len(trials)
        residuals = [v - mean[i] - effect[b] for b, v in trials] if with_rounds else [v - mean[i] for _, v in trials]
        variance = inflate * float(np.sum(np.square(residuals))) / (n - 1) / n if n >= 2 else math.nan
        out.append(Level(mean[i], variance, n - 1))
    return out


def _log_changes(pairs: list[tuple[Timed, Timed]]) -> dict[int, tuple[float, float, float]]:
    """Per configuration measured in both runs: (log of B's speed over A's, its variance, its df)."""
    in_a, in_b = levels([a for a, _ in pairs]), levels([b for _, b in pairs])
    out = {}
    for i, (a, b) in enumerate(zip(in_a, in_b)):
        if a is None or b is None:
            continue
        variance = a.variance + b.variance
        df = (variance ** 2 / (a.variance ** 2 / a.df + b.variance ** 2 / b.df)
              if variance > 0 and a.df and b.df else math.nan)
        out[i] = (a.log_time - b.log_time, variance, df)
    return out


def _median_of(values: list[float], variances: list[float]) -> tuple[float, float]:
    """A median of independent estimates and its variance (pi/2 times their mean variance, over their count)."""
    finite = [v for v in variances if math.isfinite(v)]
    variance = math.pi / 2 * float(np.mean(finite)) / len(values) if finite else math.nan
    return float(np.median(values)), variance


def drift(pairs: list[tuple[Timed, Timed]], groups: list[str] | None = None,
          margin: float = stats.MARGIN) -> Drift:
    """The machine's drift from every configuration's (A trials, B trials); groups (a framework per
    configuration) name those whose median moved apart from the median of all by more than the margin."""
    logs = _log_changes(pairs)
    if len(logs) < stats.MIN_TRIALS:
        return Drift(None, len(logs))
    centre, variance = _median_of([m for m, _, _ in logs.values()], [v for _, v, _ in logs.values()])
    se = math.sqrt(variance) if math.isfinite(variance) else math.nan
    half = float(scipy_stats.t.isf(stats.ALPHA / 2, len(logs) - 1)) * se if se > 0 else 0.0
    ratio = stats.Ratio(math.exp(centre), math.exp(centre - half), math.exp(centre + half), len(logs), False,
                        se * math.sqrt(len(logs)), len(logs) - 1, stats.CONFIDENCE)
    disagreements = []
    for group in dict.fromkeys(groups or []):
        mine = [logs[i][0] for i in logs if groups[i] == group]
        others = [logs[i][0] for i in logs if groups[i] != group]
        if mine and others and abs(float(np.median(mine)) - centre) > math.log(1 + margin):
            disagreements.append(f"{group}'s configurations moved {math.exp(float(np.median(mine))):.2f}x, "
                                 f"the others {math.exp(float(np.median(others))):.2f}x")
    return Drift(ratio, len(logs), tuple(disagreements))


def changes(pairs: list[tuple[Timed, Timed]], margin: float = stats.MARGIN, alpha: float = stats.ALPHA,
            k: int | None = None) -> list[Change]:
    """Each configuration's change (B against A) after the others' drift, as one of k comparisons of a
    family at alpha (k: the configurations measured in both, unless the caller judges more at once)."""
    logs = _log_changes(pairs)
    k = k or max(len(logs), 1)
    directional, equivalent = alpha / (2 * k), alpha / k
    corrected = len(logs) >= stats.MIN_TRIALS + 1  # the others' drift needs MIN_TRIALS configurations
    out = []
    for i, (a, b) in enumerate(pairs):
        n = min(len(a), len(b))
        if i not in logs or math.isnan(logs[i][1]):
            text = "one trial: no verdict" if n == 1 else f"{len(a)} and {len(b)} trials: no verdict"
            out.append(Change("too few", stats.Ratio(math.nan, math.nan, math.nan, n, False, math.nan, math.nan,
                                                     1 - 2 * directional), False, text))
            continue
        mean, var, df = logs[i]
        if corrected:
            others = [j for j in logs if j != i]
            centre, var_drift = _median_of([logs[j][0] for j in others], [logs[j][1] for j in others])
            mean -= centre
            if math.isfinite(var_drift) and var + var_drift > 0:  # Welch-Satterthwaite: the levels' and the drift's
                df = (var + var_drift) ** 2 / (var ** 2 / df + var_drift ** 2 / (len(others) - 1))
                var += var_drift
        se = math.sqrt(var)
        ratio = stats.Ratio(math.exp(mean), math.nan, math.nan, n, False, se * math.sqrt(n), df, 1 - 2 * directional)
        ratio = ratio.at(1 - 2 * directional)
        equivalence = ratio.at(1 - 2 * equivalent)
        kind = stats.verdict_kind(ratio, margin, equivalence)
        shown = equivalence if kind == "within" else ratio
        could_see = stats.could_see(se * math.sqrt(n), n, df, directional, margin)
        out.append(Change(kind, ratio, corrected, change_text(kind, shown, margin, corrected), could_see))
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
