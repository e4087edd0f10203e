"""Keras 3 implementation: keras.Sequential trained with compile/fit, on any backend.

The backend is whatever KERAS_BACKEND names before this module is imported (tensorflow, jax
or torch); nothing here calls a backend directly, so the same code runs on all three.
Mode fit is compile's defaults: jit_compile="auto" (jax jits; tensorflow runs tf.function
graphs, with XLA only on a GPU; torch runs eagerly) and one step per execution. Mode fit-jit
sets jit_compile=True (XLA on tensorflow and jax, torch.compile on torch) and several steps
per execution (STEPS_PER_EXECUTION).
"""
from __future__ import annotations

import math

import numpy as np

import keras
from keras import ops

from harness.spec import EVAL_BATCH, Conv, Dense, Flatten, HarnessError, Hyper, ImplBase, MaxPool, ModelSpec
from harness.protocol import check_weights

# Keras runs on its backend's default device, the first GPU when one is visible, so the
# harness picks the device by what it makes visible (CUDA_VISIBLE_DEVICES). A keras.device
# scope would pin it, but one around fit lost every gradient on the torch backend.
# Mode fit-jit: steps per compiled execution. On TensorFlow they run in one XLA loop; on jax
# Keras still calls its jitted step once per batch, but logs and callbacks only once per
# execution, which saves a host round trip a step; the torch backend refuses more than 1.
STEPS_PER_EXECUTION = {"tensorflow": 64, "jax": 64, "torch": 1}


def build_model(model: ModelSpec) -> keras.Sequential:
    """The spec's layers as a keras.Sequential, layers named canonically (conv1, dense1, ...)."""
    layers: list = [keras.Input(model.input_shape)]
    for name, layer, _, _ in model.named_layers():
        if isinstance(layer, Conv):
            paddings = {0: "valid", (layer.kernel - 1) // 2: "same"}
            if layer.kernel % 2 == 0 or layer.padding not in paddings:
                raise HarnessError(f"{model.name}.{name}: Keras Conv2D offers only 'valid' and "
                                   f"'same' padding, not {layer.padding} for a {layer.kernel}x"
                                   f"{layer.kernel} kernel")
            layers.append(keras.layers.Conv2D(layer.filters, layer.kernel, name=name,
                                              padding=paddings[layer.padding],
                                              activation=layer.activation))
        elif isinstance(layer, MaxPool):
            layers.append(keras.layers.MaxPooling2D(layer.size, name=name))
        elif isinstance(layer, Flatten):
            layers.append(keras.layers.Flatten(name=name))
        elif isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.units, activation=layer.activation,
                                             use_bias=layer.use_bias, name=name))
    return keras.Sequential(layers, name=model.name)


def one_minus_power(beta: float, step):
    """1 - beta**step, accurate in float32 as torch's (float64) bias corrections are."""
    # float32(0.999) is 1.3e-5 off in 1 - beta, which 1 - beta**step keeps at small steps;
    # that bias moved the mlp's 50-step Adam losses 7.7e-3 from the reference, this 2e-7.
    return -ops.expm1(step * math.log(beta))


class TorchFormOptimizer(keras.optimizers.Optimizer):
    """Adam or momentum SGD exactly as harness.reference.Optimizer (the torch/optax form)."""

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


class KerasImpl(ImplBase):
    """The Impl contract of harness.spec with keras.Sequential, compile and fit."""

    framework = "keras"

    def build(self, model: ModelSpec, hyper: Hyper, data, weights, device: str, mode: str,
              precision: str = "float32", profile: str = "equal") -> None:
        """Build, initialise and compile the model; keep the training arrays for fit."""
        self.configure(mode, precision, device, profile)
        self.spec, self.device = model, device
        # The canonical layout and precision, whatever ~/.keras/keras.json says. bf16 is
        # Keras's mixed_bfloat16 policy: float32 variables, bfloat16 layer compute; the loss
        # casts the logits to float32. (tf32 needs no policy: the environment sets it.)
        keras.config.set_image_data_format("channels_last")
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("mixed_bfloat16" if self.precision == "bf16" else "float32")
        keras.utils.set_random_seed(hyper.seed)  # native init draws from it
        self.model = build_model(model)
        if weights is not None:
            check_weights(model, weights)
            # Keras flattens NHWC as (h, w, c) like the canonical layout: no permutation.
            self.model.set_weights([weights[name] for name in model.param_shapes()])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.step_losses = StepLosses(loss, capacity=len(data.x_train) // hyper.batch_size)
        if self.mode == "fit":  # compile's defaults
            jit, steps_per_execution = "auto", 1
        else:
            jit, steps_per_execution = True, STEPS_PER_EXECUTION[keras.backend.backend()]
        self.model.compile(optimizer=TorchFormOptimizer(hyper), loss=loss, metrics=[self.step_losses],
                           jit_compile=jit, steps_per_execution=steps_per_execution)
        # The data stay the harness's numpy arrays, and each epoch fits on a host gather
        # of them: Keras's own input pipeline copies batches to the device (tf.data prefetch
        # on TensorFlow, per batch on jax and torch), as every fit on numpy does. Device
        # tensors would not save that copy: on jax, fit's array adapter converts them back
        # to numpy (keras/src/trainers/data_adapters/array_slicing.py).
        self.x_train, self.y_train = data.x_train, data.y_train

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """One fit epoch over the rows in order's sequence; returns each step's loss."""
        order = np.asarray(order)
        if len(order) > self.step_losses.losses.shape[0]:
            raise HarnessError(f"an epoch of {len(order)} steps is longer than the "
                               f"{self.step_losses.losses.shape[0]} the training set gives")
        rows = order.ravel()
        # fit on the pre-ordered rows with shuffle=False, batch_size = order's width, so the
        # batches are exactly order's rows: the idiom Keras users run, with the order ours.
        # fit resets the metric first, so the buffer fills from step 0.
        self.model.fit(self.x_train[rows], self.y_train[rows], batch_size=order.shape[1],
                       epochs=1, shuffle=False, verbose=0)
        count = int(ops.convert_to_numpy(self.step_losses.count))
        if count != len(order):
            raise RuntimeError(f"Keras ran {count} steps of an epoch of {len(order)}")
        return ops.convert_to_numpy(self.step_losses.losses)[:count]

    def sync(self) -> None:
        """Wait for the last update: train_epoch has already read the step losses back to the host."""
        # Reading the last-updated variable makes that a guarantee on every backend rather
        # than a detail of Keras's dispatch, at the cost of a few bytes copied.
        ops.convert_to_numpy(self.model.trainable_variables[-1])

    def settings(self) -> dict[str, object]:
        """What the harness records beside its own settings."""
        out: dict[str, object] = {"keras_backend": keras.backend.backend(),
                                  "jit_compile": self.model.jit_compile,
                                  "steps_per_execution": self.model.steps_per_execution,
                                  "dtype_policy": keras.config.dtype_policy().name}
        if self.device != "cpu":
            # Keras has no backend-neutral TF32 switch: the cell's environment decides
            # (NVIDIA_TF32_OVERRIDE, TORCH_ALLOW_TF32_CUBLAS_OVERRIDE, JAX_DEFAULT_MATMUL_PRECISION).
            out["tf32"] = "set by the environment (harness.cell.cell_env)"
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        """model.predict in batches of EVAL_BATCH, float32 (N, classes)."""
        out = self.model.predict(np.asarray(x, np.float32), batch_size=EVAL_BATCH, verbose=0)
        return np.asarray(out, np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Canonical names to float32 arrays; Keras's layouts are the canonical ones."""
        return {name: np.asarray(w, np.float32)
                for name, w in zip(self.spec.param_shapes(), self.model.get_weights())}
