"""JAX (flax linen + optax) implementation of the Impl contract, laid out like Flax's MNIST example.

Linen, not nnx: linen keeps parameters in a plain pytree apart from the module, so the train
step is one pure jitted function of (state, device-resident data, batch indices), canonical
weights load by building that pytree, and a fused lax.scan epoch needs no state plumbing.
Flax's layouts are the canonical ones (Dense (in, out), Conv HWIO, NHWC flattened as
(h, w, c)), so weights cross without any transposition or permutation.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import traverse_util
from flax.training import train_state

from harness.spec import EVAL_BATCH, Conv, Dense, Flatten, HarnessError, Hyper, ImplBase, MaxPool, ModelSpec

# The harness's precisions as flax layer arguments. On a GPU, XLA runs float32 matmuls and
# convolutions in TF32 unless told otherwise, so float32 asks for HIGHEST explicitly and
# tf32 for TF32 by name. bf16: flax's mixed precision, bfloat16 compute (dtype) over
# float32 parameters (param_dtype stays float32).
LAYER_ARGS = {
    "float32": {"precision": jax.lax.Precision.HIGHEST, "dtype": jnp.float32},
    "tf32": {"precision": "tensorfloat32", "dtype": jnp.float32},
    "bf16": {"precision": None, "dtype": jnp.bfloat16},
}
DEVICE_KINDS = {"cpu": "cpu", "cuda": "gpu"}


class Net(nn.Module):
    """The model a ModelSpec describes; parameters are named conv1, dense1, ... as canonically.

    Logits come out float32 whatever the layers compute in, so the loss is float32.
    """
    spec: ModelSpec
    precision: str = "float32"

    @nn.compact
    def __call__(self, x):
        args = LAYER_ARGS[self.precision]
        x = x.astype(args["dtype"])
        for name, layer, _, _ in self.spec.named_layers():
            if isinstance(layer, Conv):
                x = nn.Conv(layer.filters, (layer.kernel, layer.kernel), padding=layer.padding,
                            name=name, **args)(x)
            elif isinstance(layer, MaxPool):
                window = (layer.size, layer.size)
                x = nn.max_pool(x, window, strides=window)
            elif isinstance(layer, Flatten):
                x = x.reshape((x.shape[0], -1))  # NHWC rows flatten as (h, w, c): canonical
            elif isinstance(layer, Dense):
                x = nn.Dense(layer.units, use_bias=layer.use_bias, name=name, **args)(x)
            if getattr(layer, "activation", None) == "relu":
                x = nn.relu(x)
        return x.astype(jnp.float32)


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


def make_optimizer(hyper: Hyper) -> optax.GradientTransformation:
    """Adam and SGD-momentum in the reference's (torch's and optax's) forms."""
    if hyper.optimizer == "sgd":
        return optax.sgd(hyper.lr, momentum=hyper.momentum)
    return optax.chain(scale_by_adam(hyper.beta1, hyper.beta2, hyper.eps),
                       optax.scale_by_learning_rate(hyper.lr))


def batch_update(state: train_state.TrainState, x_all, y_all, idx):
    """One optimizer step on rows idx of the device-resident data; returns (state, loss)."""
    x, y = x_all[idx], y_all[idx]

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


@functools.partial(jax.jit, donate_argnums=(0, 1))
def train_step(state: train_state.TrainState, losses, x_all, y_all, order, step):
    """Train on batch order[step]; its loss goes to losses[step]."""
    state, loss = batch_update(state, x_all, y_all, order[step])
    return state, losses.at[step].set(loss)


# On the CPU, XLA rewrites convolutions to Eigen's fast NHWC/HWIO form only in the top-level
# computation (cpu/conv_canonicalization.cc), not in a loop body: the CNN's gradient
# convolutions take XLA's generic loops, so scan runs the CNN slower than step there (jax#12868).
@functools.partial(jax.jit, donate_argnums=0)
def train_scan(state: train_state.TrainState, x_all, y_all, order):
    """Train on every row of order in one call: no Python dispatch or host sync between steps."""
    return jax.lax.scan(lambda s, idx: batch_update(s, x_all, y_all, idx), state, order)


@functools.partial(jax.jit, static_argnums=0)
def predict(apply_fn, params, x):
    """Logits for one evaluation batch."""
    return apply_fn({"params": params}, x)


def select_device(name: str) -> jax.Device:
    """The first jax device of the requested kind, or a HarnessError saying what exists."""
    try:
        return jax.devices(DEVICE_KINDS[name])[0]
    except RuntimeError:
        raise HarnessError(f"jax sees no {name} device here (it has {jax.devices()}); "
                           "install jax[cuda] or run with device cpu") from None


class JaxImpl(ImplBase):
    """flax linen + optax: one jitted call per step ("step") or per epoch ("scan")."""
    framework = "jax"

    def build(self, model, hyper, data, weights, device, mode, precision="float32", profile="equal") -> None:
        self.configure(mode, precision, device, profile)
        self.model, self.device = model, select_device(device)
        net = Net(model, self.precision)
        if weights is None:  # flax's native init: lecun-normal kernels, zero biases
            sample = jnp.zeros((1, *model.input_shape), jnp.float32)
            params = net.init(jax.random.PRNGKey(hyper.seed), sample)["params"]
        else:
            params = traverse_util.unflatten_dict(
                {key: jnp.asarray(value, jnp.float32) for key, value in weights.items()}, sep=".")
        state = train_state.TrainState.create(apply_fn=net.apply, params=params,
                                              tx=make_optimizer(hyper))
        # Everything lives on the chosen device from here on: data are uploaded once.
        self.state = jax.device_put(state, self.device)
        self.x_train = jax.device_put(data.x_train, self.device)
        self.y_train = jax.device_put(data.y_train, self.device)

    def train_epoch(self, order: np.ndarray) -> jax.Array:
        order = jax.device_put(np.asarray(order, np.int32), self.device)
        if self.mode == "scan":  # order.shape is static: a new step count compiles anew
            self.state, losses = train_scan(self.state, self.x_train, self.y_train, order)
            return losses
        # Losses gather in a device buffer the step writes: no host sync per step, and no
        # jnp.stack of ~2000 scalars (a concatenate XLA takes seconds to compile) or slicing
        # of a device array in Python (one compile per distinct slice).
        losses = jax.device_put(np.zeros(len(order), np.float32), self.device)
        for step in range(len(order)):
            self.state, losses = train_step(self.state, losses, self.x_train, self.y_train, order, step)
        return losses

    def sync(self) -> None:
        jax.block_until_ready(self.state)

    def peak_device_memory_mb(self) -> float | None:
        """XLA's allocator peak on a GPU (memory_stats is None on the CPU)."""
        stats = self.device.memory_stats() if self.device.platform == "gpu" else None
        return stats["peak_bytes_in_use"] / 2**20 if stats else None

    def device_name(self) -> str | None:
        return self.device.device_kind if self.device.platform == "gpu" else None

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
