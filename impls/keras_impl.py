"""Keras 3: the models as keras.Sequential literals, trained with compile and fit in two profiles.

- native: what a Keras user writes: Keras's own initialisation, keras.optimizers.Adam or SGD
  with Keras's defaults (Adam's epsilon 1e-7 is recorded, not changed), Keras's default
  dtype policy, and model.fit on the numpy arrays with shuffle=True.
- equal: the same models from the harness's canonical weights, an optimizer written in
  keras.ops that is the oracle's (torch's) Adam and SGD, and fit on the training rows in the
  harness's batch order; float32 or mixed_bfloat16 set explicitly.

The backend is whatever KERAS_BACKEND names before this module is imported (tensorflow, jax
or torch); nothing here calls a backend directly, so the same code runs on all three. Modes,
in both profiles: fit is compile's defaults, jit_compile="auto" (jax jits; tensorflow runs
tf.function graphs, with XLA only on a GPU; torch runs eagerly) and one step per execution;
fit-jit sets jit_compile=True (XLA on tensorflow and jax, torch.compile on torch) and several
steps per execution (STEPS_PER_EXECUTION).
"""
from __future__ import annotations

import math

import numpy as np

import keras
from keras import layers, ops

from harness.protocol import check_weights
from harness.contract import ImplBase
from harness.spec import EVAL_BATCH, Dense, Hyper, ModelSpec


# ---------------------------------------------------------------- the models
# Layers that hold weights are named canonically (dense1, conv1, ...); Keras's layouts are the
# canonical ones, so weights cross as they are.
def logistic(input_shape=(28, 28, 1), num_classes: int = 10, use_bias: bool = True) -> keras.Sequential:
    """Flatten, then one dense layer: multinomial logistic regression."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(num_classes, use_bias=use_bias, name="dense1"),
    ], name="logistic")


# mlp: begin
def mlp(input_shape=(28, 28, 1), num_classes: int = 10) -> keras.Sequential:
    """784 -> 784 relu -> 16 relu -> 10."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(784, activation="relu", name="dense1"),
        layers.Dense(16, activation="relu", name="dense2"),
        layers.Dense(num_classes, name="dense3"),
    ], name="mlp")
# mlp: end


def cnn(input_shape=(28, 28, 1), num_classes: int = 10) -> keras.Sequential:
    """Two 3x3 convolutions (4 and 8 filters), each with relu and 2x2 max-pooling, then dense."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(4, kernel_size=3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(pool_size=2),
        layers.Conv2D(8, kernel_size=3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(pool_size=2),
        layers.Flatten(),
        layers.Dense(num_classes, name="dense1"),
    ], name="cnn")


def small_mlp(input_shape=(28, 28, 1), num_classes: int = 10) -> keras.Sequential:
    """784 -> 30 relu -> 10: the small net of the 3-vs-7 and small-subset recipes."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(30, activation="relu", name="dense1"),
        layers.Dense(num_classes, name="dense2"),
    ], name="small_mlp")


def linear_stack(input_shape, widths: tuple[int, ...], num_classes: int = 10) -> keras.Sequential:
    """Dense layers of the given widths with no activation between them (the mnist-study family)."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        *(layers.Dense(width, name=f"dense{i}") for i, width in enumerate((*widths, num_classes), start=1)),
    ], name="linear_stack")


def written_model(spec: ModelSpec) -> keras.Sequential:
    """The model written above for a model name, for the spec's input shape and classes."""
    shape, classes = spec.input_shape, spec.num_classes
    if spec.name.startswith("study"):
        widths = tuple(layer.units for layer in spec.layers if isinstance(layer, Dense))[:-1]
        return linear_stack(shape, widths, classes)
    return {"logistic": lambda: logistic(shape, classes),
            "toy25": lambda: logistic(shape, classes, use_bias=False),
            "mlp": lambda: mlp(shape, classes),
            "mlp30": lambda: small_mlp(shape, classes),
            "cnn": lambda: cnn(shape, classes)}[spec.name]()


# ---------------------------------------------------------------- both profiles: modes and step losses
# Mode fit-jit: steps per compiled execution. On TensorFlow they run in one XLA loop; on jax
# Keras still calls its jitted step once per batch, but logs and callbacks only once per
# execution, which saves a host round trip a step; the torch backend refuses more than 1.
STEPS_PER_EXECUTION = {"tensorflow": 64, "jax": 64, "torch": 1}


def compile_options(mode: str) -> dict:
    """What a mode passes to model.compile: nothing for fit, XLA and several steps for fit-jit."""
    if mode == "fit":
        return {}
    return {"jit_compile": True, "steps_per_execution": STEPS_PER_EXECUTION[keras.backend.backend()]}


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


# ---------------------------------------------------------------- profile native: a user's code
def stock_optimizer(hyper: Hyper) -> keras.optimizers.Optimizer:
    """keras.optimizers.Adam or SGD with Keras's defaults: only lr and SGD's momentum from the recipe."""
    if hyper.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=hyper.lr)
    return keras.optimizers.SGD(learning_rate=hyper.lr, momentum=hyper.momentum)


# ---------------------------------------------------------------- profile equal: the optimizer
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


# ---------------------------------------------------------------- the harness's Impl
class KerasImpl(ImplBase):
    """The Impl contract of harness.spec with the models above, compile and fit."""

    framework = "keras"

    def build(self, model: ModelSpec, hyper: Hyper, data, weights, device: str, mode: str,
              precision: str = "float32", profile: str = "equal") -> None:
        """Build, initialise and compile the model; keep the training arrays for fit."""
        self.configure(mode, precision, device, profile)
        self.spec, self.device, self.hyper = model, device, hyper
        self.canonical_init = weights is not None
        keras.backend.clear_session()  # a blank Keras state: nothing left by an earlier model here
        if self.profile == "equal":
            # The canonical layout and precision, whatever ~/.keras/keras.json says. bf16 is
            # Keras's mixed_bfloat16 policy: float32 variables, bfloat16 layer compute; the
            # loss casts the logits to float32. (tf32 needs no policy: the environment sets it.)
            keras.config.set_image_data_format("channels_last")
            keras.config.set_floatx("float32")
            keras.config.set_dtype_policy("mixed_bfloat16" if self.precision == "bf16" else "float32")
        keras.utils.set_random_seed(hyper.seed)  # Keras's own init and fit's shuffle draw from it
        self.model = written_model(model)
        if weights is not None:
            check_weights(model, weights)
            self.model.set_weights([weights[name] for name in model.param_shapes()])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.whole_epoch = len(data.x_train) // hyper.batch_size
        # native's fit keeps the last partial batch: one step more than the harness's orders then
        self.step_losses = StepLosses(loss, capacity=-(-len(data.x_train) // hyper.batch_size))
        optimizer = stock_optimizer(hyper) if self.profile == "native" else TorchFormOptimizer(hyper)
        self.model.compile(optimizer=optimizer, loss=loss, metrics=[self.step_losses], **compile_options(self.mode))
        # The data stay the harness's numpy arrays, as a Keras user's do. Device tensors
        # would not save fit's copy to the device: on jax, fit's array adapter converts them
        # back to numpy (keras/src/trainers/data_adapters/array_slicing.py).
        self.x_train, self.y_train = data.x_train, data.y_train
        if self.profile == "native":
            self.samples_per_epoch = len(data.x_train)

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """One fit epoch; returns each step's loss. Native takes only order's shape, equal its rows."""
        order = np.asarray(order)
        if self.profile == "native":
            return self.fit_shuffled(len(order))
        return self.fit_in_order(order)

    def fit_shuffled(self, steps: int) -> np.ndarray:
        """The user's epoch: fit on the arrays with shuffle=True, the last partial batch included.

        Fewer steps than a whole epoch (a test's) fit on the first steps * batch rows: fit's
        steps_per_epoch would not do, as fit-jit runs whole executions of 64 steps.
        """
        rows = len(self.x_train) if steps == self.whole_epoch else steps * self.hyper.batch_size
        self.model.fit(self.x_train[:rows], self.y_train[:rows], batch_size=self.hyper.batch_size, epochs=1,
                       shuffle=True, verbose=0)
        return self.step_losses.read(-(-rows // self.hyper.batch_size))

    def fit_in_order(self, order: np.ndarray) -> np.ndarray:
        """Profile equal's epoch: fit on the rows in order's sequence, shuffle=False."""
        rows = order.ravel()
        # batch_size = order's width, so the batches are exactly order's rows: the idiom
        # Keras users run, with the order ours.
        self.model.fit(self.x_train[rows], self.y_train[rows], batch_size=order.shape[1],
                       epochs=1, shuffle=False, verbose=0)
        return self.step_losses.read(len(order))

    def sync(self) -> None:
        """Wait for the last update: train_epoch has already read the step losses back to the host."""
        # Reading the last-updated variable makes that a guarantee on every backend rather
        # than a detail of Keras's dispatch, at the cost of a few bytes copied.
        ops.convert_to_numpy(self.model.trainable_variables[-1])

    def settings(self) -> dict[str, object]:
        """What the harness records beside its own settings, the deviations included."""
        out: dict[str, object] = {"keras_backend": keras.backend.backend(),
                                  "jit_compile": self.model.jit_compile,
                                  "steps_per_execution": self.model.steps_per_execution,
                                  "dtype_policy": keras.config.dtype_policy().name}
        if self.profile == "native":
            config = self.model.optimizer.get_config()
            defaults = {k: config[k] for k in ("beta_1", "beta_2", "epsilon", "momentum", "nesterov") if k in config}
            out["optimizer"] = f"keras.optimizers.{type(self.model.optimizer).__name__}, Keras's defaults: {defaults}"
            out["input_pipeline"] = "model.fit on the numpy arrays, shuffle=True, last partial batch kept"
        elif self.device != "cpu":
            # Keras has no backend-neutral TF32 switch: the cell's environment decides
            # (NVIDIA_TF32_OVERRIDE, TORCH_ALLOW_TF32_CUBLAS_OVERRIDE, JAX_DEFAULT_MATMUL_PRECISION).
            out["tf32"] = "set by the environment (harness.launch.cell_env)"
        out["deviations"] = self.deviations()
        return out

    def deviations(self) -> dict[str, str]:
        """How this cell's training departs from a Keras user's code (the native profile's)."""
        out = {"step_losses": "a metric computes each step's loss once more, to keep every step's loss",
               "logits": "the last layer outputs logits, the loss takes from_logits=True "
                         "(Keras's examples end in a softmax)"}
        if self.profile == "native":
            return out
        out.update(optimizer="Adam and SGD in the torch/optax form, written in keras.ops (Keras's Adam "
                             "puts epsilon, 1e-7, inside its bias correction)",
                   data_path="each epoch fits on a host-side gather of the training rows in the "
                             "harness's order, shuffle=False",
                   batch_order="the harness's permutation, last partial batch dropped")
        if self.canonical_init:
            out["init"] = "the harness's canonical Glorot-uniform weights (Keras's own scheme, the harness's draw)"
        if self.precision == "bf16":
            out["precision"] = "mixed_bfloat16 policy: bfloat16 layers, float32 variables"
        elif self.device != "cpu":
            out["precision"] = f"{self.precision} set through the environment (TF32 is the GPU default)"
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        """model.predict in batches of EVAL_BATCH, float32 (N, classes)."""
        out = self.model.predict(np.asarray(x, np.float32), batch_size=EVAL_BATCH, verbose=0)
        return np.asarray(out, np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Canonical names to float32 arrays; Keras's layouts are the canonical ones."""
        return {name: np.asarray(w, np.float32)
                for name, w in zip(self.spec.param_shapes(), self.model.get_weights())}
