"""Impls that misbehave on purpose, plugged in through $FWCOMPARE_IMPLS by the runner tests."""
from __future__ import annotations

import numpy as np

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

    Its cell process drops a file named after its parent's pid (the Ray worker under the Ray
    executor) in $FWCOMPARE_TEST_PID_DIR, and reports the cores it may run on.
    """
    framework = "slow"

    def build(self, *args, **kwargs):
        import os
        from pathlib import Path

        if os.environ.get("FWCOMPARE_TEST_PID_DIR"):
            (Path(os.environ["FWCOMPARE_TEST_PID_DIR"]) / str(os.getppid())).touch()
        return super().build(*args, **kwargs)

    def train_epoch(self, order):
        import os
        import time

        time.sleep(float(os.environ.get("FWCOMPARE_TEST_EPOCH_S", "1")))
        return super().train_epoch(order)

    def settings(self):
        import os

        return {"process_affinity": sorted(os.sched_getaffinity(0))}
