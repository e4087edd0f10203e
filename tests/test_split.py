"""Where a step's time goes: the split is right on an impl whose times are known, and the
overhead probe's shrunk model is the real one with its widths shrunk."""
from __future__ import annotations

import json

import pytest

from harness.measure.split import probe_lengths, shares, split_epoch
from harness.plan.spec import MODELS, RECIPE_MODELS, SHRUNK_WIDTH, Conv, Dense, shrunk
from tests.fake_impls import KnownSplitImpl as Known
from tests.helpers import harness_run


def test_a_known_pipeline_overhead_and_arithmetic_are_split_within_ten_percent(tmp_path):
    # tiny5x5 at batch 1: ten steps an epoch; the MLP on 5x5 images has 33,114 parameters
    proc = harness_run("--framework", "timed", "--dataset", "tiny5x5", "--model", "mlp", "--batch-size", "1",
                       "--epochs", "3", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("*.json")
    split = json.loads(path.read_text())["metrics"]["split"]
    steps = 10
    truth = {"input_s": steps * Known.INPUT_S, "overhead_s": steps * Known.OVERHEAD_S,
             "arithmetic_s": steps * Known.S_PER_PARAM * 33_114}
    for part, seconds in truth.items():
        assert split[part] == pytest.approx(seconds, rel=0.10), (part, split)
    assert split["probe_params"] == shrunk(MODELS["mlp"]).params - (784 - 25) * SHRUNK_WIDTH  # 5x5 input


@pytest.mark.parametrize("name", [*MODELS, "mlp30", "study8"])
def test_a_shrunk_model_has_the_same_layers_and_output_with_every_width_one(name):
    model = {**MODELS, **RECIPE_MODELS}[name]
    small = shrunk(model)
    assert [type(layer) for layer in small.layers] == [type(layer) for layer in model.layers]
    assert small.input_shape == model.input_shape and small.num_classes == model.num_classes
    inner = [layer for layer in small.layers[:-1] if isinstance(layer, (Dense, Conv))]
    assert all((layer.units if isinstance(layer, Dense) else layer.filters) == SHRUNK_WIDTH for layer in inner)
    def activations(spec):
        return [getattr(layer, "activation", None) for layer in spec.layers]

    assert activations(small) == activations(model)
    assert small.params <= model.params


def test_the_split_adds_up_to_the_epoch_and_says_when_noise_ate_the_arithmetic():
    parts = split_epoch(10.0, 2.0, steps=100, probe_step_s=0.05)
    assert (parts["input_s"], parts["overhead_s"], parts["arithmetic_s"]) == (2.0, 5.0, 3.0)
    assert shares(parts) == pytest.approx({"input": 0.2, "overhead": 0.5, "arithmetic": 0.3})
    noisy = split_epoch(10.0, 6.0, steps=100, probe_step_s=0.05)
    assert noisy["arithmetic_s"] == 0 and "noise" in noisy["note"]
    unreachable = split_epoch(10.0, None, steps=100, probe_step_s=0.05)
    assert unreachable["arithmetic_s"] == 5.0 and "overhead includes" in unreachable["note"]


@pytest.mark.parametrize("steps,lengths", [(1875, (50, 250)), (100, (20, 100)), (5, (1, 5)), (1, (1, 1))])
def test_the_probe_runs_two_lengths_within_one_epoch(steps, lengths):
    assert probe_lengths(steps) == lengths
