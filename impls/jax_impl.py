"""JAX: the models as flax linen modules with @nn.compact, trained with optax in two profiles.

- native: what a Flax user writes, after Flax's MNIST example: flax's own initialisation,
  optax.adam or optax.sgd with optax's defaults, jax's default precision, the data as numpy
  arrays in host memory, a fresh permutation each epoch and one jitted train_step per batch,
  which moves its batch to the device.
- equal: the same modules from the harness's canonical weights, the training set resident
  on the device, the harness's batch order, and Adam's bias corrections exact in float32;
  one jitted call per step ("step") or one per epoch ("scan").

Linen, not nnx: linen keeps parameters in a plain pytree apart from the module, so a train
step is one pure jitted function of (state, data), canonical weights load by building that
pytree, and a fused lax.scan epoch needs no state plumbing. Flax's layouts are the canonical
ones (Dense (in, out), Conv HWIO, NHWC flattened as (h, w, c)), so weights cross as they are.
"""
from __future__ import annotations

import functools
import inspect
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import traverse_util
from flax.training import train_state

from harness.contract import ImplBase
from harness.spec import EVAL_BATCH, Dense, HarnessError, Hyper, ModelSpec


# ---------------------------------------------------------------- the models
class MNISTModel(nn.Module):
    """What every model below takes. dtype and precision None keep flax's defaults (profile native);
    profile equal sets them for its precisions. Layers are named canonically (dense1, conv1, ...)."""
    num_classes: int = 10
    dtype: Any = None
    precision: Any = None


class Logistic(MNISTModel):
    """Flatten, then one dense layer: multinomial logistic regression."""
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))  # flatten
        return nn.Dense(self.num_classes, use_bias=self.use_bias, dtype=self.dtype, precision=self.precision,
                        name="dense1")(x)


# mlp: begin
class MLP(MNISTModel):
    """784 -> 784 relu -> 16 relu -> 10."""

    @nn.compact
    def __call__(self, x):
        dense = partial(nn.Dense, dtype=self.dtype, precision=self.precision)
        x = x.reshape((x.shape[0], -1))  # flatten
        x = nn.relu(dense(784, name="dense1")(x))
        x = nn.relu(dense(16, name="dense2")(x))
        return dense(self.num_classes, name="dense3")(x)
# mlp: end


class CNN(MNISTModel):
    """Two 3x3 convolutions (4 and 8 filters), each with relu and 2x2 max-pooling, then dense."""

    @nn.compact
    def __call__(self, x):
        conv = partial(nn.Conv, kernel_size=(3, 3), dtype=self.dtype, precision=self.precision)  # padding SAME
        x = nn.relu(conv(4, name="conv1")(x))
        x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.relu(conv(8, name="conv2")(x))
        x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))  # flatten, NHWC rows as (h, w, c)
        return nn.Dense(self.num_classes, dtype=self.dtype, precision=self.precision, name="dense1")(x)


class SmallMLP(MNISTModel):
    """784 -> 30 relu -> 10: the small net of the 3-vs-7 and small-subset recipes."""

    @nn.compact
    def __call__(self, x):
        dense = partial(nn.Dense, dtype=self.dtype, precision=self.precision)
        x = x.reshape((x.shape[0], -1))
        return dense(self.num_classes, name="dense2")(nn.relu(dense(30, name="dense1")(x)))


class LinearStack(MNISTModel):
    """Dense layers of the given widths with no activation between them (the mnist-study family)."""
    widths: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, x):
        dense = partial(nn.Dense, dtype=self.dtype, precision=self.precision)
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate((*self.widths, self.num_classes), start=1):
            x = dense(width, name=f"dense{i}")(x)
        return x


def written_model(spec: ModelSpec, **layer_args) -> MNISTModel:
    """The module written above for a model name, for the spec's classes; layer_args: dtype, precision."""
    classes = spec.num_classes
    if spec.name.startswith("study"):
        widths = tuple(layer.units for layer in spec.layers if isinstance(layer, Dense))[:-1]
        return LinearStack(classes, widths=widths, **layer_args)
    return {"logistic": lambda: Logistic(classes, **layer_args),
            "toy25": lambda: Logistic(classes, use_bias=False, **layer_args),
            "mlp": lambda: MLP(classes, **layer_args),
            "mlp30": lambda: SmallMLP(classes, **layer_args),
            "cnn": lambda: CNN(classes, **layer_args)}[spec.name]()


# ---------------------------------------------------------------- profile native: a user's code
def stock_optimizer(hyper: Hyper) -> optax.GradientTransformation:
    """optax.adam or optax.sgd with optax's defaults: only lr and SGD's momentum from the recipe."""
    if hyper.optimizer == "adam":
        return optax.adam(hyper.lr)
    return optax.sgd(hyper.lr, momentum=hyper.momentum)


def create_train_state(rng, model: nn.Module, input_shape, tx) -> train_state.TrainState:
    """Parameters from flax's own initialisers (lecun-normal kernels, zero biases) and the optimizer."""
    params = model.init(rng, jnp.ones((1, *input_shape)))["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def apply_batch(state: train_state.TrainState, images, labels):
    """One optimizer step on a batch: the new state and the batch's loss before the update."""
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, images).astype(jnp.float32)  # bf16 layers: loss in float32
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


train_step = jax.jit(apply_batch)


def native_epoch(state: train_state.TrainState, images: np.ndarray, labels: np.ndarray, steps: int,
                 batch_size: int, rng):
    """The train_epoch of Flax's MNIST example: a permutation on the host, one jitted step per batch."""
    perms = np.asarray(jax.random.permutation(rng, len(images)))
    perms = perms[:steps * batch_size].reshape((steps, batch_size))  # skip the incomplete batch
    losses = []
    for perm in perms:
        state, loss = train_step(state, images[perm], labels[perm])
        losses.append(loss)
    return state, losses


# ---------------------------------------------------------------- profile equal: the optimizer
def scale_by_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """optax.scale_by_adam, with the bias corrections 1 - b**t accurate in float32."""
    # optax takes 1 - b2**t in float32, where 0.999 rounds to 0.99900001: for small t that is
    # 1.3e-5 too small, so every early step is 6.5e-6 too short, all in the same direction, and
    # 50 mlp steps end 7.7e-3 off the float64 reference. -expm1(t log b), log b in float64, is not.
    def init(params):
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params),
                                      nu=optax.tree.zeros_like(params))

    def update(grads, state, params=None):
        mu = optax.tree.update_moment(grads, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2)
        count = state.count + 1
        c1, c2 = (-jnp.expm1(count * math.log(b)) for b in (b1, b2))
        steps = jax.tree.map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
        return steps, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def equal_optimizer(hyper: Hyper) -> optax.GradientTransformation:
    """Adam and SGD-momentum in the reference's (torch's and optax's) forms, every setting the recipe's."""
    if hyper.optimizer == "sgd":
        return optax.sgd(hyper.lr, momentum=hyper.momentum)
    return optax.chain(scale_by_adam(hyper.beta1, hyper.beta2, hyper.eps),
                       optax.scale_by_learning_rate(hyper.lr))


# ---------------------------------------------------------------- profile equal: the modes
@functools.partial(jax.jit, donate_argnums=(0, 1))
def indexed_step(state: train_state.TrainState, losses, x_all, y_all, order, step):
    """Train on batch order[step] of the device-resident data; its loss goes to losses[step]."""
    batch = order[step]
    state, loss = apply_batch(state, x_all[batch], y_all[batch])
    return state, losses.at[step].set(loss)


def step_epoch(state, x_all, y_all, order):
    """Mode step: one jitted call per step, every input already on the device."""
    # Losses gather in a device buffer the step writes: no host sync per step, and no
    # jnp.stack of ~2000 scalars (a concatenate XLA takes seconds to compile) or slicing
    # of a device array in Python (one compile per distinct slice).
    losses = jax.device_put(np.zeros(len(order), np.float32), order.sharding)
    for step in range(len(order)):
        state, losses = indexed_step(state, losses, x_all, y_all, order, step)
    return state, losses


# On the CPU, XLA rewrites convolutions to Eigen's fast NHWC/HWIO form only in the top-level
# computation (cpu/conv_canonicalization.cc), not in a loop body: the CNN's gradient
# convolutions take XLA's generic loops, so scan runs the CNN slower than step there (jax#12868).
@functools.partial(jax.jit, donate_argnums=0)
def scan_epoch(state: train_state.TrainState, x_all, y_all, order):
    """Mode scan: every row of order in one call, no Python dispatch or host sync between steps."""
    # order.shape is static: a new step count compiles anew
    return jax.lax.scan(lambda s, batch: apply_batch(s, x_all[batch], y_all[batch]), state, order)


EQUAL_EPOCHS = {"step": step_epoch, "scan": scan_epoch}

# The harness's precisions as flax layer arguments. On a GPU, XLA runs float32 matmuls and
# convolutions in TF32 unless told otherwise, so float32 asks for HIGHEST explicitly and
# tf32 for TF32 by name. bf16: flax's mixed precision, bfloat16 compute (dtype) over
# float32 parameters (param_dtype stays float32). default (native) overrides nothing.
LAYER_ARGS = {
    "float32": {"precision": jax.lax.Precision.HIGHEST, "dtype": jnp.float32},
    "tf32": {"precision": "tensorfloat32", "dtype": jnp.float32},
    "bf16": {"precision": None, "dtype": jnp.bfloat16},
    "default": {},
}
# What those change from jax's defaults, per device platform.
PRECISION_DEVIATIONS = {
    "cpu": {"bf16": "flax layers with dtype=bfloat16 over float32 parameters; loss in float32"},
    "gpu": {"float32": "matmuls and convolutions at Precision.HIGHEST (XLA's GPU default is TF32)",
            "bf16": "flax layers with dtype=bfloat16 over float32 parameters; loss in float32"},
}
DEVICE_KINDS = {"cpu": "cpu", "cuda": "gpu"}


@functools.partial(jax.jit, static_argnums=0)
def predict(apply_fn, params, x):
    """float32 logits for one evaluation batch."""
    return apply_fn({"params": params}, x).astype(jnp.float32)


def select_device(name: str) -> jax.Device:
    """The first jax device of the requested kind, or a HarnessError saying what exists."""
    try:
        return jax.devices(DEVICE_KINDS[name])[0]
    except RuntimeError:
        raise HarnessError(f"jax sees no {name} device here (it has {jax.devices()}); "
                           "install jax[cuda] or run with device cpu") from None


# ---------------------------------------------------------------- the harness's Impl
class JaxImpl(ImplBase):
    """flax linen + optax: the user's epoch (native), or one jitted call per step or epoch (equal)."""
    framework = "jax"

    def build(self, model, hyper, data, weights, device, mode, precision="float32", profile="equal") -> None:
        self.configure(mode, precision, device, profile)
        self.model, self.hyper, self.device = model, hyper, select_device(device)
        self.canonical_init = weights is not None
        net = written_model(model, **LAYER_ARGS[self.precision])
        self.rng, init_rng = jax.random.split(jax.random.key(hyper.seed))
        if self.profile == "native":
            self.state = create_train_state(init_rng, net, model.input_shape, stock_optimizer(hyper))
            self.x_train, self.y_train = data.x_train, data.y_train  # numpy, in host memory
            return
        if weights is None:  # --init native: flax's initialisers, the optimizer the oracle's
            params = net.init(init_rng, jnp.ones((1, *model.input_shape)))["params"]
        else:
            params = traverse_util.unflatten_dict(
                {key: jnp.asarray(value, jnp.float32) for key, value in weights.items()}, sep=".")
        state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=equal_optimizer(hyper))
        # Everything lives on the chosen device from here on: data are uploaded once.
        self.state = jax.device_put(state, self.device)
        self.x_train = jax.device_put(data.x_train, self.device)
        self.y_train = jax.device_put(data.y_train, self.device)

    def train_epoch(self, order: np.ndarray):
        """One epoch; native takes only order's shape (steps, batch), equal its every row."""
        if self.profile == "native":
            self.rng, epoch_rng = jax.random.split(self.rng)
            steps, batch_size = np.shape(order)
            self.state, losses = native_epoch(self.state, self.x_train, self.y_train, steps, batch_size, epoch_rng)
            return losses
        order = jax.device_put(np.asarray(order, np.int32), self.device)
        self.state, losses = EQUAL_EPOCHS[self.mode](self.state, self.x_train, self.y_train, order)
        return losses

    def sync(self) -> None:
        jax.block_until_ready(self.state)

    def peak_device_memory_mb(self) -> float | None:
        """XLA's allocator peak on a GPU (memory_stats is None on the CPU)."""
        stats = self.device.memory_stats() if self.device.platform == "gpu" else None
        return stats["peak_bytes_in_use"] / 2**20 if stats else None

    def device_name(self) -> str | None:
        return self.device.device_kind if self.device.platform == "gpu" else None

    def settings(self) -> dict:
        """The optimizer, the input pipeline and what departs from a Flax user's code."""
        if self.profile == "native":
            signature = inspect.signature(getattr(optax, self.hyper.optimizer)).parameters
            defaults = {name: p.default for name, p in signature.items()
                        if name not in ("learning_rate", "momentum") and p.default is not p.empty}
            return {"optimizer": f"optax.{self.hyper.optimizer}, optax's defaults: {defaults}",
                    "input_pipeline": "numpy arrays in host memory; a jax.random permutation each epoch, "
                                      "last partial batch dropped; each batch gathered on the host and "
                                      "moved by the jitted step (Flax's MNIST example)",
                    "deviations": {}}
        return {"deviations": self.deviations()}

    def deviations(self) -> dict[str, str]:
        """How profile equal's training departs from the native code above."""
        out = {"data_path": "the training set lives on the device; each step gathers its batch there by index",
               "batch_order": "the harness's permutation"}
        if self.canonical_init:
            out["init"] = "the harness's canonical Glorot-uniform weights, not flax's lecun-normal"
        if self.hyper.optimizer == "adam":
            out["optimizer"] = ("optax's Adam with the recipe's b1, b2, eps and bias corrections "
                                "1 - b**t as -expm1(t log b) (optax's float32 power is 1.3e-5 off early)")
        precision = PRECISION_DEVIATIONS[self.device.platform].get(self.precision)
        if precision:
            out["precision"] = precision
        if self.mode == "scan":
            out["scan"] = "the whole epoch as one jitted lax.scan"
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        # The tail is padded to a whole batch: one compiled shape per call, while a batch-1
        # latency probe still runs at batch 1, not EVAL_BATCH.
        batch = min(EVAL_BATCH, len(x))
        padded = np.pad(np.asarray(x, np.float32), ((0, -len(x) % batch),) + ((0, 0),) * (x.ndim - 1))
        # All batches are dispatched before any is read back, so the device never waits on the host.
        params, device = self.state.params, self.device
        out = [predict(self.state.apply_fn, params, jax.device_put(padded[i:i + batch], device))
               for i in range(0, len(padded), batch)]
        return np.concatenate([np.asarray(o) for o in out])[:len(x)]

    def get_weights(self) -> dict[str, np.ndarray]:
        flat = traverse_util.flatten_dict(self.state.params, sep=".")
        return {key: np.array(flat[key], np.float32) for key in self.model.param_shapes()}
