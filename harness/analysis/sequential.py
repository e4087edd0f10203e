"""How strict a verdict must be at each look of a drive that may stop early: group-sequential levels.

The driver looks at its verdicts after every round from FIRST_LOOK on and stops once all are
decided. Each look is a chance to stop on a false verdict, so a fixed level at every look lets
more than its promise through (at alpha / 3 a look: 4.6% false "faster" in 10 rounds, 7.8% in
40, for a pair exactly at the margin where 2.5% was promised). Here the promise is spent over
the looks by Lan and DeMets's O'Brien-Fleming-type spending function,

    spent(t) = 2 - 2 Phi(z_{1 - a/2} / sqrt(t)),     t = round / planned rounds,

which spends almost nothing at the early looks and nearly all of `a` at the last, so a drive
that runs to its budget is judged almost as a fixed count of rounds would be. The boundary at
each look is found by the recursive numerical integration of Armitage, McPherson and Rowe over
the looks so far; a look's level is the one-sided tail of its boundary, which the verdicts
then apply to their t intervals (df = rounds - 1). Bonferroni over the planned looks holds the
promise too, at a wider last interval: in simulated 10-round drives at the audit's spread it
found a true 1.2x in 38% of drives where this spending finds it in 66%
(tests/test_stopping_rule.py). A pair exactly at the margin is called "faster" in under 1% of
drives at budgets of 10 and 40 rounds, where 2.5% is promised.

A drive records, in every round, the rounds it planned (harness.drive); a look's information
is round / planned. A count fixed in advance (--rounds) has one look, at the full level.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import optimize, special, stats

FIRST_LOOK = 4  # the driver's first look: by then every comparison has 3 degrees of freedom
GRID = 201  # points of the integration grid; 401 moves a level by under 0.5% of itself


def spent(alpha: float, t: float) -> float:
    """The share of a one-sided alpha spent by information t (O'Brien-Fleming type; all of it at t >= 1)."""
    if t <= 0:
        return 0.0
    return 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(min(t, 1.0)))


def normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


Look = tuple[int, float]  # (the round it came after, the share of the promise it may have spent by then)


@lru_cache(maxsize=4096)
def boundaries(alpha: float, looks: tuple[Look, ...]) -> tuple[float, ...]:
    """The one-sided z boundary of each look, so that a statistic drifting at zero crosses one of
    them with probability spent(alpha, last share). A look's statistic has the information of its
    rounds (the Brownian time is the round); the shares only say how much may be spent by then."""
    out: list[float] = []
    grid = weights = None
    previous_round, previous_share = 0, 0.0
    for number, share in looks:
        share = max(share, previous_share)  # a share never falls, whatever the plan said later
        target = spent(alpha, share) - spent(alpha, previous_share)
        step = number - previous_round
        if weights is None:  # the first look: the sum of `number` rounds is N(0, number)
            c = float(stats.norm.isf(target)) if target > 0 else math.inf
        elif target <= 0:
            c = math.inf
        else:
            def crossing(c: float) -> float:
                return float(weights @ special.ndtr((grid - c * math.sqrt(number)) / math.sqrt(step))) - target
            c = float(optimize.brentq(crossing, -10, 40, xtol=1e-10))
        top = min(c, 40.0) * math.sqrt(number)
        new = np.linspace(-8 * math.sqrt(number), top, GRID)
        if weights is None:
            density = normal_pdf(new / math.sqrt(number)) / math.sqrt(number)
        else:
            density = normal_pdf((new[:, None] - grid[None, :]) / math.sqrt(step)) / math.sqrt(step) @ weights
        grid, weights = new, density * (new[1] - new[0])  # the mass left at each point of this look's grid
        weights[[0, -1]] /= 2  # the trapezoid rule
        out.append(c)
        previous_round, previous_share = number, share
    return tuple(out)


def looks(planned_by_round: dict[int, int | None], last: int) -> tuple[Look, ...]:
    """The looks a drive took up to round `last`: FIRST_LOOK on, each with the share round / the
    rounds planned when it ran. Empty where the rounds were a count fixed in advance."""
    out = []
    for number in range(FIRST_LOOK, last + 1):
        planned = planned_by_round.get(number)
        if planned is None:
            return ()
        out.append((number, min(1.0, number / planned)))
    return tuple(out)


def level(alpha: float, taken: tuple[Look, ...] = ()) -> float:
    """The one-sided level a verdict uses at the last of these looks (alpha itself without looks)."""
    if not taken:
        return alpha
    return float(stats.norm.sf(boundaries(alpha, tuple((n, round(s, 9)) for n, s in taken))[-1]))


def planned_looks(rounds: int) -> tuple[Look, ...]:
    """The looks of a drive that planned, and ran, this many rounds."""
    return looks({n: rounds for n in range(FIRST_LOOK, rounds + 1)}, rounds)


@lru_cache(maxsize=4096)
def planned_level(alpha: float, rounds: int) -> float:
    """The level at the last look of a drive that planned, and ran, this many rounds."""
    return level(alpha, planned_looks(rounds))
