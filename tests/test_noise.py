"""The noise analysis sees what was planted: identical processes are quiet, a bimodal level is a
spread between processes with quiet epochs inside each, a slow epoch a spread inside its process;
and the report shows each configuration's spread and a strip plot of every process's epochs."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from harness.analysis.noise import TARGET_CV, Noise, SlowEpoch, slow_epochs, spread
from harness.analysis.trials import Configuration, Trial
from harness.measure.store import Store
from harness.plan.cell import Cell
from harness.plan.files import REPO_ROOT
from harness.plan.spec import DataSpec, Hyper
from harness.report import noise as shown
from harness.report.plots import pyplot, save
from tests.helpers import harness_run

CELL = Cell("torch", None, "mlp", "eager", DataSpec(), Hyper(), "float32", "cpu", 0, None, "equal")


def configuration(levels, slow: dict[int, int] = {}, seed: int = 0, epochs: int = 4) -> Configuration:
    """A process at each level, its steady epochs within 1% of it; slow: {process: epoch index} made 1.6x."""
    rng = np.random.default_rng(seed)
    trials = []
    for k, level in enumerate(levels):
        steady = list(level * (1 + 0.01 * rng.standard_normal(epochs)))
        if k in slow:
            steady[slow[k]] *= 1.6
        trials.append(Trial(float(np.median(steady)), 60_000, ("d", k + 1), 0, False, steady=tuple(steady)))
    return Configuration("key", "m", CELL, tuple(trials), 0)


def test_identical_processes_are_quiet():
    s = spread(configuration([1.0] * 8))
    assert s.between < 0.02 and s.within < 0.02 and s.slow_epochs == 0 and s.met and s.processes == 8


def test_a_bimodal_level_is_a_spread_between_processes_with_quiet_epochs_inside():
    s = spread(configuration([1.0, 1.5] * 4))
    assert s.between > 0.2 and s.within < 0.02 and s.slow_epochs == 0 and not s.met


def test_a_slow_epoch_is_a_spread_inside_its_process_and_is_counted():
    s = spread(configuration([1.0] * 8, slow={2: 1, 5: 3}))
    assert s.slow_epochs == 2 and s.epochs == 32
    assert s.between < TARGET_CV  # the medians barely move: the slow epochs are not a slow process
    assert s.within < 0.02  # the median process is quiet; the slow epochs are counted apart


def test_the_report_shows_each_spread_and_draws_every_process(tmp_path):
    spreads = [spread(configuration([1.0] * 8)), spread(configuration([1.0, 1.5] * 4, seed=1))]
    section = shown.noise_section(Noise(tuple(spreads)), {})
    rows = section.blocks[1][1].frame
    assert list(rows["processes"]) == ["8", "8"] and list(rows[f"at or under {TARGET_CV}"]) == ["yes", "no"]
    figures = shown.draw(pyplot(), Noise(tuple(spreads)), tmp_path, save)
    (caption, path), = figures[shown.NOISE_ANCHOR]
    assert path.stat().st_size > 1000 and "every process" in caption
    assert shown.noise_section(Noise((spread(configuration([1.0, 1.0])),)), {}) is None  # two processes say nothing


@pytest.mark.parametrize("by", ["wait", "work", "gc"])
def test_a_slow_epoch_says_whether_it_waited_or_worked(tmp_path, by):
    """tests/fake_impls.py's SlowEpochImpl: epoch 3 of 5 twice as long, asleep, busy or collecting
    garbage; the other steady epochs all alike. Its usage, taken in the cell's own process, tells
    the three apart, and names the thread that did the extra work."""
    proc = harness_run("--framework", "slowepoch", "--dataset", "tiny5x5", "--model", "logistic", "--batch-size",
                       "2", "--epochs", "5", out=tmp_path, env={"FWCOMPARE_TEST_SLOW_BY": by})
    assert proc.returncode == 0, proc.stderr
    results = [r for _, r in Store(tmp_path).results()]
    (slow,) = slow_epochs(results, contended=True)  # whatever else runs beside the test
    assert slow.epoch == 3 and 1.7 < slow.wall < 2.5
    if by == "wait":
        assert slow.cpu < 1.3 and slow.voluntary >= 1  # asleep: no more CPU than a usual epoch
    else:
        assert slow.cpu > 1.6  # busy: the CPU time grew with the wall
    # Python's collector: over half of the slow epoch's extra 0.1 s when its epochs are made of collections
    assert (slow.gc[0] - slow.gc[1] > 0.05) == (by == "gc") and (slow.gc[0] < 0.01) == (by != "gc")
    if by != "wait":
        busiest = slow.threads[0]  # the impl's busy loop runs on the process's main thread
        assert busiest.name == "main" and busiest.cpu[0] > 1.6 * busiest.cpu[1]
    # the machine over the epoch: its own cores, idle, others' and stolen cores add up to every core
    (result,) = results
    own = (result.curves.epoch_user_s[2] + result.curves.epoch_sys_s[2]) / result.curves.epoch_s[2]
    assert abs(own + slow.idle[0] + slow.others[0] + slow.steal[0] - os.cpu_count()) < 0.35


def test_the_slow_epochs_table_leaves_out_what_older_results_did_not_record():
    older = SlowEpoch("mlp torch eager equal", 3, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert "idle cores (process median)" not in shown.slow_grid([older]).frame
    newer = dataclasses.replace(older, idle=(1.0, 0.5))
    assert list(shown.slow_grid([newer]).frame["idle cores (process median)"]) == ["1.00 (0.50)"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the wake-up probe compares two cores")
def test_the_wakeup_probe_times_a_hand_off_across_cores_and_on_one():
    proc = subprocess.run([sys.executable, "-m", "harness.measure.wakeups", "2"], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    summary = dict(re.findall(r"^(across cores|one core): median of the seconds' medians ([\d.]+) us", proc.stdout, re.M))
    assert set(summary) == {"across cores", "one core"} and all(float(us) > 0 for us in summary.values())
