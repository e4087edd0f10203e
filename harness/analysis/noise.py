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


@dataclass(frozen=True)
class SlowEpoch:
    """A steady epoch over SLOW_EPOCH x its process's median, each figure as a multiple of that
    process's median steady epoch's: where the extra wall time went. CPU near the wall's multiple:
    more work was done; CPU near 1 with more context switches: the process waited (involuntary:
    the scheduler gave the core to another; voluntary: a thread blocked).

    Then the whole machine over the same span, in cores (CPU seconds per wall second), the slow
    epoch's beside its process's median epoch's: idle (cores nobody used: the process's threads
    slept with the machine free), others (other processes' CPU) and steal (the hypervisor's).
    NaN where the result predates these records."""
    label: str
    epoch: int
    wall: float
    cpu: float  # user + system CPU seconds of all the process's threads
    sys: float
    faults: float  # minor page faults
    involuntary: float
    voluntary: float
    migrations: float = math.nan  # the threads' moves from one core to another
    idle: tuple[float, float] = (math.nan, math.nan)  # (this epoch, the process's median epoch)
    others: tuple[float, float] = (math.nan, math.nan)
    steal: tuple[float, float] = (math.nan, math.nan)
    wait: tuple[float, float] = (math.nan, math.nan)  # cores' worth of the threads' run-queue waits
    threads: tuple[ThreadShare, ...] = ()  # the busiest threads, busiest first
    gc: tuple[float, float] = (math.nan, math.nan)  # seconds Python's garbage collector ran


@dataclass(frozen=True)
class ThreadShare:
    """One thread in a slow epoch: its CPU seconds and run-queue waits, this epoch's beside its
    median over the process's steady epochs (0 in an epoch it did not live through)."""
    name: str
    cpu: tuple[float, float]
    wait: tuple[float, float]


BUSIEST = 4  # the threads shown per slow epoch


def gc_seconds(c, steady: list[int], i: int) -> tuple[float, float]:
    if len(c.epoch_gc_s) != len(c.epoch):
        return math.nan, math.nan
    return c.epoch_gc_s[i], float(np.median([c.epoch_gc_s[j] for j in steady]))


def thread_shares(c, steady: list[int], i: int) -> tuple[ThreadShare, ...]:
    if len(c.epoch_threads) != len(c.epoch):
        return ()
    by_epoch = [{t.tid: t for t in c.epoch_threads[j]} for j in range(len(c.epoch))]
    shares = []
    for t in c.epoch_threads[i][:BUSIEST]:
        cpu = [by_epoch[j][t.tid].cpu_s if t.tid in by_epoch[j] else 0.0 for j in steady]
        wait = [by_epoch[j][t.tid].wait_s if t.tid in by_epoch[j] else 0.0 for j in steady]
        shares.append(ThreadShare(t.name, (t.cpu_s, float(np.median(cpu))), (t.wait_s, float(np.median(wait)))))
    return tuple(shares)


def ratio(value: float, median: float) -> float:
    return value / median if median else math.nan if not value else math.inf


def machine_cores(c, cpu: list[float]) -> dict[str, list[float]]:
    """Each epoch's idle, other processes' and stolen cores (NaN where not recorded)."""
    if len(c.epoch_machine_busy_s) != len(c.epoch):
        return {k: [math.nan] * len(c.epoch) for k in ("idle", "others", "steal", "wait")}
    wall = c.epoch_s if not c.planted_s else [w - p for w, p in zip(c.epoch_s, c.planted_s)]
    waits = c.epoch_run_wait_s if len(c.epoch_run_wait_s) == len(c.epoch) else [math.nan] * len(c.epoch)
    return {"idle": [i / w for i, w in zip(c.epoch_machine_idle_s, wall)],
            "wait": [s / w for s, w in zip(waits, wall)],
            "others": [max(0.0, b - own) / w for b, own, w in zip(c.epoch_machine_busy_s, cpu, wall)],
            "steal": [s / w for s, w in zip(c.epoch_machine_steal_s, wall)]}


def slow_epochs(results: list[Result], contended: bool = False) -> list[SlowEpoch]:
    """Every slow steady epoch of the finished results that recorded their epochs' usage; those
    other processes contended for only if asked (a test's, which knows the cause it planted)."""
    out = []
    for r in results:
        c = r.curves
        if (r.status != "ok" or r.cell.control is not None or not c.epoch_user_s
                or (not contended and r.env.contention is not None and r.env.contention.contended)):
            continue
        steady = [i for i, e in enumerate(c.epoch) if e > 1 and e != c.profiled_epoch]
        if len(steady) < 2:
            continue
        cpu = [c.epoch_user_s[i] + c.epoch_sys_s[i] for i in range(len(c.epoch))]
        columns = {"wall": c.epoch_s, "cpu": cpu, "sys": c.epoch_sys_s, "faults": c.epoch_minflt,
                   "involuntary": c.epoch_nivcsw, "voluntary": c.epoch_nvcsw}
        if len(c.epoch_migrations) == len(c.epoch):
            columns["migrations"] = c.epoch_migrations
        medians = {k: float(np.median([v[i] for i in steady])) for k, v in columns.items()}
        cores = machine_cores(c, cpu)
        typical = {k: float(np.median([v[i] for i in steady])) for k, v in cores.items()}
        label = Configuration("", "", r.cell.configuration, (), 0).label
        for i in steady:
            if c.epoch_s[i] > SLOW_EPOCH * medians["wall"]:
                out.append(SlowEpoch(f"{r.cell.model} {label} {r.cell.profile}", c.epoch[i],
                                     **{k: ratio(v[i], medians[k]) for k, v in columns.items()},
                                     **{k: (v[i], typical[k]) for k, v in cores.items()},
                                     threads=thread_shares(c, steady, i), gc=gc_seconds(c, steady, i)))
    return out


@dataclass(frozen=True)
class Noise:
    """A run's noise: each configuration's spread, and its slow epochs with where their time went."""
    spreads: tuple[Spread, ...] = ()
    slow: tuple[SlowEpoch, ...] = ()


def noise(results: list[Result]) -> Noise:
    return Noise(tuple(spreads(results)), tuple(slow_epochs(results)))
