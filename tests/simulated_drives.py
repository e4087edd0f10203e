"""Synthetic drives of known truth, for the simulation tests of harness.analysis and the driver.

A drive is rounds of trials: each round every configuration runs once, and its log time is
its true level + the round's effect (the whole machine that hour) + the process's own noise
(normal on the log scale, as timing noise is close to log-normal). The verdicts are the
analysis layer's own (harness.analysis.tables.analyse_configurations) and the driver decides
when to stop with its own rule (harness.drive.rounds.stop_after, next_round_fits, STOP_ALPHA).
"""
from __future__ import annotations

import math

import numpy as np

from harness.analysis import stats
from harness.analysis.tables import analyse_configurations
from harness.analysis.trials import Configuration, Trial
from harness.drive import rounds
from harness.plan.cell import Cell
from harness.plan.spec import DataSpec, Hyper

ROUND_S = 180.0  # the main job's rounds took about 3.5 minutes: the default 30-minute budget holds 10 of 3


def configuration(index: int, times: list[float], blocks: list[tuple[str, int]] | None) -> Configuration:
    """A configuration of its own framework (so every one is a rival of the fastest) with these trials."""
    cell = Cell(f"sim{index}", None, "mlp", "step", DataSpec("sim"), Hyper())
    trials = tuple(Trial(t, 1, None if blocks is None else blocks[i], i, False) for i, t in enumerate(times))
    return Configuration(f"sim{index}", "sim-machine", cell, trials, 0)


def configurations(log_times: np.ndarray, paired: bool = True) -> list[Configuration]:
    """Configurations from a (configuration, round) array of log times; unpaired: their rounds unrecorded."""
    rounds = log_times.shape[1]
    blocks = [("sim", r + 1) for r in range(rounds)] if paired else None
    return [configuration(i, list(np.exp(row)), blocks) for i, row in enumerate(log_times)]


def simulate_drive(rng: np.random.Generator, levels: list[float], spread: float, round_spread: float,
                   paired: bool = True, stop_alpha: float | None = None, alpha: float = stats.ALPHA,
                   budget: float = rounds.parse_budget(rounds.DEFAULT_BUDGET)):
    """One drive under the driver's stopping rule and budget: (rounds run, the final verdicts).

    levels: each configuration's true log time. The driver looks with stop_alpha (its own
    STOP_ALPHA by default); the verdicts returned are the report's, at alpha."""
    stop_alpha = rounds.STOP_ALPHA if stop_alpha is None else stop_alpha
    log_times = np.empty((len(levels), 0))
    per_cell: list[float] = []
    number = 0
    while True:
        number += 1
        if not rounds.next_round_fits((number - 1) * ROUND_S, per_cell, len(levels), budget):
            number -= 1
            break
        column = np.asarray(levels) + rng.normal(0, round_spread) + rng.normal(0, spread, len(levels))
        log_times = np.column_stack([log_times, column])
        per_cell.append(ROUND_S / len(levels))
        if number >= rounds.VERDICT_ROUNDS and rounds.stop_after(
                number, analyse_configurations(configurations(log_times, paired), stats.MARGIN, stop_alpha)):
            break
    final = analyse_configurations(configurations(log_times, paired), stats.MARGIN, alpha)
    return number, [v for q in final.questions for v in q.verdicts]


def share(draws: int, seed: int, event, **drive_kw) -> float:
    """The share of simulated drives for which event(rounds, verdicts) holds."""
    rng = np.random.default_rng(seed)
    return sum(bool(event(*simulate_drive(rng, **drive_kw))) for _ in range(draws)) / draws


def any_false(rounds, verdicts) -> bool:
    return any(v.kind in ("faster", "slower") for v in verdicts)


def all_found(rounds, verdicts) -> bool:
    return all(v.kind == "faster" for v in verdicts) and bool(verdicts)


FASTER_1_3 = -math.log(1.3)  # a level 1.3x faster (log time)
