"""The MNIST MLP (784-784-16-10) trained as Flax's own MNIST example (Flax NNX) trains its CNN,
without the harness: the loop that profile native's jax cell runs (impls/jax_impl.py), written out.

    python -m impls.plain.jax_example ~/.cache/fwcompare/mnist.npz --device cuda

An nnx.Module with flax's own initialisation; nnx.Optimizer(model, optax.adam(1e-3),
wrt=nnx.Param) in place of the example's optimizer; an @nnx.jit train_step that takes
nnx.value_and_grad of the loss and updates the example's nnx.MultiMetric (accuracy and mean
loss, computed and reset once an epoch) in place; fed by Grain as JAX's training tutorial
writes it (the example's tf.data would need TensorFlow): a MapDataset over the arrays in
memory, seeded, shuffled anew each epoch, batched with drop_remainder, each epoch's batches
through to_iter_dataset and jax.device_put. The test set through the example's eval_step.
Prints one JSON line (impls/plain/cli.py).
"""
from __future__ import annotations

import time

import grain
import jax
import numpy as np
import optax
from flax import nnx

from impls.plain import cli

TEST_BATCH_SIZE = 1000


class MLP(nnx.Module):
    """784 -> 784 relu -> 16 relu -> 10 logits."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(784, 784, rngs=rngs)
        self.linear2 = nnx.Linear(784, 16, rngs=rngs)
        self.linear3 = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)  # flatten
        x = nnx.relu(self.linear1(x))
        x = nnx.relu(self.linear2(x))
        return self.linear3(x)


class InMemoryMNIST:
    """The arrays as a Grain data source: one {"image", "label"} record per index."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": self.images[index], "label": self.labels[index]}


def loss_fn(model: MLP, batch):
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch["label"]).mean()
    return loss, logits


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, batch):
    """Train for a single step."""
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])  # in place
    optimizer.update(model, grads)  # in place


@nnx.jit
def eval_step(model: MLP, metrics: nnx.MultiMetric, batch):
    loss, logits = loss_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])  # in place


def main() -> None:
    args = cli.parse_args("jax", modes=("example",), program="example")
    try:
        device = jax.devices("gpu" if args.device == "cuda" else "cpu")[0]
    except RuntimeError:
        cli.fail(f"--device {args.device}, but jax sees only {jax.devices()}")
    x_train, y_train, x_test, y_test = cli.load_mnist(args.data, args.limit)
    # the example's images: (28, 28, 1), float32 in [0, 1]
    x_train, x_test = x_train.reshape(-1, 28, 28, 1), x_test.reshape(-1, 28, 28, 1)

    train_ds = (grain.MapDataset.source(InMemoryMNIST(x_train, y_train))
                .seed(args.seed)
                .shuffle()  # anew each epoch: Grain folds the epoch into the seed
                .batch(args.batch_size, drop_remainder=True)  # one batch shape, so one compiled train_step
                .repeat())  # each epoch is batched on its own
    test_ds = grain.MapDataset.source(InMemoryMNIST(x_test, y_test)).batch(TEST_BATCH_SIZE)
    steps_per_epoch = len(x_train) // args.batch_size

    model = MLP(rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))

    epoch_s, history = [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        for batch in train_ds[epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch].to_iter_dataset():
            train_step(model, optimizer, metrics, jax.device_put(batch, device))
        train_metrics = metrics.compute()  # the example logs the epoch's accuracy and loss here
        metrics.reset()
        jax.block_until_ready(nnx.state(optimizer))
        epoch_s.append(time.perf_counter() - start)
        history.append(float(train_metrics["loss"]))

    for batch in test_ds.to_iter_dataset():
        eval_step(model, metrics, jax.device_put(batch, device))
    accuracy = float(metrics.compute()["accuracy"])
    cli.report("jax", args, epoch_s, steps_per_epoch * args.batch_size, accuracy,
               cli.versions("jax", "jaxlib", "flax", "optax", "grain"))


if __name__ == "__main__":
    main()
