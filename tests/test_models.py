"""The models written out in each framework match harness/plan/spec.py and shrink with it; every impl
meets the contract (harness/measure/contract.py); profile native runs each framework's own example:
its init, its stock optimizer, its input pipeline and its loop.

The framework tests run in each framework's tox env (others are skipped there); the rest need none.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import pytest

from harness import data
from harness.data import formats
from harness.measure.contract import missing_deviations
from harness.measure.protocol import batch_order, initial_weights
from harness.plan.frameworks import default_frameworks, framework
from harness.plan.spec import MODELS, RECIPE_MODELS, DataSpec, Hyper, model_spec, shrunk
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
PROFILES = ("equal", "native")


def build(make_impl, name, profile, dataset, model="logistic", seed=0, mode=None):
    """A built impl of the framework's first mode (or `mode`) in a profile: equal from canonical weights."""
    spec = model if not isinstance(model, str) else model_spec(model)
    impl = make_impl(name)
    weights, precision = (initial_weights(spec, seed), "float32") if profile == "equal" else (None, "default")
    impl.build(spec, Hyper(seed=seed), dataset, weights, DEVICE, mode, precision, profile)
    return impl


def recorded_losses(impl, steps: int) -> int:
    """How many losses train_epoch returns for `steps` steps, by the impl's loss_every."""
    return 1 if impl.loss_every == 0 else -(-steps // impl.loss_every)


@pytest.fixture(scope="module")
def small_mnist() -> data.Data:
    return data.load(DataSpec("mnist", train_rows=320))


# ---------------------------------------------------------------- the written models
def torch_model(spec):
    from impls import torch_impl

    return torch_impl.written_model(spec)


def jax_model(spec):
    from flax import nnx

    from impls import jax_impl

    return jax_impl.written_model(spec, rngs=nnx.Rngs(0))


def keras_model(spec):
    from impls import keras_impl

    return keras_impl.written_model(spec)


def torch_parameters(spec) -> dict[str, tuple[int, ...]]:
    """The torch module's parameters under canonical names and in canonical layouts."""
    from impls import torch_equal

    flat = (torch_equal.first_dense_after_flatten(spec), spec.flatten_input_shape())
    return {name.replace(".weight", ".kernel"):
            torch_equal.to_canonical(name.replace(".weight", ".kernel"), np.zeros(tuple(p.shape)), *flat).shape
            for name, p in torch_model(spec).named_parameters()}


def jax_parameters(spec) -> dict[str, tuple[int, ...]]:
    """The NNX module's parameters as layer.param names, in the order __init__ assigns them."""
    from flax import nnx

    return {f"{name}.{param}": tuple(value.shape) for name, layer in vars(jax_model(spec)).items()
            if isinstance(layer, nnx.Module) for param, value in vars(layer).items() if isinstance(value, nnx.Param)}


def keras_parameters(spec) -> dict[str, tuple[int, ...]]:
    """The Keras model's weights as layer.weight names."""
    return {f"{layer.name}.{w.name}": tuple(w.shape) for layer in keras_model(spec).layers for w in layer.weights}


def jax_layers(spec) -> list[str]:
    from flax import nnx

    return [type(layer).__name__ for layer in vars(jax_model(spec)).values() if isinstance(layer, nnx.Module)]


WRITTEN_PARAMETERS = {"torch": torch_parameters, "jax": jax_parameters, "keras": keras_parameters}
# Each framework's layers of a written model, in order, and what tells its models apart (every
# Keras model is a keras.Sequential: its name does).
WRITTEN_LAYERS = {"torch": lambda spec: [type(layer).__name__ for layer in torch_model(spec).children()],
                  "jax": jax_layers, "keras": lambda spec: [type(layer).__name__ for layer in keras_model(spec).layers]}
WRITTEN_CLASS = {"torch": lambda spec: type(torch_model(spec)), "jax": lambda spec: type(jax_model(spec)),
                 "keras": lambda spec: keras_model(spec).name}


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
@pytest.mark.parametrize("spec_name", SPECS)
def test_written_model_has_the_specs_parameter_names_shapes_and_count(framework_name, spec_name):
    spec = SPECS[spec_name]
    got = WRITTEN_PARAMETERS[framework_name](spec)
    # in the spec's order too: weights load and read back by it
    assert list(got.items()) == list(spec.param_shapes().items())
    assert sum(math.prod(shape) for shape in got.values()) == spec.params


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
@pytest.mark.parametrize("spec_name", ["logistic", "mlp", "cnn", "mlp30", "study9", "cnn-5x5"])
def test_shrunk_model_is_the_same_class_and_layers_with_the_shrunk_specs_shapes(framework_name, spec_name):
    spec = SPECS[spec_name]
    small = shrunk(spec)
    assert WRITTEN_CLASS[framework_name](small) == WRITTEN_CLASS[framework_name](spec)
    assert WRITTEN_LAYERS[framework_name](small) == WRITTEN_LAYERS[framework_name](spec)
    assert list(WRITTEN_PARAMETERS[framework_name](small).items()) == list(small.param_shapes().items())


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_shrunk_model_trains_a_few_steps_at_the_cells_batch_size(make_impl, framework_name, profile, model_name,
                                                                  mnist):
    spec = shrunk(model_spec(model_name))
    impl = build(make_impl, framework_name, profile, mnist, spec)
    losses = np.asarray(impl.train_epoch(batch_order(len(mnist.x_train), 32, 0, 0)[:5]), np.float64)
    assert losses.shape == (recorded_losses(impl, 5),) and np.isfinite(losses).all()
    assert {k: v.shape for k, v in impl.get_weights().items()} == spec.param_shapes()


@pytest.mark.parametrize("impl_file", ["torch_impl.py", "jax_impl.py", "keras_impl.py"])
def test_each_impl_marks_one_mlp_definition_for_the_report(impl_file):
    source = (IMPLS / impl_file).read_text()
    blocks = re.findall(r"^# mlp: begin\n(.*?)^# mlp: end$", source, flags=re.S | re.M)
    assert len(blocks) == 1, f"{impl_file}: want one '# mlp: begin' ... '# mlp: end' block"
    assert "784" in blocks[0] and "16" in blocks[0]


def test_no_impl_file_is_over_400_lines():
    lengths = {path.name: len(path.read_text().splitlines()) for path in IMPLS.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 400} == {}


# ---------------------------------------------------------------- the contract
@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
@pytest.mark.parametrize("profile", PROFILES)
def test_built_impl_meets_the_contract(make_impl, framework_name, profile, small_mnist):
    impl = build(make_impl, framework_name, profile, small_mnist)
    # 320 rows at batch 32: 10 whole batches, so every pipeline trains all of them
    assert impl.samples_per_epoch == 320
    assert missing_deviations(profile, impl.settings()["deviations"], canonical_init=profile == "equal") == []
    losses = np.asarray(impl.train_epoch(batch_order(320, 32, 0, 0)[:7]), np.float64)
    assert losses.shape == (recorded_losses(impl, 7),) and np.isfinite(losses).all()


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
def test_equal_cell_from_its_frameworks_own_init_need_not_declare_init(make_impl, framework_name, small_mnist):
    impl = make_impl(framework_name)
    impl.build(model_spec("logistic"), Hyper(init="native"), small_mnist, None, DEVICE, None, "float32", "equal")
    deviations = impl.settings()["deviations"]
    assert missing_deviations("equal", deviations, canonical_init=False) == [] and "init" not in deviations


class FakeHooks:
    """What harness.measure.child gives run_epochs: records each call, evaluates inside end(), can stop."""
    EVALUATION_S = 1.0  # end() takes this long; no epoch of the tests' 10 steps does

    def __init__(self, impl, x_test, stop_after: int):
        self.impl, self.x_test, self.stop_after, self.calls = impl, x_test, stop_after, []

    def begin(self, epoch):
        self.calls.append(("begin", epoch))

    def end(self, epoch, seconds, losses, input_s):
        self.calls.append(("end", epoch, seconds, np.asarray(losses, np.float64), input_s))
        start = time.perf_counter()
        self.impl.logits(self.x_test)  # the harness evaluates here, outside the epoch's time
        time.sleep(max(0.0, self.EVALUATION_S - (time.perf_counter() - start)))
        return epoch < self.stop_after


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
@pytest.mark.parametrize("profile", PROFILES)
def test_run_epochs_times_each_epoch_apart_from_evaluation_and_stops_when_told(make_impl, framework_name, profile,
                                                                              small_mnist):
    impl = build(make_impl, framework_name, profile, small_mnist)
    hooks = FakeHooks(impl, small_mnist.x_test[:500], stop_after=3)
    impl.run_epochs(5, lambda epoch: batch_order(320, 32, 0, epoch), hooks)
    assert [call[:2] for call in hooks.calls] == [(kind, epoch) for epoch in (1, 2, 3) for kind in ("begin", "end")]
    # The third epoch: compiled (jax native compiles its step once more in the second, as
    # Flax's example does after metrics.reset()), and no evaluation in it.
    _, _, seconds, losses, input_s = hooks.calls[-1]
    assert 0 < seconds < FakeHooks.EVALUATION_S
    assert losses.shape == (recorded_losses(impl, 10),) and np.isfinite(losses).all()
    assert input_s == impl.input_clock.seconds and impl.input_clock.how


def expected_input_time(framework_name: str, profile: str) -> str:
    """'positive', 'zero' (resident data) or 'out of reach' for a cell on this machine."""
    if profile == "equal":
        return "positive" if framework_name == "keras" else "zero"  # Keras gathers rows on the host
    if framework_name == "keras":
        import keras

        return "positive" if keras.backend.backend() == "torch" and DEVICE == "cpu" else "out of reach"
    return "positive"


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
@pytest.mark.parametrize("profile", PROFILES)
def test_input_clock_times_what_the_loop_waits_for_its_batches(make_impl, framework_name, profile, small_mnist):
    impl = build(make_impl, framework_name, profile, small_mnist)
    impl.input_clock.reset()
    impl.train_epoch(batch_order(320, 32, 0, 0))
    seconds = impl.input_clock.seconds
    got = "out of reach" if seconds is None else "zero" if seconds == 0 else "positive"
    assert got == expected_input_time(framework_name, profile), impl.input_clock.how


READ_S = 0.002  # what each image's read is slowed by below


def slow_reads(framework_name: str, impl, monkeypatch) -> int:
    """Slow every image the native loader reads by READ_S; how many readers share that work."""
    if framework_name == "torch":  # on the CPU the example's DataLoader reads in the training thread
        transform = impl.training.loader.dataset.transform
        impl.training.loader.dataset.transform = lambda image: (time.sleep(READ_S), transform(image))[1]
        return 1
    import grain

    from impls.jax_impl import InMemoryMNIST

    read = InMemoryMNIST.__getitem__
    monkeypatch.setattr(InMemoryMNIST, "__getitem__", lambda self, i: (time.sleep(READ_S), read(self, i))[1])
    return grain.ReadOptions().num_threads  # Grain's reader threads prefetch in parallel


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", [p for p in FRAMEWORKS if p.values[0] != "keras"])
def test_native_input_clock_holds_the_loaders_next(make_impl, framework_name, small_mnist, monkeypatch):
    impl = build(make_impl, framework_name, "native", small_mnist)
    readers = slow_reads(framework_name, impl, monkeypatch)
    impl.input_clock.reset()
    impl.train_epoch(batch_order(320, 32, 0, 0))
    assert impl.input_clock.seconds > 0.5 * 320 * READ_S / readers


# ---------------------------------------------------------------- profile native
@pytest.mark.framework
@pytest.mark.parametrize("framework_name,mode", NATIVE_MODES)
def test_native_cell_learns_from_its_own_init_and_records_its_deviations(make_impl, framework_name, mode, mnist):
    impl = build(make_impl, framework_name, "native", mnist, "mlp", mode=mode)
    canonical = initial_weights(model_spec("mlp"), 0)
    assert not np.allclose(impl.get_weights()["dense1.kernel"], canonical["dense1.kernel"])
    x, y = mnist.x_test[:2000], mnist.y_test[:2000]
    before = (impl.logits(x).argmax(1) == y).mean()
    losses = np.asarray(impl.train_epoch(np.zeros((40, 32), np.int64)), np.float64)
    assert losses.shape == (recorded_losses(impl, 40),) and np.isfinite(losses).all()
    assert before < 0.3 and (impl.logits(x).argmax(1) == y).mean() > 0.6  # 40 steps take it from chance
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
    losses, weights = [], []
    for order in (np.zeros((20, 32), np.int64), np.arange(640).reshape(20, 32)):
        impl = build(make_impl, framework_name, "native", mnist)
        losses.append(np.asarray(impl.train_epoch(order), np.float64))
        weights.append(impl.get_weights())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
    for name in weights[0]:
        np.testing.assert_allclose(weights[0][name], weights[1][name], rtol=1e-5, atol=1e-7, err_msg=name)


# How many optimizer steps a native impl has taken, read from its framework's optimizer.
OPTIMIZER_STEPS = {"torch": lambda impl: int(next(iter(impl.training.optimizer.state.values()))["step"]),
                   "jax": lambda impl: int(impl.training.optimizer.step[...]),
                   "keras": lambda impl: int(impl.model.optimizer.iterations.numpy())}


@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
def test_native_whole_epoch_trains_what_the_users_loop_trains(make_impl, framework_name):
    # 100 rows at batch 32: torch's DataLoader and Keras's fit keep the last 4 rows as a batch
    # of their own and say so in samples_per_epoch; Flax's example (Grain, drop_remainder) drops them.
    subset = data.load(DataSpec("mnist", train_rows=100))
    impl = build(make_impl, framework_name, "native", subset)
    expected = {"torch": 100, "keras": 100, "jax": 96}[framework_name]
    assert impl.samples_per_epoch == expected
    losses = np.asarray(impl.train_epoch(np.zeros((3, 32), np.int64)))
    assert OPTIMIZER_STEPS[framework_name](impl) == -(-expected // 32)
    assert losses.shape == (recorded_losses(impl, -(-expected // 32)),)


@pytest.mark.framework
@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
def test_torch_native_reads_mnist_through_torchvision_in_the_examples_loader(make_impl, mnist):
    import torch
    from torchvision import datasets, transforms

    from impls.torch_impl import ACCELERATOR_LOADER

    impl = build(make_impl, "torch", "native", mnist)
    loader = impl.training.loader
    assert isinstance(loader.dataset, datasets.MNIST) and loader.dataset.train
    np.testing.assert_array_equal(loader.dataset.data.numpy(), np.rint(mnist.x_train[..., 0] * 255))
    np.testing.assert_array_equal(loader.dataset.targets.numpy(), mnist.y_train)
    normalize = loader.dataset.transform.transforms[-1]
    assert isinstance(normalize, transforms.Normalize) and normalize.mean == (0.1307,)
    images, _ = next(iter(loader))
    assert images.shape == (32, 1, 28, 28) and images.min() < -0.4  # normalised: background is -0.42
    # the example's DataLoader: its accelerator settings on a GPU, the defaults (no shuffle) on the CPU
    want = ACCELERATOR_LOADER if DEVICE != "cpu" else {"num_workers": 0, "persistent_workers": False,
                                                       "pin_memory": False, "shuffle": False}
    got = {key: getattr(loader, key) for key in want if key != "shuffle"}
    got["shuffle"] = isinstance(loader.sampler, torch.utils.data.RandomSampler)
    assert got == want
    assert "torchvision.datasets.MNIST" in impl.settings()["input_pipeline"]


@pytest.mark.framework
@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
def test_torch_native_reads_one_loss_every_log_interval_batches_to_the_host(make_impl, small_mnist):
    impl = build(make_impl, "torch", "native", small_mnist)
    assert impl.loss_every == 10
    losses = impl.train_epoch(np.zeros((10, 32), np.int64))
    assert len(losses) == 1 and all(type(loss) is float for loss in losses)  # loss.item(): nothing left on the device


@pytest.mark.framework
@pytest.mark.skipif(not installed("jax"), reason="jax not installed")
def test_jax_native_reads_grain_batches_shuffled_anew_each_epoch(make_impl):
    import grain

    subset = data.load(DataSpec("mnist", train_rows=100))
    batches = build(make_impl, "jax", "native", subset).training.batches
    assert isinstance(batches, grain.MapDataset)
    epochs = [np.concatenate([batches[epoch * 3 + i]["label"] for i in range(3)]) for epoch in range(2)]
    images = np.concatenate([batches[i]["image"] for i in range(3)]).reshape(96, -1)
    assert len({row.tobytes() for row in images}) == 96  # 96 different rows: whole batches, none twice
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.framework
@pytest.mark.skipif(not installed("keras"), reason="keras not installed")
def test_keras_native_compiles_the_examples_stock_metrics_only(make_impl, small_mnist):
    impl = build(make_impl, "keras", "native", small_mnist)
    assert impl.model.get_compile_config()["metrics"] == ["accuracy"]  # no per-step loss metric


def test_idx_folder_is_the_layout_torchvision_reads_and_round_trips(tmp_path):
    raw = data.load_raw("tiny5x5")
    root = formats.write_idx_folder(raw, tmp_path)
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(formats.IDX_NAMES.values())
    back = formats.read_idx_dir(root / "MNIST" / "raw")
    for key in formats.IDX_NAMES:
        np.testing.assert_array_equal(getattr(back, key), getattr(raw, key))


# ---------------------------------------------------------------- profile equal's manifest
@pytest.mark.framework
@pytest.mark.parametrize("framework_name", FRAMEWORKS)
def test_equal_cell_names_how_it_departs_from_the_native_code(make_impl, framework_name, mnist):
    impl = build(make_impl, framework_name, "equal", mnist)
    deviations = impl.settings()["deviations"]
    assert {"init", "batch_order", "data_path"} <= set(deviations)
    assert all(isinstance(v, str) and v for v in deviations.values())
