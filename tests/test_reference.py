"""The numpy oracle: hand-checked logits, gradients that agree with finite differences, weights."""
from __future__ import annotations

import numpy as np
import pytest

from harness import data
from harness.measure import reference
from harness.measure.protocol import check_weights, initial_weights
from harness.plan.spec import MODELS, model_spec


def test_parameter_counts_are_designs():
    assert {n: m.param_count() for n, m in MODELS.items()} == {
        "logistic": 7_850, "mlp": 628_170, "cnn": 4_266}


def test_tiny5x5_template_logits_equal_hand_counted_overlaps():
    """Logistic weights = the ten digits as templates: a logit counts lit pixels two digits share."""
    tiny = data.load("tiny5x5")
    model = model_spec("logistic", tiny.input_shape)
    weights = {"dense1.kernel": tiny.x_train.reshape(10, 25).T.copy(),
               "dense1.bias": 0.5 * np.arange(10, dtype=np.float32)}
    logits = reference.forward(model, weights, tiny.x_train)
    # Counted by hand from seed 000's drawings: 8 has 13 lit pixels, shares 12 with 0;
    # 1 has 8 lit pixels and shares 2 with 7 (top-middle and bottom-right).
    assert logits[8, 8] == 13 + 0.5 * 8
    assert logits[8, 0] == 12 + 0.5 * 0
    assert logits[1, 1] == 8 + 0.5 * 1
    assert logits[1, 7] == 2 + 0.5 * 7


@pytest.mark.parametrize("name", MODELS)
def test_backprop_matches_finite_differences(name):
    rng = np.random.default_rng(0)
    model = MODELS[name] if name == "mlp" else model_spec(name, (8, 8, 1))
    # non-zero biases so that relu and max-pool see no ties
    weights = {k: v.astype(np.float64) + (0.1 * rng.standard_normal(v.shape) if k.endswith("bias") else 0)
               for k, v in initial_weights(model, 0).items()}
    x, y = rng.random((3,) + model.input_shape), rng.integers(0, 10, 3)
    _, grads = reference.loss_and_grads(model, weights, x, y)
    for key, w in weights.items():
        for _ in range(3):
            idx = tuple(rng.integers(0, s) for s in w.shape)
            plus, minus = dict(weights), dict(weights)
            plus[key], minus[key] = w.copy(), w.copy()
            plus[key][idx] += 1e-6
            minus[key][idx] -= 1e-6
            fd = (reference.cross_entropy(reference.forward(model, plus, x), y)[0]
                  - reference.cross_entropy(reference.forward(model, minus, x), y)[0]) / 2e-6
            assert abs(fd - grads[key][idx]) <= 1e-6 + 1e-5 * abs(fd), (key, idx)


def test_same_seed_same_weights_other_seed_other_weights():
    model = MODELS["cnn"]
    a, b, c = initial_weights(model, 0), initial_weights(model, 0), initial_weights(model, 1)
    check_weights(model, a)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.kernel"], c["conv1.kernel"])
    # Glorot-uniform bound for conv1: fans 3*3*1 and 3*3*4
    assert np.abs(a["conv1.kernel"]).max() <= np.sqrt(6 / (9 + 36))
    assert not a["dense1.bias"].any()
