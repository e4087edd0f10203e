"""Keras 3, profile equal: the models of keras_impl from the harness's canonical weights, an
optimizer written in keras.ops that is the oracle's (torch's) Adam and SGD, and fit on the
training rows in the harness's batch order; float32 or mixed_bfloat16 set explicitly. A
StepLosses metric keeps every step's loss (the parity tests compare them step by step).

keras_impl hands EqualFit its written_model, so this module never imports keras_impl; the
modes' compile options live here, and profile native takes them from here too.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import keras
from keras import ops

from harness.measure.contract import ImplBase, InputClock
from harness.measure.protocol import check_weights
from harness.plan.spec import Hyper, ModelSpec


# ---------------------------------------------------------------- compile: the modes
# Mode fit-jit: steps per compiled execution. On TensorFlow they run in one XLA loop; on jax
# Keras still calls its jitted step once per batch, but logs and callbacks only once per
# execution, which saves a host round trip a step; the torch backend refuses more than 1.
STEPS_PER_EXECUTION = {"tensorflow": 64, "jax": 64, "torch": 1}


def compile_options(mode: str) -> dict:
    """What a mode passes to model.compile: nothing for fit, XLA and several steps for fit-jit."""
    if mode == "fit":
        return {}
    return {"jit_compile": True, "steps_per_execution": STEPS_PER_EXECUTION[keras.backend.backend()]}


# ---------------------------------------------------------------- the step losses and the optimizer
class StepLosses(keras.metrics.Metric):
    """Every step's loss of the epoch, written into a buffer inside the compiled train step.

    Keras's own "loss" log is the running mean over the epoch, and with steps_per_execution
    > 1 callbacks see only each execution's last step; a metric runs inside every step, so
    the buffer holds all of them whatever the mode, with no host round trip per step.
    """

    def __init__(self, loss_fn: keras.losses.Loss, capacity: int):
        super().__init__(name="step_loss")
        self.loss_fn = loss_fn
        self.losses = self.add_variable(shape=(capacity,), initializer="zeros", name="losses")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        # The same loss object on the same y_pred as the training loss, so the same number,
        # for the price of one more (batch, classes) cross-entropy per step.
        loss = ops.cast(ops.reshape(self.loss_fn(y_true, y_pred), (1,)), self.losses.dtype)
        count = self.count.value
        self.losses.assign(ops.slice_update(self.losses.value, (count,), loss))
        self.count.assign(count + 1)

    def result(self):
        """The latest step's loss (the logs' value); the epoch's are in .losses."""
        return ops.take(self.losses.value, ops.maximum(self.count.value - 1, 0))

    def read(self, steps: int) -> np.ndarray:
        """The last fit's step losses, on the host; fit resets the metric, so they start at step 0."""
        count = int(ops.convert_to_numpy(self.count))
        if count != steps:
            raise RuntimeError(f"Keras ran {count} steps of an epoch of {steps}")
        return ops.convert_to_numpy(self.losses)[:count]


def one_minus_power(beta: float, step):
    """1 - beta**step, accurate in float32 as torch's (float64) bias corrections are."""
    # float32(0.999) is 1.3e-5 off in 1 - beta, which 1 - beta**step keeps at small steps;
    # that bias moved the mlp's 50-step Adam losses 7.7e-3 from the reference, this 2e-7.
    return -ops.expm1(step * math.log(beta))


class TorchFormOptimizer(keras.optimizers.Optimizer):
    """Adam or momentum SGD exactly as harness.measure.reference.Optimizer (the torch/optax form)."""

    # keras.optimizers.Adam puts eps inside a step-dependent "epsilon hat": its
    # p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) is torch's
    # p -= lr * m_hat / (sqrt(v_hat) + eps) with eps / sqrt(1 - b2^t) in place of eps, and
    # keras.optimizers.SGD's velocity v = mu*v - lr*g equals torch's -lr*b (b = mu*b + g;
    # p -= lr*b) only while lr is constant; so this class writes the reference's maths in
    # keras.ops. The base class adds nothing else: weight decay, clipping, EMA are off.

    def __init__(self, hyper: Hyper):
        super().__init__(learning_rate=hyper.lr, name=f"torch_form_{hyper.optimizer}")
        self.hyper = hyper

    def build(self, variables):
        """One moment buffer per variable for SGD, two (m, v) for Adam."""
        if self.built:
            return
        super().build(variables)
        slots = ["m", "v"] if self.hyper.optimizer == "adam" else ["m"]
        self.slots = [[self.add_variable_from_reference(v, slot) for v in variables]
                      for slot in slots]

    def update_step(self, gradient, variable, learning_rate):
        """One parameter's update; self.iterations counts the steps already taken."""
        h = self.hyper
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        m = self.slots[0][index]
        if h.optimizer == "sgd":
            m_new = h.momentum * m + g
            self.assign(m, m_new)
            self.assign_sub(variable, lr * m_new)
            return
        v = self.slots[1][index]
        step = ops.cast(self.iterations + 1, variable.dtype)
        m_new = h.beta1 * m + (1 - h.beta1) * g
        v_new = h.beta2 * v + (1 - h.beta2) * ops.square(g)
        self.assign(m, m_new)
        self.assign(v, v_new)
        m_hat = m_new / one_minus_power(h.beta1, step)
        v_hat = v_new / one_minus_power(h.beta2, step)
        self.assign_sub(variable, lr * m_hat / (ops.sqrt(v_hat) + h.eps))


# ---------------------------------------------------------------- profile equal
class EqualFit:
    """Profile equal: canonical weights, the torch-form optimizer, fit on the rows in the harness's order."""
    loss_every = 1

    def __init__(self, written_model: Callable[[ModelSpec], keras.Model], spec: ModelSpec, hyper: Hyper, data,
                 weights, mode: str, precision: str, device: str):
        """written_model: keras_impl's model builder, called once the layout and dtype policy are set."""
        self.hyper, self.precision, self.device = hyper, precision, device
        self.canonical_init = weights is not None
        # The canonical layout and precision, whatever ~/.keras/keras.json says. bf16 is
        # Keras's mixed_bfloat16 policy: float32 variables, bfloat16 layer compute; the
        # loss casts the logits to float32. (tf32 needs no policy: the environment sets it.)
        keras.config.set_image_data_format("channels_last")
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bf16" else "float32")
        keras.utils.set_random_seed(hyper.seed)  # --init native: Keras's own init draws from it
        self.model = written_model(spec)
        if weights is not None:
            check_weights(spec, weights)
            self.model.set_weights([weights[name] for name in spec.param_shapes()])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.step_losses = StepLosses(loss, capacity=len(data.x_train) // hyper.batch_size)
        self.model.compile(optimizer=TorchFormOptimizer(hyper), loss=loss, metrics=[self.step_losses],
                           **compile_options(mode))
        # The data stay the harness's numpy arrays, as a Keras user's do. Device tensors
        # would not save fit's copy to the device: on jax, fit's array adapter converts them
        # back to numpy (keras/src/trainers/data_adapters/array_slicing.py).
        self.x_train, self.y_train = data.x_train, data.y_train
        self.samples_per_epoch = len(data.x_train) // hyper.batch_size * hyper.batch_size
        self.input_clock = InputClock("the host-side gather of the epoch's rows in the harness's order "
                                      "(x_train[rows]); Keras's own adapter inside fit is not reached "
                                      "(see profile native)")

    def run_epochs(self, impl, epochs, order_for, hooks) -> None:
        """The harness's loop: one fit per epoch, on that epoch's rows (ImplBase's default)."""
        ImplBase.run_epochs(impl, epochs, order_for, hooks)

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """One fit on the rows in order's sequence, shuffle=False; every step's loss."""
        order = np.asarray(order)
        rows = order.ravel()
        with self.input_clock.fetching():
            x, y = self.x_train[rows], self.y_train[rows]
        # batch_size = order's width, so the batches are exactly order's rows: the idiom
        # Keras users run, with the order ours.
        self.model.fit(x, y, batch_size=order.shape[1], epochs=1, shuffle=False, verbose=0)
        return self.step_losses.read(len(order))

    def settings(self) -> dict:
        out = {"dtype_policy": keras.config.dtype_policy().name, "deviations": self.deviations()}
        if self.device != "cpu":
            # Keras has no backend-neutral TF32 switch: the cell's environment decides
            # (NVIDIA_TF32_OVERRIDE, TORCH_ALLOW_TF32_CUBLAS_OVERRIDE, JAX_DEFAULT_MATMUL_PRECISION).
            out["tf32"] = "set by the environment (harness.run.launch.cell_env)"
        return out

    def deviations(self) -> dict[str, str]:
        """How this cell's training departs from a Keras user's code (keras_impl.NativeFit)."""
        out = {"optimizer": "Adam and SGD in the torch/optax form, written in keras.ops (Keras's Adam "
                            "puts epsilon, 1e-7, inside its bias correction)",
               "data_path": "each epoch fits on a host-side gather of the training rows in the "
                            "harness's order, shuffle=False",
               "batch_order": "the harness's permutation, last partial batch dropped",
               "step_losses": "a metric computes each step's loss once more, to keep every step's loss",
               "logits": "the last layer outputs logits, the loss takes from_logits=True "
                         "(Keras's examples end in a softmax)"}
        if self.canonical_init:
            out["init"] = "the harness's canonical Glorot-uniform weights (Keras's own scheme, the harness's draw)"
        if self.precision == "bf16":
            out["precision"] = "mixed_bfloat16 policy: bfloat16 layers, float32 variables"
        elif self.device != "cpu":
            out["precision"] = f"{self.precision} set through the environment (TF32 is the GPU default)"
        return out
