"""The models written out in each framework match harness/spec.py, and profile native runs each
framework's own code: its init, its stock optimizer, its input pipeline (torchvision for torch).

The framework tests run in each framework's tox env (others are skipped there); the rest need none.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from harness import data
from harness.protocol import initial_weights
from harness.spec import MODELS, RECIPE_MODELS, DataSpec, Hyper, model_spec
from impls.records import default_frameworks, framework
from tests.conftest import DEVICE, FRAMEWORKS, installed

IMPLS = Path(__file__).resolve().parent.parent / "impls"

# Every model, as the spec states it, and in the other shapes the recipes use.
SPECS = {**MODELS, **RECIPE_MODELS,
         "logistic-5x5": model_spec("logistic", (5, 5, 1)),
         "logistic-2-classes": model_spec("logistic", num_classes=2),
         "mlp30-2-classes": model_spec("mlp30", num_classes=2),
         "cnn-5x5": model_spec("cnn", (5, 5, 1))}

NATIVE_MODES = [pytest.param(name, mode, id=f"{name}-{mode}",
                             marks=pytest.mark.skipif(not installed(name), reason=f"{name} not installed"))
                for name in default_frameworks() for mode in framework(name).native_modes]


# ---------------------------------------------------------------- the written models
def torch_parameters(spec) -> dict[str, tuple[int, ...]]:
    """The torch module's parameters under canonical names and in canonical layouts."""
    from impls import torch_equal, torch_impl

    flat = (torch_equal.first_dense_after_flatten(spec), spec.flatten_input_shape())
    return {name.replace(".weight", ".kernel"):
            torch_equal.to_canonical(name.replace(".weight", ".kernel"), np.zeros(tuple(p.shape)), *flat).shape
            for name, p in torch_impl.written_model(spec).named_parameters()}


def jax_parameters(spec) -> dict[str, tuple[int, ...]]:
    """The NNX module's parameters as layer.param names, in the order __init__ assigns them."""
    from flax import nnx

    from impls import jax_impl

    model = jax_impl.written_model(spec, rngs=nnx.Rngs(0))
    return {f"{name}.{param}": tuple(value.shape) for name, layer in vars(model).items()
            if isinstance(layer, nnx.Module) for param, value in vars(layer).items() if isinstance(value, nnx.Param)}


def keras_parameters(spec) -> dict[str, tuple[int, ...]]:
    """The Keras model's weights as layer.weight names."""
    from impls import keras_impl

    model = keras_impl.written_model(spec)
    return {f"{layer.name}.{w.name}": tuple(w.shape) for layer in model.layers for w in layer.weights}


WRITTEN_PARAMETERS = {"torch": torch_parameters, "jax": jax_parameters, "keras": keras_parameters}


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
@pytest.mark.parametrize("spec_name", SPECS)
def test_written_model_has_the_specs_parameter_names_shapes_and_count(framework_name, spec_name):
    spec = SPECS[spec_name]
    got = WRITTEN_PARAMETERS[framework_name](spec)
    # in the spec's order too: weights load and read back by it
    assert list(got.items()) == list(spec.param_shapes().items())
    assert sum(math.prod(shape) for shape in got.values()) == spec.params


@pytest.mark.parametrize("impl_file", ["torch_impl.py", "jax_impl.py", "keras_impl.py"])
def test_each_impl_marks_one_mlp_definition_for_the_report(impl_file):
    source = (IMPLS / impl_file).read_text()
    blocks = re.findall(r"^# mlp: begin\n(.*?)^# mlp: end$", source, flags=re.S | re.M)
    assert len(blocks) == 1, f"{impl_file}: want one '# mlp: begin' ... '# mlp: end' block"
    assert "784" in blocks[0] and "16" in blocks[0]


# ---------------------------------------------------------------- profile native
def build_native(make_impl, name, mode, dataset, model="logistic", seed=0):
    impl = make_impl(name)
    impl.build(model_spec(model), Hyper(seed=seed), dataset, None, DEVICE, mode, "default", "native")
    return impl


@pytest.mark.framework
@pytest.mark.parametrize("framework_name,mode", NATIVE_MODES)
def test_native_cell_learns_from_its_own_init_and_records_its_deviations(make_impl, framework_name, mode, mnist):
    impl = build_native(make_impl, framework_name, mode, mnist, model="mlp")
    canonical = initial_weights(model_spec("mlp"), 0)
    assert not np.allclose(impl.get_weights()["dense1.kernel"], canonical["dense1.kernel"])
    losses = np.asarray(impl.train_epoch(np.zeros((40, 32), np.int64)), np.float64)
    assert losses.shape == (40,) and np.isfinite(losses).all()
    assert losses[-10:].mean() < losses[:10].mean() - 0.5
    settings = impl.settings()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in settings["deviations"].items())
    assert "canonical" not in " ".join(settings["deviations"].values())
    # the stock optimizer with the framework's own defaults, recorded
    assert {"torch": "torch.optim.Adam", "jax": "optax.adam", "keras": "'epsilon': 1e-07"}[framework_name] \
        in settings["optimizer"]


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
def test_native_epoch_takes_only_the_shape_of_the_harness_order(make_impl, framework_name, mnist):
    # Every row of one order is image 0: a cell that trained on it would see one digit 20 times.
    mode = framework(framework_name).native_modes[0]
    runs = [np.asarray(build_native(make_impl, framework_name, mode, mnist).train_epoch(order), np.float64)
            for order in (np.zeros((20, 32), np.int64), np.arange(640).reshape(20, 32))]
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
def test_native_whole_epoch_trains_what_the_users_loop_trains(make_impl, framework_name):
    # 100 rows at batch 32: torch's DataLoader and Keras's fit keep the last 4 rows as a batch
    # of their own and say so in samples_per_epoch; Flax's example drops them.
    subset = data.load(DataSpec("mnist", train_rows=100))
    impl = build_native(make_impl, framework_name, framework(framework_name).native_modes[0], subset)
    losses = np.asarray(impl.train_epoch(np.zeros((3, 32), np.int64)))
    samples = getattr(impl, "samples_per_epoch", 96)
    assert samples in (96, 100) and len(losses) == -(-samples // 32)


@pytest.mark.framework
@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
def test_torch_native_reads_mnist_through_torchvision(make_impl, mnist):
    from torchvision import datasets, transforms

    impl = build_native(make_impl, "torch", "eager", mnist)
    loader = impl.training.loader
    assert isinstance(loader.dataset, datasets.MNIST) and loader.dataset.train
    np.testing.assert_array_equal(loader.dataset.data.numpy(), np.rint(mnist.x_train[..., 0] * 255))
    np.testing.assert_array_equal(loader.dataset.targets.numpy(), mnist.y_train)
    normalize = loader.dataset.transform.transforms[-1]
    assert isinstance(normalize, transforms.Normalize) and normalize.mean == (0.1307,)
    images, _ = next(iter(loader))
    assert images.shape == (32, 1, 28, 28) and images.min() < -0.4  # normalised: background is -0.42
    assert "torchvision.datasets.MNIST" in impl.settings()["input_pipeline"]


def test_idx_folder_is_the_layout_torchvision_reads_and_round_trips(tmp_path):
    raw = data.load_raw("tiny5x5")
    root = data.write_idx_folder(raw, tmp_path)
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(data.IDX_NAMES.values())
    back = data.read_idx_dir(root / "MNIST" / "raw")
    for key in data.IDX_NAMES:
        np.testing.assert_array_equal(getattr(back, key), getattr(raw, key))


# ---------------------------------------------------------------- profile equal's manifest
@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
def test_equal_cell_names_how_it_departs_from_the_native_code(make_impl, framework_name, mnist):
    spec = model_spec("logistic")
    impl = make_impl(framework_name)
    impl.build(spec, Hyper(), mnist, initial_weights(spec, 0), DEVICE, None, "float32", "equal")
    deviations = impl.settings()["deviations"]
    assert {"init", "batch_order", "data_path"} <= set(deviations)
    assert all(isinstance(v, str) and v for v in deviations.values())
