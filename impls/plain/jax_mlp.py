"""The MNIST MLP (784-784-16-10) in plain JAX (flax linen + optax), as a Flax user writes it,
without the harness.

    python -m impls.plain.jax_mlp ~/.cache/fwcompare/mnist.npz --mode scan --device cuda

The training set is put on the device once. Modes: step, one jitted train step per batch
(its row indices from the host); scan, the whole epoch as one jitted lax.scan over the
batches. flax's own initialisation, optax.adam(1e-3), jax's default precision (which the
environment may set: JAX_DEFAULT_MATMUL_PRECISION). Prints one JSON line (impls/plain/cli.py).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state

from impls.plain import cli


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(784)(x))
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(10)(x)


def apply_batch(state: train_state.TrainState, images, labels):
    """One Adam step: the new state and the batch's loss."""
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


@jax.jit
def train_step(state, x_train, y_train, batch):
    """Mode step: one step on the training rows `batch`."""
    return apply_batch(state, x_train[batch], y_train[batch])


@jax.jit
def train_epoch(state, x_train, y_train, batches):
    """Mode scan: every step of the epoch in one call, batches being (steps, batch_size) row indices."""
    return jax.lax.scan(lambda s, batch: apply_batch(s, x_train[batch], y_train[batch]), state, batches)


@jax.jit
def predict(state, images):
    return state.apply_fn({"params": state.params}, images).argmax(-1)


def main() -> None:
    args = cli.parse_args("jax", modes=("step", "scan"))
    try:
        device = jax.devices("gpu" if args.device == "cuda" else "cpu")[0]
    except RuntimeError:
        cli.fail(f"--device {args.device}, but jax sees only {jax.devices()}")
    x_train, y_train, x_test, y_test = cli.load_mnist(args.data, args.limit)
    x_train, y_train = jax.device_put((x_train, y_train), device)

    model = MLP()
    params = model.init(jax.random.key(args.seed), jnp.ones((1, 784)))["params"]
    state = jax.device_put(train_state.TrainState.create(apply_fn=model.apply, params=params,
                                                         tx=optax.adam(1e-3)), device)
    rng = np.random.default_rng(args.seed)

    epoch_s = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        batches = cli.shuffled_batches(rng, len(x_train), args.batch_size)
        if args.mode == "scan":
            state, _ = train_epoch(state, x_train, y_train, batches)
        else:
            for batch in batches:
                state, _ = train_step(state, x_train, y_train, batch)
        jax.block_until_ready(state)
        epoch_s.append(time.perf_counter() - start)

    accuracy = float(np.mean(np.asarray(predict(state, jax.device_put(x_test, device))) == y_test))
    cli.report("jax", args, epoch_s, batches.size, accuracy, cli.versions("jax", "jaxlib", "flax", "optax"))


if __name__ == "__main__":
    main()
