"""Models, hyper-parameters, datasets, precisions and profiles: every number of the suite lives here once.

Canonical layouts, which every framework converts to and from:
- images are NHWC float32 in [0, 1] (N, 28, 28, 1);
- a dense kernel is (in, out), a conv kernel is HWIO (kh, kw, in, out);
- `flatten` orders features as (h, w, c), so torch, which flattens NCHW as (c, h, w),
  permutes the rows of the first dense kernel after a conv stack.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from harness.plan.errors import HarnessError


# ---------------------------------------------------------------- layers and models
@dataclass(frozen=True)
class Dense:
    units: int
    activation: str | None = None  # None or "relu"
    use_bias: bool = True


@dataclass(frozen=True)
class Conv:
    filters: int
    kernel: int = 3
    padding: int = 1  # "same" for 3x3, stride 1
    activation: str | None = "relu"


@dataclass(frozen=True)
class MaxPool:
    size: int = 2


@dataclass(frozen=True)
class Flatten:
    pass


Layer = Union[Dense, Conv, MaxPool, Flatten]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_shape: tuple[int, int, int]  # (H, W, C)
    layers: tuple[Layer, ...]
    params: int  # the count the README states; checked against param_shapes() by the tests

    def shapes(self) -> list[tuple[Layer, tuple[int, ...], tuple[int, ...]]]:
        """Each layer with its input and output shape (per sample; (H, W, C) or (features,))."""
        out = []
        shape: tuple[int, ...] = self.input_shape
        for layer in self.layers:
            if isinstance(layer, Conv):
                h, w, _ = shape
                grow = 2 * layer.padding - layer.kernel + 1
                new: tuple[int, ...] = (h + grow, w + grow, layer.filters)
            elif isinstance(layer, MaxPool):
                h, w, c = shape
                new = (h // layer.size, w // layer.size, c)
            elif isinstance(layer, Flatten):
                new = (int(np.prod(shape)),)
            else:
                if len(shape) != 1:
                    raise ValueError(f"model {self.name}: Dense before Flatten")
                new = (layer.units,)
            out.append((layer, shape, new))
            shape = new
        return out

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical parameter names and shapes in layer order: conv1.kernel, dense1.bias, ..."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name, layer, in_shape, _ in self.named_layers():
            if isinstance(layer, Conv):
                shapes[f"{name}.kernel"] = (layer.kernel, layer.kernel, in_shape[-1], layer.filters)
                shapes[f"{name}.bias"] = (layer.filters,)
            elif isinstance(layer, Dense):
                shapes[f"{name}.kernel"] = (in_shape[0], layer.units)
                if layer.use_bias:
                    shapes[f"{name}.bias"] = (layer.units,)
        return shapes

    def named_layers(self):
        """(name, layer, in_shape, out_shape): conv1, conv2, dense1, ...; pool/flatten named by kind."""
        counts: dict[str, int] = {}
        for layer, in_shape, out_shape in self.shapes():
            kind = type(layer).__name__.lower()
            counts[kind] = counts.get(kind, 0) + 1
            yield f"{kind}{counts[kind]}", layer, in_shape, out_shape

    def param_count(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes().values()))

    @property
    def num_classes(self) -> int:
        return self.layers[-1].units  # type: ignore[union-attr]

    def flatten_input_shape(self) -> tuple[int, ...]:
        """Shape entering Flatten: (H, W, C) after convs; torch permutes dense1's rows by it."""
        for layer, in_shape, _ in self.shapes():
            if isinstance(layer, Flatten):
                return in_shape
        raise ValueError(f"model {self.name} has no Flatten")


MNIST_SHAPE = (28, 28, 1)

MODELS: dict[str, ModelSpec] = {
    "logistic": ModelSpec(
        "logistic", MNIST_SHAPE, (Flatten(), Dense(10)), params=7_850),
    "mlp": ModelSpec(
        "mlp", MNIST_SHAPE,
        (Flatten(), Dense(784, "relu"), Dense(16, "relu"), Dense(10)), params=628_170),
    "cnn": ModelSpec(
        "cnn", MNIST_SHAPE,
        (Conv(4), MaxPool(2), Conv(8), MaxPool(2), Flatten(), Dense(10)), params=4_266),
}


def _study(name: str, *hidden: int) -> ModelSpec:
    """Seed 001's family: 784 -> hidden dense layers with NO activation -> 10."""
    layers = (Flatten(), *(Dense(h) for h in hidden), Dense(10))
    spec = ModelSpec(name, MNIST_SHAPE, layers, params=0)
    return dataclasses.replace(spec, params=spec.param_count())


# Models the seeds' recipes add on top of the three (harness/plan/recipes.py uses them).
RECIPE_MODELS: dict[str, ModelSpec] = {
    "toy25": ModelSpec("toy25", (5, 5, 1), (Flatten(), Dense(10, use_bias=False)), params=250),
    "mlp30": ModelSpec("mlp30", MNIST_SHAPE, (Flatten(), Dense(30, "relu"), Dense(10)), params=23_860),
    **{f"study{i}": _study(f"study{i}", *hidden) for i, hidden in enumerate(
        [(), (5,), (6,), (7,), (8,), (9,), (10,), (100,), (100, 100), (100, 100, 100),
         (100, 100, 100, 100)])},
}


def model_spec(name: str, input_shape: tuple[int, int, int] | None = None,
               num_classes: int | None = None) -> ModelSpec:
    """The named model, optionally for another input shape (tiny5x5 is 5x5x1) or class count."""
    known = {**MODELS, **RECIPE_MODELS}
    if name not in known:
        raise HarnessError(f"unknown model {name!r}; valid models: {', '.join(known)}")
    spec = known[name]
    if input_shape is not None and tuple(input_shape) != spec.input_shape:
        spec = dataclasses.replace(spec, input_shape=tuple(input_shape))
    if num_classes is not None and num_classes != spec.num_classes:
        last = dataclasses.replace(spec.layers[-1], units=num_classes)
        spec = dataclasses.replace(spec, layers=spec.layers[:-1] + (last,))
    return dataclasses.replace(spec, params=spec.param_count())


# The overhead probe's width: every hidden dense layer and every convolution keeps its place,
# kind, kernel and activation but gets this many units or filters, so that its arithmetic is
# negligible and what a step still costs is what the framework and Python add to it.
SHRUNK_WIDTH = 1


def shrunk(model: ModelSpec) -> ModelSpec:
    """The same layers on the same input, every width but the output's shrunk to SHRUNK_WIDTH
    (the framework-tax method: Fernandez et al., 2023)."""
    last = len(model.layers) - 1
    layers = tuple(dataclasses.replace(layer, filters=SHRUNK_WIDTH) if isinstance(layer, Conv) else
                   dataclasses.replace(layer, units=SHRUNK_WIDTH) if isinstance(layer, Dense) and i != last else layer
                   for i, layer in enumerate(model.layers))
    spec = dataclasses.replace(model, layers=layers, params=0)
    return dataclasses.replace(spec, params=spec.param_count())


# ---------------------------------------------------------------- hyper-parameters
OPTIMIZERS = ("adam", "sgd")
INITS = ("canonical", "native")


@dataclass(frozen=True)
class Hyper:
    """Training recipe. Defaults are seed 002's: Adam lr 1e-3, batch 32, 5 epochs.

    Adam is the torch/optax form, p -= lr * m_hat / (sqrt(v_hat) + eps), in every framework.
    eps is torch's and optax's default; Keras's own default (1e-7, inside a step-dependent
    "epsilon hat") is not used: the Keras impl re-derives the same update.
    SGD momentum is the torch/optax form: b = momentum * b + g; p -= lr * b.
    """
    optimizer: str = "adam"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    batch_size: int = 32
    epochs: int = 5
    seed: int = 0
    init: str = "canonical"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise HarnessError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise HarnessError(f"unknown init {self.init!r}; valid: {', '.join(INITS)}")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise HarnessError("batch_size and lr must be positive and epochs >= 0")

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataSpec:
    """Which data a cell trains on: a dataset and the subset the seeds use.

    train_rows/val_rows: the first train_rows training rows, and the next val_rows as
    validation (seed 004: 2000 and 500). classes: keep these digits, relabelled 0..k-1 in
    the order given (seed 003: (3, 7)). test_val: a stratified validation split of that
    many test rows, the rest stays test (seed 002: 2000, leaving 8000).
    """
    name: str = "mnist"
    train_rows: int = 0
    val_rows: int = 0
    classes: tuple[int, ...] = ()
    test_val: int = 0
    split_seed: int = 0
    normalize: bool = False
    path: str | None = None

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The datasets a cell may name (harness.data loads each).
DATASETS = ("mnist", "fashion", "tiny5x5")

# Random streams: every draw of the protocol comes from numpy.random.default_rng((seed, STREAM, ...)),
# one stream per purpose, so the same seed gives the same numbers on every machine.
ORDER_STREAM = 0  # batch orders: default_rng((seed, ORDER_STREAM, epoch))
WEIGHTS_STREAM = 1  # initial weights: default_rng((seed, WEIGHTS_STREAM))
SPLIT_STREAM = 2  # stratified validation splits (harness.data): default_rng((seed, SPLIT_STREAM))

# Evaluation batch: large enough to amortise per-call overhead, small enough for the CPU cache.
EVAL_BATCH = 2000


# Numeric precision of a cell, set the same way in every framework and recorded with it:
#   float32  float32 everywhere; on a GPU, TF32 off (full float32 matmuls and convolutions)
#   tf32     float32 storage, matmul and convolution inputs rounded to TF32 (10-bit
#            mantissa) on the GPU's tensor cores: a GPU mode, refused on the CPU
#   bf16     mixed precision: weights, gradients and optimizer state in float32, the
#            layers computed in bfloat16 (float32 accumulation), the loss in float32
#   default  profile native's: whatever the framework does by default (on a GPU, TF32 where
#            that framework turns it on by default), nothing overridden
PRECISIONS = ("float32", "tf32", "bf16", "default")
GPU_ONLY_PRECISIONS = ("tf32",)
PRECISION_NOTES = {
    "float32": "float32; TF32 off (full float32 matmuls and convolutions)",
    "tf32": "float32 storage; matmul and convolution inputs in TF32 on the tensor cores",
    "bf16": "mixed: float32 weights, gradients and optimizer; layers in bfloat16; loss in float32",
    "default": "the framework's default (nothing overridden)",
}
DEVICES = ("cpu", "cuda")

# The two profiles, each a question users ask:
#   equal   the same initial weights, batch order and maths (the optimizer forms of
#           harness/measure/reference.py), data resident on the device, precision set alike: step
#           parity with the float64 oracle
#   native  the code each framework's users write: its own init, its stock optimizer with
#           its own defaults, its default precision and its usual input pipeline; shared are
#           only the model's shape, the data, lr, batch size and epochs
PROFILES = ("equal", "native")
PROFILE_PRECISIONS = {"equal": ("float32", "tf32", "bf16"), "native": ("default",)}


def check_precision(precision: str, device: str, profile: str = "equal") -> str:
    """The precision if this device and profile can run it, else a HarnessError saying what to run."""
    if precision not in PRECISIONS:
        raise HarnessError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    valid = PROFILE_PRECISIONS[profile]
    if precision not in valid:
        raise HarnessError(f"profile {profile} runs at precision {' or '.join(valid)}, not {precision}")
    if precision in GPU_ONLY_PRECISIONS and device == "cpu":
        cpu = [p for p in valid if p not in GPU_ONLY_PRECISIONS]
        raise HarnessError(f"precision {precision!r} is a GPU tensor-core mode; on the CPU run "
                           f"{' or '.join(cpu)}, or add --device cuda")
    return precision
