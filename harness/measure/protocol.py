"""The fairness protocol of profile equal: what every framework shares, in one place.

- random streams: every draw comes from numpy.random.default_rng((seed, STREAM, ...)), one
  stream per purpose, so the same seed gives the same numbers on every machine;
- batch orders: a fresh permutation of the training rows each epoch, the last partial batch
  dropped;
- initial weights: Glorot-uniform kernels, zero biases, in the canonical layout;
- evaluation: loss and accuracy computed by the harness from each framework's logits;
- steady epochs: which epochs count in the timings.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.measure.reference import cross_entropy
from harness.plan.errors import HarnessError
from harness.plan.spec import ORDER_STREAM, WEIGHTS_STREAM, ModelSpec


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """Epoch `epoch`'s batches: a permutation of range(n) from default_rng((seed, 0, epoch)),
    shaped (n // batch_size, batch_size).

    The rule for the last partial batch: it is dropped, so every step of every framework
    sees exactly batch_size rows and compiled steps never see a second shape; the epoch's
    fresh permutation puts the dropped rows into other epochs' batches.
    """
    if batch_size > n:
        raise HarnessError(f"batch size {batch_size} exceeds the {n} training rows; give --batch-size {n} or less")
    steps = n // batch_size
    perm = np.random.default_rng((seed, ORDER_STREAM, epoch)).permutation(n)
    return perm[: steps * batch_size].reshape(steps, batch_size)


def initial_weights(model: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Canonical initial weights: Glorot-uniform kernels, zero biases, canonical layout.

    U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), a conv's fans being kh*kw*in and
    kh*kw*out (Keras's default, which seed 002 used). Kernels are drawn in float64 in the
    order of ModelSpec.param_shapes() and cast to float32.
    """
    rng = np.random.default_rng((seed, WEIGHTS_STREAM))
    weights = {}
    for name, shape in model.param_shapes().items():
        if name.endswith(".bias"):
            weights[name] = np.zeros(shape, np.float32)
            continue
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    return weights


def check_weights(model: ModelSpec, weights: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless weights has exactly the model's canonical names and shapes."""
    expected = model.param_shapes()
    got = {k: tuple(np.shape(v)) for k, v in weights.items()}
    if got != expected:
        raise ValueError(f"{model.name}: weights {got} do not match canonical {expected}")


def evaluate(impl, x: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy from the impl's logits, computed by the harness."""
    logits = np.asarray(impl.logits(x), np.float64)
    pred = logits.argmax(axis=1)
    per_class = [float((pred[y == c] == c).mean()) if (y == c).any() else None
                 for c in range(num_classes)]
    return {"loss": cross_entropy(logits, y)[0],
            "accuracy": float((pred == y).mean()), "per_class": per_class, "predicted": pred}


def steady_epochs(curves: dict) -> list[float]:
    """Epoch times after the first (compile, warm-up), without the CUPTI-traced epoch."""
    return [s for e, s in zip(curves["epoch"], curves["epoch_s"])
            if e > 1 and e != curves.get("profiled_epoch")]
