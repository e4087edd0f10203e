"""The trials behind every claim: result files as typed configurations, each with its trials.

A trial is one finished process of a configuration: its time per sample (the median of its
steady epochs over the samples an epoch trains), the round that ran it (the interleaving
driver's block, where one ran it) and whether other processes contended for the machine.
A configuration is every cell field but the seed, the trial and the data's hash; its
contended trials are counted and left out of every speed claim.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from harness.analysis import stats
from harness.measure.results import Result
from harness.plan.cell import Cell

Block = tuple[str, int]  # (the driver's run id, the round's number): trials of one block met one hour of the machine


@dataclass(frozen=True)
class Trial:
    epoch_s: float  # the median of its steady epochs
    samples_per_epoch: int
    block: Block | None  # None: not run by the interleaving driver
    seed: int
    contended: bool | None  # None: not recorded
    infer_s_per_sample: float | None = None  # inference at a large batch, the median of its repeats
    steady: tuple[float, ...] = ()  # its steady epochs' seconds, in order (epoch_s is their median)
    planned: int | None = None  # the rounds its drive planned when it ran (harness.analysis.sequential)

    @property
    def seconds_per_sample(self) -> float:
        return self.epoch_s / self.samples_per_epoch


@dataclass(frozen=True)
class Configuration:
    """One configuration of one machine and its uncontended trials."""
    key: str  # config_key of its cells: what its trials are repetitions of
    machine: str
    cell: Cell  # its cells' common fields (trial 0, seed 0)
    trials: tuple[Trial, ...]  # finished, uncontended
    contended: int  # finished trials left out because other processes contended

    @property
    def table(self) -> tuple[str, str, str, str]:
        """What a configuration may be compared within: machine, data (subset, recipe), model, device."""
        return self.machine, data_label(self.cell), self.cell.model, self.cell.device

    @property
    def control(self) -> str | None:
        return self.cell.control

    @property
    def label(self) -> str:
        """'torch eager', 'keras[jax] fit': what names a configuration."""
        c = self.cell
        variant = "".join(f" {name}={value}" for name, value in c.env)
        return f"{c.framework}{f'[{c.backend}]' if c.backend else ''} {c.mode}{variant}"

    @property
    def times(self) -> list[float]:
        return [t.seconds_per_sample for t in self.trials]

    @property
    def infer_times(self) -> list[float]:
        return [t.infer_s_per_sample for t in self.trials if t.infer_s_per_sample is not None]

    @property
    def speed(self) -> float:
        """Training samples per second: 1 / the geometric mean time (NaN without trials)."""
        return math.exp(-float(np.mean(np.log(self.times)))) if self.trials else math.nan

    @property
    def rate(self) -> stats.Interval:
        """Training samples per second: 1 / the geometric mean time, with its 95% interval."""
        return stats.rate_interval(self.times)

    def by_block(self) -> dict[Block, float]:
        """Its trials' times by round (a configuration runs once a round)."""
        return {t.block: t.seconds_per_sample for t in self.trials if t.block is not None}

    def planned_by_round(self) -> dict[int, int | None]:
        """The rounds its drives planned, by round number (what the stopping rule's looks were at)."""
        return {t.block[1]: t.planned for t in self.trials if t.block is not None}


def data_label(cell: Cell) -> str:
    """The data a cell trained on, subset and recipe included: cells compare only within one."""
    d = cell.data
    parts = [d.name]
    if d.classes:
        parts.append("classes " + ",".join(map(str, d.classes)))
    if d.train_rows or d.val_rows:
        parts.append(f"first {d.train_rows} train + {d.val_rows} val rows")
    if d.test_val:
        parts.append(f"{d.test_val} test rows as val")
    label = ", ".join(parts)
    return f"{cell.recipe}: {label}" if cell.recipe else label


def config_key(cell: Cell) -> str:
    """What a cell is a repetition of: its id with the seed, the trial and the data's hash set aside."""
    return dataclasses.replace(cell.configuration, data_sha256="").id


def trial(result: Result) -> Trial | None:
    """A finished result as a trial; None where it has no steady epoch to time."""
    m = result.metrics
    if result.status != "ok" or not m.steady_epoch_s or not m.samples_per_epoch:
        return None
    epoch_s = float(np.median(m.steady_epoch_s))
    if not math.isfinite(epoch_s) or epoch_s <= 0:
        return None
    r, contention = result.env.round, result.env.contention
    infer = getattr(m.infer_samples_per_s, "median", None)
    return Trial(epoch_s, m.samples_per_epoch, (r.drive, r.number) if r else None, result.cell.hyper.seed,
                 None if contention is None else contention.contended,
                 1 / infer if infer and math.isfinite(infer) and infer > 0 else None, tuple(m.steady_epoch_s),
                 r.planned if r else None)


def configurations(results: list[Result]) -> list[Configuration]:
    """The results grouped into configurations, in the order their first results came."""
    groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in results:
        groups[r.env.machine.id, config_key(r.cell)].append(r)
    out = []
    for (machine, key), rs in groups.items():
        finished = [t for t in map(trial, rs) if t is not None]
        timed = tuple(t for t in finished if not t.contended)
        out.append(Configuration(key, machine, rs[0].cell.configuration, timed, len(finished) - len(timed)))
    return out
