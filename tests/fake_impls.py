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
