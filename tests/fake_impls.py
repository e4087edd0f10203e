"""Impls that misbehave on purpose, plugged in through $FWCOMPARE_IMPLS by the runner tests."""
from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import numpy as np

from harness.measure.contract import InputClock
from impls.numpy_impl import NumpyImpl


class DivergingImpl(NumpyImpl):
    """Trains like the reference until its loss turns to NaN on the third step."""
    framework = "diverging"

    def train_epoch(self, order):
        losses = super().train_epoch(order)
        losses[2:] = np.nan
        return losses


class FailingImpl(NumpyImpl):
    """Raises from train_epoch, as a framework bug would."""
    framework = "failing"

    def train_epoch(self, order):
        raise RuntimeError("simulated framework failure")


class OomImpl(NumpyImpl):
    """Runs out of device memory, as a too-large batch would."""
    framework = "oom"

    def train_epoch(self, order):
        raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB (simulated)")


class SlowImpl(NumpyImpl):
    """Sleeps through each epoch, so that a test can kill the process running it mid-cell.

    Its cell process drops two files in $FWCOMPARE_TEST_PID_DIR: one named after its parent's
    pid (the Ray worker under the Ray executor) and `cell-<its own pid>`; it reports the cores
    it may run on, and fails its first epoch when $FWCOMPARE_TEST_FAIL is set.
    """
    framework = "slow"

    def build(self, *args, **kwargs):
        if os.environ.get("FWCOMPARE_TEST_PID_DIR"):
            (Path(os.environ["FWCOMPARE_TEST_PID_DIR"]) / str(os.getppid())).touch()
            (Path(os.environ["FWCOMPARE_TEST_PID_DIR"]) / f"cell-{os.getpid()}").touch()
        return super().build(*args, **kwargs)

    def train_epoch(self, order):
        time.sleep(float(os.environ.get("FWCOMPARE_TEST_EPOCH_S", "1")))
        if os.environ.get("FWCOMPARE_TEST_FAIL"):
            raise RuntimeError("simulated failure of a rerun")
        return super().train_epoch(order)

    def settings(self):
        return {**super().settings(), "process_affinity": sorted(os.sched_getaffinity(0))}


class KnownSplitImpl(NumpyImpl):
    """Steps whose time is known: each batch takes INPUT_S to obtain, each step OVERHEAD_S plus
    S_PER_PARAM per parameter of its model (so a shrunk model's step is nearly all overhead)."""
    framework = "timed"
    INPUT_S, OVERHEAD_S, S_PER_PARAM = 0.008, 0.012, 0.020 / 33_114  # 20 ms for tiny5x5's MLP (33,114 params)

    def build(self, model, *args, **kwargs):
        super().build(model, *args, **kwargs)
        self.input_clock = InputClock("a sleep of INPUT_S per batch")
        self.step_s = self.OVERHEAD_S + self.S_PER_PARAM * model.params

    def train_epoch(self, order):
        for _ in order:
            with self.input_clock.fetching():
                time.sleep(self.INPUT_S)
            time.sleep(self.step_s)
        return np.full(len(order), 1.0)


class SlowEpochImpl(NumpyImpl):
    """Its steady epochs take EPOCH_S each, but epoch 3 takes SLOW times as long, spent as
    $FWCOMPARE_TEST_SLOW_BY says: "wait" (asleep: wall time, no CPU), "work" (a busy loop:
    CPU time as long as the wall) or "gc" (Python's garbage collector, run again and again).
    A slow epoch of known cause, for harness.analysis.noise."""
    framework = "slowepoch"
    EPOCH_S, SLOW = 0.1, 2.0

    def build(self, *args, **kwargs):
        self.epochs_run = 0
        return super().build(*args, **kwargs)

    def train_epoch(self, order):
        self.epochs_run += 1
        seconds = self.EPOCH_S * (self.SLOW if self.epochs_run == 3 else 1)
        by = os.environ.get("FWCOMPARE_TEST_SLOW_BY")
        if by in ("work", "gc"):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                if by == "gc":  # Python's collector, made to run again and again on cyclic garbage
                    cycles = [[] for _ in range(1000)]
                    for a, b in zip(cycles, cycles[1:] + cycles[:1]):
                        a.append(b)
                    del cycles, a, b
                    gc.collect()
        else:
            time.sleep(seconds)
        return super().train_epoch(order)
