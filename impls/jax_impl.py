"""JAX: the models as Flax NNX modules, trained with optax, in two profiles.

- native: Flax's MNIST example (examples/mnist/train.py, and the NNX MNIST tutorial) as its
  users run it: flax's own initialisation, nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
  with optax's defaults, an @nnx.jit train_step that takes nnx.value_and_grad and updates the
  example's nnx.MultiMetric (accuracy and mean loss, read once an epoch), fed by Grain.
- equal: impls/jax_equal.py: these modules from the harness's canonical weights, split once
  (nnx.split) into a state pytree that pure jax.jit functions step on, the data on the device.

The input pipeline is Grain's, as Grain's JAX training tutorial writes it (MapDataset: seed,
shuffle, batch with drop_remainder, to_iter_dataset, jax.device_put), over the harness's
arrays in memory. The example's own tf.data (shuffle(1024), batch, prefetch) would bring
TensorFlow (1.3 GB, and Keras with it) into the jax environment; Grain brings 15 MB (grain,
array-record, cloudpickle, portpicker) and is JAX's own loader.

Flax's layouts are the canonical ones (Linear kernel (in, out), Conv HWIO, NHWC flattened as
(h, w, c)), so canonical weights cross by name as they are.
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.measure.contract import ImplBase, InputClock
from harness.plan.errors import HarnessError
from harness.plan.spec import EVAL_BATCH, Hyper, ModelSpec
from impls.jax_equal import EqualTraining
from impls.widths import widths


# ---------------------------------------------------------------- the models
# Layers are named canonically (dense1, conv1, ...). dtype and precision None keep flax's
# defaults (profile native); profile equal sets them for its precisions (jax_equal.LAYER_ARGS).
class Logistic(nnx.Module):
    """Flatten, then one linear layer: multinomial logistic regression."""

    def __init__(self, in_features: int = 784, num_classes: int = 10, use_bias: bool = True, *,
                 rngs: nnx.Rngs, dtype=None, precision=None):
        self.dense1 = nnx.Linear(in_features, num_classes, use_bias=use_bias, dtype=dtype, precision=precision,
                                 rngs=rngs)

    def __call__(self, x):
        return self.dense1(x.reshape(x.shape[0], -1))  # flatten


# mlp: begin
class MLP(nnx.Module):
    """784 -> 784 relu -> 16 relu -> 10."""

    def __init__(self, in_features: int = 784, hidden1: int = 784, hidden2: int = 16, num_classes: int = 10, *,
                 rngs: nnx.Rngs, dtype=None, precision=None):
        self.dense1 = nnx.Linear(in_features, hidden1, dtype=dtype, precision=precision, rngs=rngs)
        self.dense2 = nnx.Linear(hidden1, hidden2, dtype=dtype, precision=precision, rngs=rngs)
        self.dense3 = nnx.Linear(hidden2, num_classes, dtype=dtype, precision=precision, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)  # flatten
        x = nnx.relu(self.dense1(x))
        x = nnx.relu(self.dense2(x))
        return self.dense3(x)
# mlp: end


class CNN(nnx.Module):
    """Two 3x3 convolutions (4 and 8 filters), each with relu and 2x2 max-pooling, then linear."""

    def __init__(self, in_channels: int = 1, image_size: tuple[int, int] = (28, 28), filters1: int = 4,
                 filters2: int = 8, num_classes: int = 10, *, rngs: nnx.Rngs, dtype=None, precision=None):
        # padding SAME, stride 1: each convolution keeps the image size
        self.conv1 = nnx.Conv(in_channels, filters1, kernel_size=(3, 3), dtype=dtype, precision=precision, rngs=rngs)
        self.conv2 = nnx.Conv(filters1, filters2, kernel_size=(3, 3), dtype=dtype, precision=precision, rngs=rngs)
        height, width = image_size
        self.dense1 = nnx.Linear(filters2 * (height // 4) * (width // 4), num_classes, dtype=dtype,
                                 precision=precision, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        return self.dense1(x.reshape(x.shape[0], -1))  # flatten, NHWC rows as (h, w, c)


class SmallMLP(nnx.Module):
    """784 -> 30 relu -> 10: the small net of the 3-vs-7 and small-subset recipes."""

    def __init__(self, in_features: int = 784, hidden: int = 30, num_classes: int = 10, *,
                 rngs: nnx.Rngs, dtype=None, precision=None):
        self.dense1 = nnx.Linear(in_features, hidden, dtype=dtype, precision=precision, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, num_classes, dtype=dtype, precision=precision, rngs=rngs)

    def __call__(self, x):
        return self.dense2(nnx.relu(self.dense1(x.reshape(x.shape[0], -1))))


class LinearStack(nnx.Module):
    """Linear layers of the given widths with no activation between them (the mnist-study family)."""

    def __init__(self, in_features: int, widths: tuple[int, ...], num_classes: int = 10, *,
                 rngs: nnx.Rngs, dtype=None, precision=None):
        sizes = (in_features, *widths, num_classes)
        self.depth = len(sizes) - 1
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
            setattr(self, f"dense{i}", nnx.Linear(n_in, n_out, dtype=dtype, precision=precision, rngs=rngs))

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"dense{i}")(x)
        return x


def written_model(spec: ModelSpec, *, rngs: nnx.Rngs, **layer) -> nnx.Module:
    """The module written above for a model name, sized by the spec; layer: dtype, precision."""
    w = widths(spec)
    if spec.name.startswith("study"):
        return LinearStack(w.features, w.hidden, w.classes, rngs=rngs, **layer)
    return {"logistic": lambda: Logistic(w.features, w.classes, rngs=rngs, **layer),
            "toy25": lambda: Logistic(w.features, w.classes, use_bias=False, rngs=rngs, **layer),
            "mlp": lambda: MLP(w.features, *w.hidden, w.classes, rngs=rngs, **layer),
            "mlp30": lambda: SmallMLP(w.features, *w.hidden, w.classes, rngs=rngs, **layer),
            "cnn": lambda: CNN(w.channels, w.image_size, *w.filters, w.classes, rngs=rngs, **layer)}[spec.name]()


def weights_of(model: nnx.Module, names) -> dict[str, np.ndarray]:
    """Copies of the named parameters (dense1.kernel is model.dense1.kernel), float32 on the host."""
    out = {}
    for name in names:
        layer, param = name.split(".")
        out[name] = np.array(getattr(getattr(model, layer), param)[...], np.float32)
    return out


# ---------------------------------------------------------------- profile native: Flax's MNIST example
class InMemoryMNIST:
    """The harness's training arrays as a Grain data source: one {"image", "label"} record per index."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": self.images[index], "label": self.labels[index]}


def mnist_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Grain's pipeline: a global shuffle each epoch, whole batches only, epoch after epoch."""
    import grain  # profile native's package (the record's native_packages), as torchvision is torch's

    return (grain.MapDataset.source(InMemoryMNIST(images, labels))
            .seed(seed)
            .shuffle()  # anew each epoch: Grain folds the epoch into the seed
            .batch(batch_size, drop_remainder=True)  # one batch shape, so one compiled train_step
            .repeat())  # each epoch is batched on its own


def stock_optimizer(hyper: Hyper) -> optax.GradientTransformation:
    """optax.adam or optax.sgd with optax's defaults: only lr and SGD's momentum from the recipe."""
    if hyper.optimizer == "adam":
        return optax.adam(hyper.lr)
    return optax.sgd(hyper.lr, momentum=hyper.momentum)


def loss_fn(model: nnx.Module, batch):
    """Mean softmax cross-entropy of the batch, and its logits for the metrics."""
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch["label"]).mean()
    return loss, logits


@nnx.jit
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, batch):
    """Train for a single step."""
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])  # in place
    optimizer.update(model, grads)  # in place


@nnx.jit
def pred_step(model: nnx.Module, images):
    """float32 logits of one batch: the harness evaluates them (the example's eval_step keeps metrics)."""
    return model(images).astype(jnp.float32)


class NativeTraining:
    """Profile native: the example's model, optimizer, metrics and train_step, on Grain's batches."""
    # The example's MultiMetric keeps the epoch's mean loss, read once when the epoch ends.
    loss_every = 0

    def __init__(self, spec: ModelSpec, hyper: Hyper, data, device: jax.Device):
        self.hyper, self.device = hyper, device
        self.model = written_model(spec, rngs=nnx.Rngs(hyper.seed))
        self.optimizer = nnx.Optimizer(self.model, stock_optimizer(hyper), wrt=nnx.Param)
        self.metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
        self.batches = mnist_batches(data.x_train, data.y_train, hyper.batch_size, hyper.seed)
        self.steps_per_epoch = len(data.x_train) // hyper.batch_size
        self.samples_per_epoch = self.steps_per_epoch * hyper.batch_size  # the incomplete batch is dropped
        self.epochs_begun = 0
        self.input_clock = InputClock("Grain's next() (its reader threads prefetch in the background) "
                                      "and jax.device_put of each batch")

    def train_epoch(self, order: np.ndarray) -> list:
        """One epoch of Grain's batches (len(order) of them), one train_step each; the epoch's mean loss."""
        start = self.epochs_begun * self.steps_per_epoch
        self.epochs_begun += 1
        epoch = self.batches[start:start + len(order)].to_iter_dataset()
        for batch in self.input_clock.batches(epoch):
            with self.input_clock.fetching():
                batch = jax.device_put(batch, self.device)
            train_step(self.model, self.optimizer, self.metrics, batch)
        train_metrics = self.metrics.compute()
        # As in the example: reset leaves the metrics' arrays uncommitted to a device, which
        # jit keys on, so the second epoch compiles train_step once more (0.6 s here).
        self.metrics.reset()
        return [train_metrics["loss"]]

    def sync(self) -> None:
        jax.block_until_ready(nnx.state(self.optimizer))

    def predict(self, images):
        return pred_step(self.model, images)

    def settings(self) -> dict:
        import grain

        signature = inspect.signature(getattr(optax, self.hyper.optimizer)).parameters
        defaults = {name: p.default for name, p in signature.items()
                    if name not in ("learning_rate", "momentum") and p.default is not p.empty}
        options = grain.ReadOptions()
        return {"optimizer": f"optax.{self.hyper.optimizer} in nnx.Optimizer(wrt=nnx.Param), "
                             f"optax's defaults: {defaults}",
                "input_pipeline": f"Grain {grain.__version__}: MapDataset over the arrays in memory, seed, "
                                  f"shuffle (global, anew each epoch), batch({self.hyper.batch_size}, "
                                  "drop_remainder=True), to_iter_dataset() with default ReadOptions "
                                  f"({options.num_threads} reader threads, {options.prefetch_buffer_size} "
                                  "elements prefetched); jax.device_put of each batch",
                "deviations": {
                    "data_source": "the harness's MNIST arrays in memory (float32 in [0, 1]) as a Grain data "
                                   "source; the example downloads MNIST with tfds and scales it by 1/255 in a map",
                    "input_pipeline": "Grain's MapDataset pipeline (global shuffle), not the example's tf.data "
                                      "(shuffle(1024), batch, prefetch(1)), which needs TensorFlow",
                    "model": "the suite's models (no dropout or batch norm, so no rngs and no train/eval views)",
                    "optimizer": f"the recipe's optax.{self.hyper.optimizer} at lr {self.hyper.lr}, "
                                 "not the example's optax.sgd(0.1, momentum 0.9)",
                    "evaluation": "the harness evaluates the logits of pred_step after each epoch, "
                                  "not the example's eval_step metrics"}}


# ---------------------------------------------------------------- the harness's Impl
DEVICE_KINDS = {"cpu": "cpu", "cuda": "gpu"}


def select_device(name: str) -> jax.Device:
    """The first jax device of the requested kind, or a HarnessError saying what exists."""
    try:
        return jax.devices(DEVICE_KINDS[name])[0]
    except RuntimeError:
        raise HarnessError(f"jax sees no {name} device here (it has {jax.devices()}); "
                           "install jax[cuda] or run with device cpu") from None


class JaxImpl(ImplBase):
    """Flax NNX + optax: the example's loop (native), or one jitted call per step or epoch (equal)."""
    framework = "jax"

    def build(self, model, hyper, data, weights, device, mode, precision="float32", profile="equal") -> None:
        """The profile's training (model, optimizer, data) on the device."""
        self.configure(mode, precision, device, profile)
        self.spec, self.device = model, select_device(device)
        if self.profile == "native":
            self.training = NativeTraining(model, hyper, data, self.device)
        else:
            self.training = EqualTraining(written_model, model, hyper, data, weights, self.device, self.precision,
                                          self.mode)
        self.samples_per_epoch = self.training.samples_per_epoch
        self.loss_every = self.training.loss_every
        self.input_clock = self.training.input_clock

    def train_epoch(self, order: np.ndarray):
        return self.training.train_epoch(order)

    def sync(self) -> None:
        self.training.sync()

    def peak_device_memory_mb(self) -> float | None:
        """XLA's allocator peak on a GPU (memory_stats is None on the CPU)."""
        stats = self.device.memory_stats() if self.device.platform == "gpu" else None
        return stats["peak_bytes_in_use"] / 2**20 if stats else None

    def device_name(self) -> str | None:
        return self.device.device_kind if self.device.platform == "gpu" else None

    def settings(self) -> dict:
        """The optimizer, the input pipeline and what departs from the code it is measured against."""
        return self.training.settings()

    def logits(self, x: np.ndarray) -> np.ndarray:
        # The tail is padded to a whole batch: one compiled shape per call, while a batch-1
        # latency probe still runs at batch 1, not EVAL_BATCH.
        batch = min(EVAL_BATCH, len(x))
        padded = np.pad(np.asarray(x, np.float32), ((0, -len(x) % batch),) + ((0, 0),) * (x.ndim - 1))
        # All batches are dispatched before any is read back, so the device never waits on the host.
        out = [self.training.predict(jax.device_put(padded[i:i + batch], self.device))
               for i in range(0, len(padded), batch)]
        return np.concatenate([np.asarray(o) for o in out])[:len(x)]

    def get_weights(self) -> dict[str, np.ndarray]:
        return weights_of(self.training.model, self.spec.param_shapes())
