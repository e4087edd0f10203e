"""The MNIST MLP (784-784-16-10) trained as keras-io's examples/vision/mnist_convnet.py trains its
convnet, without the harness: the fit that profile native's Keras cell runs (impls/keras_impl.py),
written out, on whatever backend KERAS_BACKEND names.

    KERAS_BACKEND=jax python -m impls.plain.keras_example ~/.cache/fwcompare/mnist.npz --device cuda

The example's images ((28, 28, 1), float32 in [0, 1]) into a keras.Sequential with Keras's own
initialisation; compile with metrics=["accuracy"] and otherwise compile's defaults;
keras.optimizers.Adam(1e-3) (the example's "adam" is that); ONE model.fit on the numpy arrays
for all epochs, shuffle=True, the last partial batch kept, a callback timing each epoch; then
model.evaluate on the test set, as the example scores it. The last layer gives logits, trained
with SparseCategoricalCrossentropy(from_logits=True) on the integer labels (the example: a
softmax and one-hot labels); no Dropout and no validation_split. Prints one JSON line
(impls/plain/cli.py).
"""
from __future__ import annotations

import keras
from keras import layers

from impls.plain import cli
from impls.plain.keras_mlp import EpochTimes, gpu_visible

num_classes = 10
input_shape = (28, 28, 1)


def main() -> None:
    args = cli.parse_args("keras", modes=("example",), program="example")
    backend = keras.backend.backend()
    # Keras places everything on a GPU where it sees one, so the environment decides the device
    if args.device == "cuda" and not gpu_visible(backend):
        cli.fail(f"--device cuda, but Keras on {backend} sees no GPU")
    if args.device == "cpu" and gpu_visible(backend):
        cli.fail(f"--device cpu, but Keras on {backend} sees a GPU and would train there; "
                 "hide it: CUDA_VISIBLE_DEVICES=")
    keras.utils.set_random_seed(args.seed)  # Keras's own init and fit's shuffle draw from it

    # The data, split between train and test sets: images (28, 28, 1) in [0, 1]
    x_train, y_train, x_test, y_test = cli.load_mnist(args.data, args.limit)
    x_train, x_test = x_train.reshape(-1, *input_shape), x_test.reshape(-1, *input_shape)

    # Build the model
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(784, activation="relu"),
        layers.Dense(16, activation="relu"),
        layers.Dense(num_classes),
    ])

    # Train the model: one fit for every epoch
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.Adam(learning_rate=1e-3), metrics=["accuracy"])
    timer = EpochTimes()
    # verbose=0: stdout is for the JSON line alone
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=[timer])

    # Evaluate the trained model
    score = model.evaluate(x_test, y_test, verbose=0)
    cli.report("keras", args, timer.seconds, len(x_train), float(score[1]), cli.versions("keras", backend),
               backend=backend)


if __name__ == "__main__":
    main()
