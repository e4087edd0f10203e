"""Keras 3 implementation: keras.Sequential trained with compile/fit, on any backend.

The backend is whatever KERAS_BACKEND names before this module is imported (tensorflow, jax
or torch); nothing here calls a backend directly, so the same code runs on all three.
compile's jit_compile="auto" means: jax jits; tensorflow runs tf.function graphs, with XLA
only on GPU; torch runs eagerly (no torch.compile).
"""
from __future__ import annotations

import math

import numpy as np

import keras
from keras import ops

from harness.spec import (EVAL_BATCH, Conv, Dense, Flatten, HarnessError, Hyper, MaxPool, check_mode,
                          ModelSpec)
from harness.weights import check_weights

# Keras runs on its backend's default device, the first GPU when one is visible, so the
# harness picks the device by what it makes visible (CUDA_VISIBLE_DEVICES). A keras.device
# scope would pin it, but one around fit lost every gradient on the torch backend.
DEVICES = ("cpu", "cuda", "gpu")


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


class BatchLoss(keras.metrics.Metric):
    """This step's loss: Keras's own "loss" log is the running mean over the epoch."""

    def __init__(self, loss_fn: keras.losses.Loss):
        super().__init__(name="batch_loss")
        self.loss_fn = loss_fn
        self.last = self.add_variable(shape=(), initializer="zeros", name="last")

    def update_state(self, y_true, y_pred, sample_weight=None):
        # The same loss object on the same y_pred as the training loss, so the same number,
        # for the price of one more (batch, classes) cross-entropy per step.
        self.last.assign(self.loss_fn(y_true, y_pred))

    def result(self):
        # A copy: on torch the variable's storage is overwritten by the next step while
        # Keras's callback thread may still be reading this step's log.
        return ops.copy(self.last)


class LossRecorder(keras.callbacks.Callback):
    """Copies each step's batch_loss log into losses[step]."""

    # Writes by step index, so Keras may run it on its worker thread (jax, torch) in any order.
    async_safe = True

    def __init__(self, steps: int):
        super().__init__()
        self.losses = np.full(steps, np.nan, np.float32)

    def on_train_batch_end(self, batch, logs=None):
        self.losses[batch] = logs["batch_loss"]


class KerasImpl:
    """The Impl contract of harness.spec with keras.Sequential, compile and fit."""

    framework = "keras"

    def build(self, model: ModelSpec, hyper: Hyper, data, weights, device: str, mode: str) -> None:
        """Build, initialise and compile the model; keep the training arrays for fit."""
        mode = check_mode(self.framework, mode)
        if device not in DEVICES:
            raise HarnessError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
        self.spec, self.device = model, device
        # The canonical layout and precision, whatever ~/.keras/keras.json says.
        keras.config.set_image_data_format("channels_last")
        keras.config.set_floatx("float32")
        keras.utils.set_random_seed(hyper.seed)  # native init draws from it
        self.model = build_model(model)
        if weights is not None:
            check_weights(model, weights)
            # Keras flattens NHWC as (h, w, c) like the canonical layout: no permutation.
            self.model.set_weights([weights[name] for name in model.param_shapes()])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.model.compile(optimizer=TorchFormOptimizer(hyper), loss=loss,
                           metrics=[BatchLoss(loss)])
        # The data stay the harness's numpy arrays, and each epoch fits on a host gather
        # of them: Keras's own input pipeline copies batches to the device (tf.data prefetch
        # on TensorFlow, per batch on jax and torch), as every fit on numpy does. Device
        # tensors would not save that copy: on jax, fit's array adapter converts them back
        # to numpy (keras/src/trainers/data_adapters/array_slicing.py).
        self.x_train, self.y_train = data.x_train, data.y_train

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """One fit epoch over the rows in order's sequence; returns each step's loss."""
        order = np.asarray(order)
        rows = order.ravel()
        recorder = LossRecorder(len(order))
        # fit on the pre-ordered rows with shuffle=False, batch_size = order's width, so the
        # batches are exactly order's rows: the idiom Keras users run, with the order ours.
        self.model.fit(self.x_train[rows], self.y_train[rows], batch_size=order.shape[1],
                       epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
        return recorder.losses

    def sync(self) -> None:
        """Wait for the last update: fit has already pulled every step's loss to the host."""
        # Reading the last-updated variable makes that a guarantee on every backend rather
        # than a detail of Keras's callback dispatch, at the cost of a few bytes copied.
        ops.convert_to_numpy(self.model.trainable_variables[-1])

    def settings(self) -> dict[str, object]:
        """What the harness records beside its own settings."""
        out: dict[str, object] = {"keras_backend": keras.backend.backend(),
                                  "jit_compile": self.model.jit_compile}
        if self.device != "cpu":
            # Keras has no backend-neutral TF32 switch: the cell's environment decides
            # (NVIDIA_TF32_OVERRIDE=0; JAX_DEFAULT_MATMUL_PRECISION=highest on jax).
            out["float32_matmul"] = "backend default unless the environment turns TF32 off"
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        """model.predict in batches of EVAL_BATCH, float32 (N, classes)."""
        out = self.model.predict(np.asarray(x, np.float32), batch_size=EVAL_BATCH, verbose=0)
        return np.asarray(out, np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Canonical names to float32 arrays; Keras's layouts are the canonical ones."""
        return {name: np.asarray(w, np.float32)
                for name, w in zip(self.spec.param_shapes(), self.model.get_weights())}
