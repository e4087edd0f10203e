"""JAX, profile equal: the NNX models of jax_impl from the harness's canonical weights, stepping
through the harness's batch order on a training set resident on the device.

The model and its nnx.Optimizer are split once (nnx.split) into a graphdef and a state pytree;
every mode is a pure jax.jit function of (graphdef, state, data) that merges them inside the
trace (Flax's "functional training loop"), so a step costs no graph traversal in Python and a
whole epoch can be one lax.scan: one jitted call per step ("step") or one per epoch ("scan").

jax_impl hands EqualTraining its written_model, which builds the module here with the
precision's layer arguments (LAYER_ARGS), so this module never imports jax_impl.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.measure.contract import InputClock
from harness.plan.spec import Hyper, ModelSpec


# ---------------------------------------------------------------- the optimizer
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


# ---------------------------------------------------------------- the step, pure
def cross_entropy(model: nnx.Module, images, labels):
    """Mean softmax cross-entropy; under bf16 the logits are cast to float32 first."""
    logits = model(images).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def apply_batch(graphdef: nnx.GraphDef, state: nnx.State, images, labels):
    """One optimizer step on a batch: the new state and the batch's loss before the update."""
    model, optimizer = nnx.merge(graphdef, state)
    loss, grads = nnx.value_and_grad(cross_entropy)(model, images, labels)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), loss


# ---------------------------------------------------------------- the modes
@functools.partial(jax.jit, donate_argnums=(1, 2))
def indexed_step(graphdef, state, losses, x_all, y_all, order, step):
    """Train on batch order[step] of the device-resident data; its loss goes to losses[step]."""
    batch = order[step]
    state, loss = apply_batch(graphdef, state, x_all[batch], y_all[batch])
    return state, losses.at[step].set(loss)


def step_epoch(graphdef, state, x_all, y_all, order):
    """Mode step: one jitted call per step, every input already on the device."""
    # Losses gather in a device buffer the step writes: no host sync per step, and no
    # jnp.stack of ~2000 scalars (a concatenate XLA takes seconds to compile) or slicing
    # of a device array in Python (one compile per distinct slice).
    losses = jax.device_put(np.zeros(len(order), np.float32), order.sharding)
    for step in range(len(order)):
        state, losses = indexed_step(graphdef, state, losses, x_all, y_all, order, step)
    return state, losses


# On the CPU, XLA rewrites convolutions to Eigen's fast NHWC/HWIO form only in the top-level
# computation (cpu/conv_canonicalization.cc), not in a loop body: the CNN's gradient
# convolutions take XLA's generic loops, so scan runs the CNN slower than step there (jax#12868).
@functools.partial(jax.jit, donate_argnums=1)
def scan_epoch(graphdef, state, x_all, y_all, order):
    """Mode scan: every row of order in one call, no Python dispatch or host sync between steps."""
    # order.shape is static: a new step count compiles anew
    return jax.lax.scan(lambda s, batch: apply_batch(graphdef, s, x_all[batch], y_all[batch]), state, order)


EQUAL_EPOCHS = {"step": step_epoch, "scan": scan_epoch}
# What a mode adds to profile equal's deviations.
MODE_DEVIATIONS = {"step": {}, "scan": {"scan": "the whole epoch as one jitted lax.scan"}}


@jax.jit
def predict(graphdef, state, images):
    """float32 logits for one evaluation batch."""
    model, _ = nnx.merge(graphdef, state)
    return model(images).astype(jnp.float32)


# ---------------------------------------------------------------- precisions
# The harness's precisions as flax layer arguments. On a GPU, XLA runs float32 matmuls and
# convolutions in TF32 unless told otherwise, so float32 asks for HIGHEST explicitly and
# tf32 for TF32 by name. bf16: flax's mixed precision, bfloat16 compute (dtype) over
# float32 parameters (param_dtype stays float32).
LAYER_ARGS = {
    "float32": {"precision": jax.lax.Precision.HIGHEST, "dtype": jnp.float32},
    "tf32": {"precision": "tensorfloat32", "dtype": jnp.float32},
    "bf16": {"precision": None, "dtype": jnp.bfloat16},
}
# What those change from jax's defaults, per device platform.
PRECISION_DEVIATIONS = {
    "cpu": {"bf16": "flax layers with dtype=bfloat16 over float32 parameters; loss in float32"},
    "gpu": {"float32": "matmuls and convolutions at Precision.HIGHEST (XLA's GPU default is TF32)",
            "bf16": "flax layers with dtype=bfloat16 over float32 parameters; loss in float32"},
}


def load_weights(model: nnx.Module, weights: dict[str, np.ndarray]) -> None:
    """Canonical weights into the model's parameters by name: dense1.kernel is model.dense1.kernel."""
    for name, value in weights.items():
        layer, param = name.split(".")
        getattr(getattr(model, layer), param)[...] = jnp.asarray(value, jnp.float32)


class EqualTraining:
    """Profile equal: the harness's weights and order, data on the device, the mode's jitted epoch."""
    loss_every = 1

    def __init__(self, written_model: Callable[..., nnx.Module], spec: ModelSpec, hyper: Hyper, data, weights,
                 device: jax.Device, precision: str, mode: str):
        """written_model: jax_impl's model builder, called with the precision's LAYER_ARGS."""
        self.hyper, self.device, self.precision, self.mode = hyper, device, precision, mode
        self.canonical_init = weights is not None
        model = written_model(spec, rngs=nnx.Rngs(hyper.seed), **LAYER_ARGS[precision])  # flax's init
        if weights is not None:
            load_weights(model, weights)
        optimizer = nnx.Optimizer(model, equal_optimizer(hyper), wrt=nnx.Param)
        self.graphdef, state = nnx.split((model, optimizer))
        # Everything lives on the chosen device from here on: data are uploaded once.
        self.state = jax.device_put(state, device)
        self.x_train = jax.device_put(data.x_train, device)
        self.y_train = jax.device_put(data.y_train, device)
        self.epoch = EQUAL_EPOCHS[mode]
        self.samples_per_epoch = len(data.x_train) // hyper.batch_size * hyper.batch_size
        self.input_clock = InputClock()

    def train_epoch(self, order: np.ndarray):
        """Steps over order's rows; the per-step losses, still on the device."""
        order = jax.device_put(np.asarray(order, np.int32), self.device)
        self.state, losses = self.epoch(self.graphdef, self.state, self.x_train, self.y_train, order)
        return losses

    def sync(self) -> None:
        jax.block_until_ready(self.state)

    @property
    def model(self) -> nnx.Module:
        """The model at the current state (a fresh view: the state's buffers go to the next step)."""
        return nnx.merge(self.graphdef, self.state)[0]

    def predict(self, images):
        return predict(self.graphdef, self.state, images)

    def settings(self) -> dict:
        return {"deviations": self.deviations()}

    def deviations(self) -> dict[str, str]:
        """How profile equal's training departs from the native code (jax_impl.NativeTraining)."""
        out = {"data_path": "no Grain: the training set lives on the device; each step gathers its batch "
                            "there by index",
               "batch_order": "the harness's permutation",
               "jit": "pure jax.jit functions over nnx.split state (Flax's functional training loop), "
                      "not nnx.jit over the objects; no nnx.MultiMetric, every step's loss kept"}
        if self.canonical_init:
            out["init"] = "the harness's canonical Glorot-uniform weights, not flax's lecun-normal"
        if self.hyper.optimizer == "adam":
            out["optimizer"] = ("optax's Adam with the recipe's b1, b2, eps and bias corrections "
                                "1 - b**t as -expm1(t log b) (optax's float32 power is 1.3e-5 off early)")
        else:
            out["optimizer"] = "optax.sgd with the recipe's momentum, as native"
        precision = PRECISION_DEVIATIONS[self.device.platform].get(self.precision)
        if precision:
            out["precision"] = precision
        return {**out, **MODE_DEVIATIONS[self.mode]}
