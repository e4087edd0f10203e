"""Canonical initial weights from a seed, in canonical layout (dense (in, out), conv HWIO).

Scheme: every kernel is Glorot-uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
where a conv's fans are kh*kw*in and kh*kw*out (Keras's default, used by seed 002);
every bias is zero. Kernels are drawn in float64 from numpy.random.default_rng((seed,
WEIGHTS_STREAM)) in the order of ModelSpec.param_shapes() and cast to float32, so the
same seed gives the same weights on every machine and in every framework.
"""
from __future__ import annotations

import numpy as np

from harness.spec import ModelSpec

WEIGHTS_STREAM = 1  # keeps weight draws independent of the batch-order stream (data.py)


def initial_weights(model: ModelSpec, seed: int) -> dict[str, np.ndarray]:
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
