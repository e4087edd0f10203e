"""pytest-benchmark: training steps and one inference batch per framework and model.

    tox -e bench-torch,bench-keras,bench-jax     timed, JSON under results/benchmarks/
In the test envs these run once each, untimed (--benchmark-disable), as correctness checks.
"""
from __future__ import annotations

import numpy as np
import pytest

from harness.measure import protocol
from harness.measure.protocol import initial_weights
from harness.plan.spec import EVAL_BATCH, MODELS, Hyper, model_spec
from tests.conftest import DEVICE, FRAMEWORKS

pytestmark = pytest.mark.framework
ROUNDS, WARMUP_ROUNDS = 20, 2  # the warm-up rounds absorb compilation
# Steps per timed call: one Keras fit call costs tens of ms of set-up (71 ms against 1.7 ms
# a step inside a long fit, on TensorFlow), so a one-step call would time fit, not the step.
STEPS_PER_CALL = 20


def built(make_impl, framework, model_name, mnist, hyper):
    model = model_spec(model_name)
    impl = make_impl(framework)
    impl.build(model, hyper, mnist, initial_weights(model, hyper.seed), DEVICE, None)
    return impl


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("model_name", MODELS)
def test_train_step(benchmark, make_impl, framework, model_name, mnist):
    hyper = Hyper()
    impl = built(make_impl, framework, model_name, mnist, hyper)
    order = protocol.batch_order(len(mnist.x_train), hyper.batch_size, hyper.seed, 0)
    starts = iter(range(0, len(order), STEPS_PER_CALL))
    losses = []

    def steps():  # the sync is inside: the steps' device work is in the timing
        i = next(starts)
        losses.append(impl.train_epoch(order[i:i + STEPS_PER_CALL]))
        impl.sync()

    benchmark.pedantic(steps, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP_ROUNDS)
    benchmark.extra_info.update(framework=framework, model=model_name, batch_size=hyper.batch_size,
                                steps_per_call=STEPS_PER_CALL)
    if benchmark.stats:  # absent under --benchmark-disable
        benchmark.extra_info["samples_per_s"] = (STEPS_PER_CALL * hyper.batch_size
                                                 / benchmark.stats.stats.median)
    assert np.isfinite(np.concatenate([np.asarray(l) for l in losses])).all()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("model_name", MODELS)
def test_inference_batch(benchmark, make_impl, framework, model_name, mnist):
    impl = built(make_impl, framework, model_name, mnist, Hyper())
    x = mnist.x_test[:EVAL_BATCH]
    logits = benchmark.pedantic(impl.logits, args=(x,), rounds=ROUNDS, iterations=1,
                                warmup_rounds=WARMUP_ROUNDS)  # logits returns host numpy: synced
    benchmark.extra_info.update(framework=framework, model=model_name, batch_size=len(x))
    if benchmark.stats:
        benchmark.extra_info["samples_per_s"] = len(x) / benchmark.stats.stats.median
    assert logits.shape == (len(x), MODELS[model_name].num_classes)
