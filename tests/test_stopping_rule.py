"""The driver's stopping rule and the report's verdicts keep their promises, shown on simulated drives.

Each drive (tests/simulated_drives.py) runs rounds with a round effect (the whole machine that
hour) and each process's own noise, plans its rounds from the budget and stops by the driver's
own rules (harness.drive.rounds: from round 4, once every verdict is decided at its look's level,
or no undecided verdict has a chance within the budget; no round past the budget, at 3 minutes a
round: 10 rounds in the default 30 minutes), and is then judged as the report judges it. The
shares asserted sit a few binomial standard errors from the measured ones, and each test also
shows the mechanism it relies on: without it, the promise breaks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis import sequential, stats
from harness.analysis.tables import analyse_configurations
from harness.drive.rounds import stop_reason
from harness.analysis.verdicts import rounds_for_a_tie, verdict
from tests.simulated_drives import FASTER_1_3, ROUND_S, all_found, any_false, configurations, share, simulate_drive

IDENTICAL = [0.0] * 10
AT_THE_MARGIN = [-math.log(1 + stats.MARGIN), 0.0]  # 1.05x: no verdict beyond the margin is true
AUDIT = dict(spread=0.10, round_spread=0.05)  # the audit's setting: process noise 0.10, round effect 0.05


# 1. Looking after every round spends the promise: a pair exactly at the margin.
@pytest.mark.parametrize("budget_rounds", [10, 40])
def test_a_pair_exactly_at_the_margin_is_called_faster_at_most_at_the_nominal_rate(budget_rounds):
    # a false "faster" is one side of a 1 - alpha interval: alpha / 2 = 2.5% promised; measured 2.1% and 1.1%
    # over 1000 drives
    drives = dict(levels=AT_THE_MARGIN, budget=ROUND_S * budget_rounds, **AUDIT)
    assert share(600, 11, any_false, **drives) <= stats.ALPHA / 2
    # every look at the full level, nothing spent: 5.7% in 10 rounds and 13.1% in 40 (1000 drives)
    assert share(600, 11, any_false, spending=False, **drives) > 0.04


def test_spending_by_obrien_fleming_finds_more_than_bonferroni_over_the_looks(monkeypatch):
    drives = dict(levels=[-math.log(1.2), 0.0], **AUDIT)
    spent = share(600, 12, all_found, **drives)  # measured 0.657
    # Bonferroni over the planned looks holds the promise too, at a far wider last interval
    monkeypatch.setattr(sequential, "level", lambda alpha, taken=(): alpha / (
        round(taken[-1][0] / taken[-1][1]) - sequential.FIRST_LOOK + 1) if taken else alpha)
    monkeypatch.setattr(sequential, "planned_level", lambda alpha, rounds: alpha / (rounds - sequential.FIRST_LOOK + 1))
    assert spent > share(600, 12, all_found, **drives) + 0.15  # measured 0.378


# 2. A table of many rivals: the correction over its comparisons.
@pytest.mark.parametrize("spread", [0.10, 0.15])
def test_ten_identical_configurations_get_a_false_verdict_in_at_most_5_percent_of_drives(spread):
    assert share(300, 1, any_false, levels=IDENTICAL, spread=spread, round_spread=0.10) <= stats.ALPHA


def test_without_the_correction_ten_identical_configurations_pass_5_percent():
    # each of the nine comparisons at alpha itself names a difference that is not there far more often
    assert share(300, 2, any_false, levels=IDENTICAL, spread=0.15, round_spread=0.10, alpha=stats.ALPHA * 9) > 0.08


# 3. Power: a real 1.3x, with a round effect larger than the process noise.
def test_a_true_1_3x_at_a_spread_of_0_10_is_found_in_80_percent_of_drives_within_10_rounds():
    drives = dict(levels=[FASTER_1_3, 0.0, 0.0], spread=0.10, round_spread=0.15)
    assert share(300, 3, all_found, **drives) >= 0.80  # measured 0.92 over 1000 drives
    # without the pairing by round, the machine's moves drown it: 0.56
    assert share(300, 3, all_found, paired=False, **drives) < 0.70


def test_at_a_spread_of_0_15_a_three_row_question_needs_about_14_rounds():
    """The README's figure: both rivals found 1.3x slower in 74% of drives within 14 rounds (1000
    drives; 49% within the default budget's 10, and 76% within 10 for a single rival)."""
    drives = dict(levels=[FASTER_1_3, 0.0, 0.0], spread=0.15, round_spread=0.15)
    assert share(300, 3, all_found, budget=ROUND_S * 14, **drives) >= 0.65
    assert share(300, 3, all_found, budget=ROUND_S * 10, **drives) < 0.60


# 4. Ties: "within" is two one-sided tests at the family's level, reachable in the rounds the README states.
@pytest.mark.parametrize("spread", [0.03, 0.05])
def test_a_true_tie_is_called_within_in_the_rounds_stated_for_it(spread):
    rounds = rounds_for_a_tie(spread)
    process = spread / math.sqrt(2)  # a round's log-ratio holds two processes' noise
    drives = dict(levels=[0.0, 0.0], spread=process, round_spread=0.05, budget=ROUND_S * rounds, futility=False)
    within = share(300, 4, lambda d: d.verdicts[0].kind == "within", **drives)
    assert 0.70 <= within  # 80% power stated; measured 0.87 and 0.84
    shorter = dict(drives, budget=ROUND_S * max(sequential.FIRST_LOOK, rounds // 2))
    assert share(300, 4, lambda d: d.verdicts[0].kind == "within", **shorter) < within - 0.15


def test_the_rounds_a_tie_needs_grow_with_the_spread_and_the_rivals():
    assert rounds_for_a_tie(0.03) < rounds_for_a_tie(0.05) < rounds_for_a_tie(0.10)
    assert rounds_for_a_tie(0.05, rivals=1) < rounds_for_a_tie(0.05, rivals=5)
    assert rounds_for_a_tie(0.30) is None  # more than MAX_MORE_ROUNDS


# 5. The controls are judged by their intervals.
def test_a_perfect_twin_passes_its_control_in_95_percent_of_drives():
    drives = dict(levels=[0.0, 0.3], twin=True, **AUDIT)
    rng = np.random.default_rng(5)
    runs = [simulate_drive(rng, **drives) for _ in range(300)]
    negatives = [c for run in runs for c in run.controls if c.kind == "negative"]
    assert len(negatives) == len(runs)
    assert sum(c.passed for c in negatives) / len(runs) >= 0.95  # measured 1.000 over 1000 drives
    # judged by its point estimate, as before: the twin "fails" when its estimate strays past the margin
    by_estimate = [abs(math.log(c.verdict.ratio.estimate)) <= math.log(1 + stats.MARGIN) for c in negatives]
    assert sum(by_estimate) / len(runs) < 0.85  # measured 0.63: it would fail 37% of perfect twins


# 6. "About N more rounds would decide it": at 80% predictive power and the driver's own level.
MAIN_JOB_SPREAD = 0.065  # each process's noise where a pair's per-round log-ratio spreads by 0.09, as in the main job


def continue_pair(rng, truth: float, first: int, spread: float = MAIN_JOB_SPREAD, round_spread: float = 0.05):
    """A pair run `first` rounds, judged; where undecided with N stated, run N more and judged again:
    (stated N, decided after them), or None where the first look decided it or named no N."""
    def rounds(n: int) -> np.ndarray:
        return np.log([[1 / truth], [1.0]]) + rng.normal(0, round_spread, n) + rng.normal(0, spread, (2, n))
    log_times = rounds(first)
    v = verdict(*configurations(log_times, planned=[first] * first))
    if v.kind != "undecided" or v.more_rounds is None:
        return None
    n = first + v.more_rounds
    later = verdict(*configurations(np.column_stack([log_times, rounds(v.more_rounds)]), planned=[n] * n))
    return v.more_rounds, later.decided


def decided_after_the_stated_rounds(truth: float) -> float:
    rng = np.random.default_rng(6)
    outcomes = [o for o in (continue_pair(rng, truth, 6) for _ in range(800)) if o is not None]
    assert len(outcomes) > 100
    return sum(d for _, d in outcomes) / len(outcomes)


def test_after_the_stated_more_rounds_a_pair_at_1_10_is_decided_in_70_to_90_percent():
    assert 0.70 <= decided_after_the_stated_rounds(1.10) <= 0.90  # measured 0.72


def test_after_the_stated_more_rounds_a_pair_at_1_20_is_decided_in_at_least_70_percent():
    # measured 0.97: a pair still undecided at a true 1.20 is one whose estimate fell low, so a number
    # built on what is known states too many rounds for it, never too few
    assert decided_after_the_stated_rounds(1.20) >= 0.70


def test_at_the_estimate_itself_the_stated_rounds_decide_too_few(monkeypatch):
    monkeypatch.setattr(stats, "POWER", 0.5)  # the rounds at which the estimate just clears the margin, as before
    assert decided_after_the_stated_rounds(1.10) < 0.66  # measured 0.60


# 7. "This run could see ...": the smallest ratio its rounds and spread find with 80% power.
@pytest.mark.parametrize("rounds", [5, 8])
def test_a_true_ratio_at_what_a_run_could_see_is_found_in_80_percent_of_runs(rounds):
    spread = 0.10 * math.sqrt(2)  # the per-round log-ratio of two processes of noise 0.10
    level = stats.ALPHA / 2
    seen = stats.could_see(spread, rounds, rounds - 1, level)
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(1000):
        logs = np.log([[1 / seen], [1.0]]) + rng.normal(0, 0.10, (2, rounds))
        found += verdict(*configurations(logs)).kind == "faster"
    assert 0.72 <= found / 1000 <= 0.88  # measured 0.79 and 0.80


# 8. The driver's reasons to stop, in its own words.
def test_the_driver_stops_when_no_undecided_verdict_has_a_chance_in_the_rounds_left():
    hopeless = np.log([[1.0, 1.3, 0.8, 1.2], [1.1, 0.9, 1.25, 0.85]])  # a tie seen through a spread of 0.25
    analysis = analyse_configurations(configurations(hopeless, planned=[10] * 4))
    assert [v.kind for v in analysis.undecided()] == ["undecided"]
    assert stop_reason(4, 10, analysis) == ("the undecided verdict has not even a 1-in-5 chance of being decided in "
                                            "the 6 rounds the budget has left")
    assert stop_reason(4, None, analysis) is None  # a fixed count of rounds runs them all
    assert stop_reason(10, 10, analysis) == "the 10 rounds the budget holds are done"
    clear = np.log([[1.0, 1.02, 0.99, 1.01], [2.0, 2.03, 1.98, 2.02]])
    assert stop_reason(4, 10, analyse_configurations(configurations(clear, planned=[10] * 4))) == \
        "every verdict decided after 4 rounds"
