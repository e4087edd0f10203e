"""Synthetic drives of known truth, for the simulation tests of harness.analysis and the driver.

A drive is rounds of trials: each round every configuration runs once, and its log time is
its true level + the round's effect (the whole machine that hour) + the process's own noise
(normal on the log scale, as timing noise is close to log-normal). The verdicts are the
analysis layer's own (harness.analysis.tables.analyse_configurations) and the driver decides
when to stop with its own rules (harness.drive.rounds: rounds_planned, stop_reason, next_round_fits).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from harness.analysis import stats
from harness.analysis.tables import Control, Question, analyse_configurations
from harness.analysis.trials import Configuration, Trial, config_key
from harness.analysis.verdicts import Verdict
from harness.drive import rounds
from harness.plan.cell import Cell
from harness.plan.spec import DataSpec, Hyper

ROUND_S = 180.0  # the main job's rounds took about 3.5 minutes: the default 30-minute budget holds 10 of 3


def configuration(index: int, times: list[float], blocks: list[tuple[str, int]] | None,
                  planned: list[int | None] | None = None, control: dict | None = None) -> Configuration:
    """A configuration of its own framework (so every one is a rival of the fastest) with these trials;
    control: {"twin": True} or {"planted_slowdown": 1.25} makes it that control of configuration 0."""
    cell = Cell(f"sim{0 if control else index}", None, "mlp", "step", DataSpec("sim"), Hyper(), **(control or {}))
    planned = planned or [None] * len(times)
    trials = tuple(Trial(t, 1, None if blocks is None else blocks[i], i, False, planned=planned[i])
                   for i, t in enumerate(times))
    return Configuration(config_key(cell), "sim-machine", cell, trials, 0)


def configurations(log_times: np.ndarray, paired: bool = True, planned: list[int | None] | None = None,
                   controls: tuple[dict, ...] = ()) -> list[Configuration]:
    """Configurations from a (configuration, round) array of log times, each round's planned rounds
    as the driver recorded them (None: a fixed count); unpaired: their rounds unrecorded. The last
    len(controls) rows are those controls of the first."""
    rounds = log_times.shape[1]
    blocks = [("sim", r + 1) for r in range(rounds)] if paired else None
    first_control = len(log_times) - len(controls)
    return [configuration(i, list(np.exp(row)), blocks, planned, controls[i - first_control] if i >= first_control
                          else None) for i, row in enumerate(log_times)]


@dataclass(frozen=True)
class Drive:
    """What a simulated drive ended with: the rounds it ran, the report's verdicts and controls."""
    rounds: int
    verdicts: list[Verdict]
    controls: list[Control]
    questions: list[Question]


def simulate_drive(rng: np.random.Generator, levels: list[float], spread: float, round_spread: float,
                   paired: bool = True, spending: bool = True, alpha: float = stats.ALPHA,
                   budget: float = rounds.parse_budget(rounds.DEFAULT_BUDGET), futility: bool = True,
                   planted: float | None = None, twin: bool = False) -> Drive:
    """One drive under the driver's own stopping rule and budget, judged as the report judges it.

    levels: each configuration's true log time. Each round records the rounds the budget holds, as
    the driver does (spending=False leaves them out: every look at the full level, no spending).
    futility=False never stops a drive for verdicts with no chance within the budget. twin and
    planted add the driver's controls of the first configuration, each a process of its own."""
    controls = (({"twin": True},) if twin else ()) + (({"planted_slowdown": planted},) if planted else ())
    truth = list(levels) + [levels[0]] * twin + ([levels[0] + math.log(planted)] if planted else [])
    log_times = np.empty((len(truth), 0))
    per_cell: list[float] = []
    plans: list[int | None] = []
    number = 0
    while True:
        number += 1
        elapsed = (number - 1) * ROUND_S
        if not rounds.next_round_fits(elapsed, per_cell, len(truth), budget):
            number -= 1
            break
        planned = rounds.rounds_planned(number, elapsed, per_cell, len(truth), budget) if spending else None
        plans.append(planned)
        column = np.asarray(truth) + rng.normal(0, round_spread) + rng.normal(0, spread, len(truth))
        log_times = np.column_stack([log_times, column])
        per_cell.append(ROUND_S / len(truth))
        if number >= rounds.VERDICT_ROUNDS or planned is not None and number >= planned:
            analysis = analyse_configurations(configurations(log_times, paired, plans, controls), stats.MARGIN,
                                              alpha)
            if not futility:
                analysis = dataclasses.replace(analysis, questions=tuple(
                    dataclasses.replace(q, verdicts=tuple(dataclasses.replace(v, long_shot=0) for v in q.verdicts))
                    for q in analysis.questions))
            if rounds.stop_reason(number, planned, analysis):
                break
    final = analyse_configurations(configurations(log_times, paired, plans, controls), stats.MARGIN, alpha)
    return Drive(number, [v for q in final.questions for v in q.verdicts], list(final.controls),
                 list(final.questions))


def share(draws: int, seed: int, event, **drive_kw) -> float:
    """The share of simulated drives for which event(drive) holds."""
    rng = np.random.default_rng(seed)
    return sum(bool(event(simulate_drive(rng, **drive_kw))) for _ in range(draws)) / draws


def any_false(drive: Drive) -> bool:
    return any(v.kind in ("faster", "slower") for v in drive.verdicts)


def all_found(drive: Drive) -> bool:
    return all(v.kind == "faster" for v in drive.verdicts) and bool(drive.verdicts)


FASTER_1_3 = -math.log(1.3)  # a level 1.3x faster (log time)
