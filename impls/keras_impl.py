"""Keras 3: the models as keras.Sequential literals, trained with compile and fit in two profiles.

- native: keras-io's examples/vision/mnist_convnet.py as it runs: Keras's own initialisation,
  keras.optimizers.Adam or SGD with Keras's defaults (Adam's epsilon 1e-7 is recorded, not
  changed), Keras's default dtype policy, compile with metrics=["accuracy"], and ONE
  model.fit on the numpy arrays (shuffle=True) for all epochs; a callback times each epoch
  between sync barriers and hands it to the harness, which evaluates outside that time.
- equal: impls/keras_equal.py: these models from the harness's canonical weights, the
  oracle's optimizer written in keras.ops, fit on the rows in the harness's batch order.

The backend is whatever KERAS_BACKEND names before this module is imported (tensorflow, jax
or torch); nothing here calls a backend directly, so the same code runs on all three. Modes,
in both profiles: fit is compile's defaults, jit_compile="auto" (jax jits; tensorflow runs
tf.function graphs, with XLA only on a GPU; torch runs eagerly) and one step per execution;
fit-jit sets jit_compile=True (XLA on tensorflow and jax, torch.compile on torch) and several
steps per execution (keras_equal.STEPS_PER_EXECUTION; both profiles compile with
keras_equal.compile_options).
"""
from __future__ import annotations

import time

import numpy as np

import keras
from keras import layers, ops

from harness.measure.contract import ImplBase, InputClock
from harness.plan.spec import EVAL_BATCH, Hyper, ModelSpec
from impls.keras_equal import EqualFit, compile_options
from impls.widths import widths


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
def mlp(input_shape=(28, 28, 1), hidden1: int = 784, hidden2: int = 16, num_classes: int = 10) -> keras.Sequential:
    """784 -> 784 relu -> 16 relu -> 10."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(hidden1, activation="relu", name="dense1"),
        layers.Dense(hidden2, activation="relu", name="dense2"),
        layers.Dense(num_classes, name="dense3"),
    ], name="mlp")
# mlp: end


def cnn(input_shape=(28, 28, 1), filters1: int = 4, filters2: int = 8, num_classes: int = 10) -> keras.Sequential:
    """Two 3x3 convolutions (4 and 8 filters), each with relu and 2x2 max-pooling, then dense."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(filters1, kernel_size=3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(pool_size=2),
        layers.Conv2D(filters2, kernel_size=3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(pool_size=2),
        layers.Flatten(),
        layers.Dense(num_classes, name="dense1"),
    ], name="cnn")


def small_mlp(input_shape=(28, 28, 1), hidden: int = 30, num_classes: int = 10) -> keras.Sequential:
    """784 -> 30 relu -> 10: the small net of the 3-vs-7 and small-subset recipes."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(hidden, activation="relu", name="dense1"),
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
    """The model written above for a model name, sized by the spec (widths, input shape, classes)."""
    w, shape = widths(spec), spec.input_shape
    if spec.name.startswith("study"):
        return linear_stack(shape, w.hidden, w.classes)
    return {"logistic": lambda: logistic(shape, w.classes),
            "toy25": lambda: logistic(shape, w.classes, use_bias=False),
            "mlp": lambda: mlp(shape, *w.hidden, w.classes),
            "mlp30": lambda: small_mlp(shape, *w.hidden, w.classes),
            "cnn": lambda: cnn(shape, *w.filters, w.classes)}[spec.name]()


# ---------------------------------------------------------------- profile native: mnist_convnet.py
def stock_optimizer(hyper: Hyper) -> keras.optimizers.Optimizer:
    """keras.optimizers.Adam or SGD with Keras's defaults: only lr and SGD's momentum from the recipe."""
    if hyper.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=hyper.lr)
    return keras.optimizers.SGD(learning_rate=hyper.lr, momentum=hyper.momentum)


class EpochClock(keras.callbacks.Callback):
    """Times each epoch of one fit between sync barriers and hands it to the harness's hooks."""

    def __init__(self, hooks, input_clock: InputClock, sync):
        super().__init__()
        self.hooks, self.input_clock, self.sync = hooks, input_clock, sync

    def on_epoch_begin(self, epoch, logs=None):
        self.hooks.begin(epoch + 1)
        self.input_clock.reset()
        self.sync()
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.sync()
        seconds = time.perf_counter() - self.start
        # The harness evaluates inside end(), after the clock stopped; the next epoch's clock
        # starts in on_epoch_begin, after it.
        if not self.hooks.end(epoch + 1, seconds, [logs["loss"]], self.input_clock.seconds):
            self.model.stop_training = True


class SetupClock(keras.callbacks.Callback):
    """Seconds from the callback's creation (just before fit) to fit's first epoch."""

    def __init__(self):
        super().__init__()
        self.created, self.seconds = time.perf_counter(), None

    def on_epoch_begin(self, epoch, logs=None):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.created


class BatchGaps(keras.callbacks.Callback):
    """Input time where fit draws each batch between the batch callbacks (the torch backend): the
    gaps from the epoch's start or a batch's end to the next batch's start."""

    def __init__(self, input_clock: InputClock):
        super().__init__()
        self.input_clock = input_clock

    def on_epoch_begin(self, epoch, logs=None):
        self.mark = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.input_clock.add(time.perf_counter() - self.mark)

    def on_train_batch_end(self, batch, logs=None):
        self.mark = time.perf_counter()


# Where Keras's own data adapter cannot be timed without changing what fit does, and why.
# A callback that overrides on_train_batch_end also makes Keras (on jax and torch) read every
# step's logs on the host in the training thread, instead of in its background thread.
OUT_OF_REACH = {
    "tensorflow": "fit draws each batch from a tf.data iterator inside its compiled train function "
                  "(a tf.function; under fit-jit a loop of 64 steps): no callback sees the fetch apart "
                  "from the step",
    "jax": "fit's train function calls the data adapter's next() itself, between the same two batch "
           "callbacks as the step, and a batch-end callback would make Keras read every step's logs "
           "on the host (a sync per step) instead of in its background thread",
    "torch-cuda": "fit draws each batch between its batch callbacks, but a batch-end callback would "
                  "make Keras read every step's logs on the host in the training thread: a CUDA sync "
                  "per step that fit does not otherwise pay",
}


def native_input_clock(device: str) -> tuple[InputClock, list[keras.callbacks.Callback]]:
    """The input clock of profile native's fit on this backend and device, and the callbacks it needs."""
    backend = keras.backend.backend()
    where = backend if backend != "torch" or device == "cpu" else "torch-cuda"
    if where in OUT_OF_REACH:
        return InputClock.out_of_reach(OUT_OF_REACH[where]), []
    clock = InputClock("the gaps between fit's batch callbacks, where Keras's torch data adapter slices "
                       "each batch and converts it to a tensor (callbacks on_train_batch_end and "
                       "_begin; Keras then reads each step's logs in the training thread)")
    return clock, [BatchGaps(clock)]


# What a mode departs from the example's compile (its defaults).
MODE_DEVIATIONS = {"fit": {}, "fit-jit": {"compile": "jit_compile=True and several steps per execution "
                                                     "(STEPS_PER_EXECUTION); the example keeps compile's defaults"}}



class NativeFit:
    """Profile native: the example's compile and one fit, the model's own init and stock optimizer."""
    loss_every = 0  # fit's logs keep the epoch's mean loss

    def __init__(self, spec: ModelSpec, hyper: Hyper, data, mode: str, device: str):
        self.hyper, self.mode = hyper, mode
        keras.utils.set_random_seed(hyper.seed)  # Keras's own init and fit's shuffle draw from it
        self.model = written_model(spec)
        self.model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           optimizer=stock_optimizer(hyper), metrics=["accuracy"], **compile_options(mode))
        self.x_train, self.y_train = data.x_train, data.y_train
        self.whole_epoch = len(data.x_train) // hyper.batch_size
        self.samples_per_epoch = len(data.x_train)  # fit keeps the last partial batch
        self.input_clock, self.callbacks = native_input_clock(device)
        self.fit_setup_s = None

    def run_epochs(self, impl, epochs, order_for, hooks) -> None:
        """The example's one fit for all epochs; EpochClock reports each epoch to the hooks."""
        clock = EpochClock(hooks, self.input_clock, impl.sync)
        setup = SetupClock()
        self.model.fit(self.x_train, self.y_train, batch_size=self.hyper.batch_size, epochs=epochs, shuffle=True,
                       verbose=0, callbacks=[setup, clock, *self.callbacks])
        self.fit_setup_s = setup.seconds

    def train_epoch(self, order: np.ndarray) -> list[float]:
        """One fit epoch on the arrays (len(order) steps of it); its mean loss from the History.

        Fewer steps than a whole epoch (a test's, the overhead probe's) fit on the first
        steps * batch rows: fit's steps_per_epoch would not do, as fit-jit runs whole
        executions of 64 steps.
        """
        rows = len(self.x_train) if len(order) == self.whole_epoch else len(order) * self.hyper.batch_size
        history = self.model.fit(self.x_train[:rows], self.y_train[:rows], batch_size=self.hyper.batch_size,
                                 epochs=1, shuffle=True, verbose=0, callbacks=self.callbacks)
        return history.history["loss"]

    def settings(self) -> dict:
        config = self.model.optimizer.get_config()
        defaults = {k: config[k] for k in ("beta_1", "beta_2", "epsilon", "momentum", "nesterov") if k in config}
        out = {"optimizer": f"keras.optimizers.{type(self.model.optimizer).__name__}, Keras's defaults: {defaults}",
               "input_pipeline": "model.fit on the numpy arrays, shuffle=True, last partial batch kept",
               "dtype_policy": keras.config.dtype_policy().name, "deviations": self.deviations()}
        if self.fit_setup_s is not None:
            out["fit_setup"] = (f"{self.fit_setup_s:.3f} s from fit's call to its first epoch (data adapter, "
                                "callbacks), outside every epoch's time")
        return out

    def deviations(self) -> dict[str, str]:
        """How this cell departs from keras-io's mnist_convnet.py."""
        return {"data_source": "the harness's MNIST arrays (float32 in [0, 1], NHWC); the example loads them "
                               "with keras.datasets.mnist.load_data() (a download) and scales them itself",
                "logits": "the last layer outputs logits and the loss is SparseCategoricalCrossentropy("
                          "from_logits=True) on integer labels; the example ends in a softmax and one-hot "
                          "encodes the labels for categorical_crossentropy",
                "model": "the suite's models (no Dropout)",
                "optimizer": f"keras.optimizers.{type(self.model.optimizer).__name__} at the recipe's lr "
                             f"{self.hyper.lr}; the example's is the string 'adam' (Adam at lr 0.001)",
                "validation": "no validation_split=0.1: fit trains on every training row, the harness "
                              "evaluates on its own test split after each epoch (not model.evaluate)",
                **MODE_DEVIATIONS[self.mode]}


# ---------------------------------------------------------------- the harness's Impl
class KerasImpl(ImplBase):
    """The Impl contract with the models above, compile and fit."""
    framework = "keras"

    def build(self, model: ModelSpec, hyper: Hyper, data, weights, device: str, mode: str,
              precision: str = "float32", profile: str = "equal") -> None:
        """Build, initialise and compile the model; keep the training arrays for fit."""
        self.configure(mode, precision, device, profile)
        self.spec = model
        keras.backend.clear_session()  # a blank Keras state: nothing left by an earlier model here
        if self.profile == "native":
            self.training = NativeFit(model, hyper, data, self.mode, device)
        else:
            self.training = EqualFit(written_model, model, hyper, data, weights, self.mode, self.precision, device)
        self.model = self.training.model
        self.samples_per_epoch = self.training.samples_per_epoch
        self.loss_every = self.training.loss_every
        self.input_clock = self.training.input_clock

    def run_epochs(self, epochs, order_for, hooks) -> None:
        """Native: one fit for all epochs (the example's); equal: the harness's loop, one fit per epoch."""
        self.training.run_epochs(self, epochs, order_for, hooks)

    def train_epoch(self, order: np.ndarray):
        return self.training.train_epoch(order)

    def sync(self) -> None:
        """Wait for the last update, by reading the last-updated variable back (a few bytes)."""
        ops.convert_to_numpy(self.model.trainable_variables[-1])

    def settings(self) -> dict[str, object]:
        """What the harness records beside its own settings, the deviations included."""
        return {"keras_backend": keras.backend.backend(), "jit_compile": self.model.jit_compile,
                "steps_per_execution": self.model.steps_per_execution, **self.training.settings()}

    def logits(self, x: np.ndarray) -> np.ndarray:
        """model.predict in batches of EVAL_BATCH, float32 (N, classes)."""
        out = self.model.predict(np.asarray(x, np.float32), batch_size=EVAL_BATCH, verbose=0)
        return np.asarray(out, np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Canonical names to float32 arrays; Keras's layouts are the canonical ones."""
        return {name: np.asarray(w, np.float32)
                for name, w in zip(self.spec.param_shapes(), self.model.get_weights())}
