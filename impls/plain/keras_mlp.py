"""The MNIST MLP (784-784-16-10) in plain Keras 3, as a Keras user writes it, without the harness,
on whatever backend KERAS_BACKEND names.

    KERAS_BACKEND=jax python -m impls.plain.keras_mlp ~/.cache/fwcompare/mnist.npz --mode fit-jit --device cuda

Modes: fit, model.compile's defaults; fit-jit, jit_compile=True and 64 steps per execution
(the torch backend allows only 1). Keras's own initialisation, keras.optimizers.Adam(1e-3),
model.fit on the numpy arrays with shuffle=True, which keeps the last partial batch.
Prints one JSON line (impls/plain/cli.py).
"""
from __future__ import annotations

import time

import keras
from keras import layers

from impls.plain import cli


class EpochTimes(keras.callbacks.Callback):
    """Each epoch's wall time; fit has already read the epoch's logs back (a device sync) at its end."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def gpu_visible(backend: str) -> bool:
    """Whether Keras will train on a GPU: it takes one wherever the backend sees one."""
    if backend == "torch":  # Keras's device list has no torch implementation
        import torch

        return torch.cuda.is_available()
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except RuntimeError:  # the jax backend raises where it has no GPU platform
        return False


def main() -> None:
    args = cli.parse_args("keras", modes=("fit", "fit-jit"))
    backend = keras.backend.backend()
    # Keras places everything on a GPU where it sees one, so the environment decides the device
    if args.device == "cuda" and not gpu_visible(backend):
        cli.fail(f"--device cuda, but Keras on {backend} sees no GPU")
    if args.device == "cpu" and gpu_visible(backend):
        cli.fail(f"--device cpu, but Keras on {backend} sees a GPU and would train there; "
                 "hide it: CUDA_VISIBLE_DEVICES=")
    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test = cli.load_mnist(args.data, args.limit)

    model = keras.Sequential([
        keras.Input(shape=(784,)),
        layers.Dense(784, activation="relu"),
        layers.Dense(16, activation="relu"),
        layers.Dense(10),
    ])
    # fit-jit: XLA (torch.compile on torch), and callbacks and logs once per 64 steps (torch allows 1)
    options = {} if args.mode == "fit" else {"jit_compile": True,
                                              "steps_per_execution": 1 if backend == "torch" else 64}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **options)
    timer = EpochTimes()
    # verbose=0: stdout is for the JSON line alone
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=[timer])
    logits = model.predict(x_test, batch_size=2000, verbose=0)

    accuracy = float((logits.argmax(1) == y_test).mean())
    cli.report("keras", args, timer.seconds, len(x_train), accuracy, cli.versions("keras", backend),
               backend=backend)


if __name__ == "__main__":
    main()
