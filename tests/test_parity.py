"""Every framework computes what the numpy reference computes, from the same weights and batches.

Run in each framework's tox env; a framework not installed here is skipped.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from harness import data
from harness.measure import protocol, reference
from harness.measure.protocol import initial_weights
from harness.plan.errors import HarnessError
from harness.plan.spec import MODELS, Hyper, model_spec
from tests.conftest import DEVICE, FRAMEWORK_MODES, FRAMEWORKS, ON_GPU

pytestmark = pytest.mark.framework

# float32 forward against float64: relative error of the logits, max |a - b| / max |b|.
FORWARD_RTOL = 1e-5
# 50 float32 steps against the float64 reference, per-step loss relative error.
TRAJECTORY_RTOL = 1e-4
TRAJECTORY_STEPS = 50
WEIGHTS_RTOL = 1.5e-3  # the final weights after those steps, max |a - b| / max |b|
SEED = 0
RECIPES = {
    "adam": Hyper(optimizer="adam", lr=1e-3, batch_size=32, seed=SEED),
    # lr large enough that 50 steps move the loss visibly, small enough not to diverge
    "sgd": Hyper(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, seed=SEED),
}


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def build(make_impl, framework, model_name, mnist, hyper, mode=None, precision="float32"):
    model = model_spec(model_name)
    weights = initial_weights(model, hyper.seed)
    impl = make_impl(framework)
    impl.build(model, hyper, mnist, weights, DEVICE, mode, precision)
    return impl, model, weights


@functools.lru_cache(maxsize=None)
def reference_run(model_name: str, optimizer: str):
    """Per-step losses and final weights of the float64 reference (computed once per session)."""
    mnist = data.load("mnist")
    hyper = RECIPES[optimizer]
    model = model_spec(model_name)
    order = protocol.batch_order(len(mnist.x_train), hyper.batch_size, hyper.seed, 0)[:TRAJECTORY_STEPS]
    losses, final = reference.trajectory(model, hyper, initial_weights(model, hyper.seed),
                                         mnist.x_train, mnist.y_train, order)
    return order, losses, final


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("model_name", MODELS)
def test_canonical_weights_round_trip_exactly(make_impl, framework, model_name, mnist):
    impl, model, weights = build(make_impl, framework, model_name, mnist, RECIPES["adam"])
    got = impl.get_weights()
    assert set(got) == set(weights)
    for name in weights:
        np.testing.assert_array_equal(got[name], weights[name], err_msg=name)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("model_name", MODELS)
def test_native_init_has_design_parameter_count(make_impl, framework, model_name, mnist):
    model = model_spec(model_name)
    impl = make_impl(framework)
    impl.build(model, Hyper(init="native"), mnist, None, DEVICE, None)
    got = impl.get_weights()
    assert {k: v.shape for k, v in got.items()} == model.param_shapes()
    assert sum(v.size for v in got.values()) == MODELS[model_name].params


@pytest.mark.parametrize("framework,mode", FRAMEWORK_MODES)
@pytest.mark.parametrize("model_name", MODELS)
def test_forward_logits_match_reference(make_impl, framework, mode, model_name, mnist):
    impl, model, weights = build(make_impl, framework, model_name, mnist, RECIPES["adam"], mode)
    x = mnist.x_test[:256]
    got = impl.logits(x)
    assert got.shape == (256, 10) and got.dtype == np.float32
    assert rel_err(got, reference.forward(model, weights, x)) <= FORWARD_RTOL


@pytest.mark.parametrize("framework,mode", FRAMEWORK_MODES)
@pytest.mark.parametrize("optimizer", RECIPES)
@pytest.mark.parametrize("model_name", MODELS)
def test_first_50_steps_match_reference_losses(make_impl, framework, mode, model_name, optimizer, mnist):
    order, want_losses, want_weights = reference_run(model_name, optimizer)
    impl, _, _ = build(make_impl, framework, model_name, mnist, RECIPES[optimizer], mode)
    losses = np.asarray(impl.train_epoch(order))
    assert losses.shape == (TRAJECTORY_STEPS,)
    per_step = np.abs(losses - want_losses) / np.abs(want_losses)
    assert per_step.max() <= TRAJECTORY_RTOL, f"worst step {per_step.argmax()}: {per_step.max():.2e}"
    # The losses moved (a frozen model would match step 0 only) and weights followed them.
    assert want_losses[-1] < want_losses[0]
    # Final weights too: an Adam eps off by 10x moves logistic and CNN weights by 2.2e-3 to
    # 5e-3 while their 50 losses stay within 1e-4 (checked by hand on torch and jax). On an
    # H100, cuDNN's convolution algorithms left Keras-on-jax's CNN conv1 1.08e-3 off.
    got = impl.get_weights()
    for name, want in want_weights.items():
        assert rel_err(got[name], want) <= WEIGHTS_RTOL, name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unknown_mode_is_refused_listing_the_valid_ones(make_impl, framework, mnist):
    with pytest.raises(HarnessError, match="valid modes: "):
        make_impl(framework).build(MODELS["logistic"], Hyper(), mnist, None, DEVICE, "warp-speed")


# ---------------------------------------------------------------- precisions
# Logits relative error against float64 when the layers compute in a narrower format: above
# float32's (so the format is really in use) and within the format's rounding. bf16 keeps
# 8 mantissa bits (2^-8 = 3.9e-3; 4.1e-3 to 4.5e-3 seen on every framework), TF32 10.
NARROW_FORWARD = {"bf16": (1e-3, 1.5e-2), "tf32": (1e-5, 4e-3)}
# 50 Adam steps in bf16 against the float64 reference: the mlp drifts most (3.3e-2 seen).
BF16_TRAJECTORY_RTOL = 6e-2
NARROW = ["bf16"] + (["tf32"] if ON_GPU else [])


@pytest.mark.parametrize("framework,mode", FRAMEWORK_MODES)
@pytest.mark.parametrize("precision", NARROW)
@pytest.mark.parametrize("model_name", MODELS)
def test_narrow_precision_is_used_and_within_its_rounding(make_impl, framework, mode, precision,
                                                           model_name, mnist):
    if framework == "keras" and precision == "tf32":
        pytest.skip("Keras takes TF32 from the environment only (harness.plan.cell.cell_env)")
    impl, model, weights = build(make_impl, framework, model_name, mnist, RECIPES["adam"], mode, precision)
    got = impl.logits(mnist.x_test[:256])
    assert got.dtype == np.float32
    low, high = NARROW_FORWARD[precision]
    assert low < rel_err(got, reference.forward(model, weights, mnist.x_test[:256])) < high


@pytest.mark.parametrize("framework,mode", FRAMEWORK_MODES)
@pytest.mark.parametrize("model_name", MODELS)
def test_bf16_training_follows_the_reference_within_bf16_rounding(make_impl, framework, mode, model_name,
                                                                  mnist):
    order, want_losses, _ = reference_run(model_name, "adam")
    impl, _, _ = build(make_impl, framework, model_name, mnist, RECIPES["adam"], mode, "bf16")
    losses = np.asarray(impl.train_epoch(order))
    per_step = np.abs(losses - want_losses) / np.abs(want_losses)
    assert per_step.max() <= BF16_TRAJECTORY_RTOL, f"worst step {per_step.argmax()}: {per_step.max():.2e}"


@pytest.mark.skipif(ON_GPU, reason="tf32 is refused on the CPU only")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_tf32_is_refused_on_the_cpu_naming_what_runs_there(make_impl, framework, mnist):
    with pytest.raises(HarnessError, match="GPU tensor-core mode; on the CPU run float32 or bf16"):
        make_impl(framework).build(MODELS["logistic"], Hyper(), mnist, None, "cpu", None, "tf32")
