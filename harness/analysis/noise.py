"""How far apart identical processes land, per configuration: the spread between processes (the
coefficient of variation of their steady medians, what a verdict's rounds must average away) and
the spread between the steady epochs of one process, with the epochs that ran slow against their
own process's median. A bimodal level shows as a large spread between processes with quiet
epochs inside each; a slow epoch as a large spread inside one process.

The rounds a verdict needs grow with the square of the spread between processes: a configuration
whose processes land 30% apart needs about nine times the rounds of one at 10%.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.analysis.trials import Configuration, configurations
from harness.measure.results import Result

TARGET_CV = 0.05  # the spread between processes a quiet machine should reach, per configuration
SLOW_EPOCH = 1.3  # an epoch this many times its process's median is a slow one


def cv(values) -> float:
    """Standard deviation over mean (ddof 1); NaN for fewer than two values."""
    values = np.asarray(values, dtype=float)
    return float(np.std(values, ddof=1) / np.mean(values)) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class Spread:
    configuration: Configuration
    between: float  # CV of the processes' steady medians
    within: float  # the median over processes of the CV of each one's steady epochs
    slow_epochs: int  # steady epochs over SLOW_EPOCH x their own process's median
    epochs: int  # steady epochs in all

    @property
    def processes(self) -> int:
        return len(self.configuration.trials)

    @property
    def met(self) -> bool:
        """Whether the spread between processes is at or under the target."""
        return self.between <= TARGET_CV


def spread(configuration: Configuration) -> Spread:
    trials = configuration.trials
    medians = [t.epoch_s for t in trials]
    within = [cv(t.steady) for t in trials if len(t.steady) > 1]
    slow = int(sum(s > SLOW_EPOCH * t.epoch_s for t in trials for s in t.steady))
    return Spread(configuration, cv(medians), float(np.median(within)) if within else math.nan, slow,
                  sum(len(t.steady) for t in trials))


def spreads(results: list[Result], min_processes: int = 2) -> list[Spread]:
    """Each configuration's spread, where it has at least min_processes uncontended finished processes;
    the controls aside (the twin is a configuration's copy, the planted slowdown changes epochs on purpose)."""
    return [spread(c) for c in configurations(results) if len(c.trials) >= min_processes and c.control is None]
