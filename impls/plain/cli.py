"""What every plain loop shares that is not framework code: its command line, the MNIST file,
an epoch's shuffled batches and the one JSON line it prints. Imports no framework and no harness."""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys

import numpy as np


def parse_args(framework: str, modes: tuple[str, ...], program: str = "mlp") -> argparse.Namespace:
    """The options of the loop impls/plain/<framework>_<program>.py; its first mode is the default."""
    p = argparse.ArgumentParser(prog=f"python -m impls.plain.{framework}_{program}",
                                description=f"Train the MNIST MLP (784-784-16-10) in plain {framework}; "
                                            "print one JSON line of its timings and test accuracy.")
    p.add_argument("data", help="MNIST as a Keras-format .npz (x_train, y_train, x_test, y_test as uint8), "
                                "e.g. ~/.cache/fwcompare/mnist.npz")
    p.add_argument("--mode", choices=modes, default=modes[0], help=f"default {modes[0]}")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--epochs", type=int, default=5, help="default 5")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    p.add_argument("--limit", type=int, default=0, help="train on the first N training rows only (default all)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    args = p.parse_args()
    if args.batch_size < 1 or args.epochs < 1 or args.limit < 0:
        p.error("--batch-size and --epochs must be positive, --limit not negative")
    return args


def fail(message: str) -> None:
    """Refuse to run: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_npz(path: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) as the file stores them: uint8, images (N, 28, 28)."""
    with np.load(path) as f:
        x_train, y_train, x_test, y_test = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    return x_train, y_train, x_test, y_test


def load_mnist(path: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): images flattened to 784 float32 in [0, 1], labels int32."""
    x_train, y_train, x_test, y_test = read_npz(path, limit)

    def flat(x):
        return x.reshape(len(x), -1).astype(np.float32) / np.float32(255)

    return flat(x_train), y_train.astype(np.int32), flat(x_test), y_test.astype(np.int32)


def shuffled_batches(rng: np.random.Generator, rows: int, batch_size: int) -> np.ndarray:
    """An epoch's row indices, shuffled, shaped (steps, batch_size); the last partial batch dropped,
    so that a compiled step sees one shape."""
    steps = rows // batch_size
    return rng.permutation(rows)[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def versions(*modules: str) -> dict[str, str]:
    """Each module's __version__ (by import name: a wheel's name may differ, as tensorflow-cpu's does)."""
    return {name: importlib.import_module(name).__version__ for name in modules}


def report(framework: str, args: argparse.Namespace, epoch_s: list[float], samples_per_epoch: int,
           test_accuracy: float, package_versions: dict[str, str], **extra) -> None:
    """Print the loop's one JSON line; samples/s is the median over the epochs after the first."""
    steady = [samples_per_epoch / seconds for seconds in epoch_s[1:]]
    print(json.dumps({
        "framework": framework, **extra, "mode": args.mode, "batch_size": args.batch_size,
        "device": args.device, "epochs": args.epochs, "limit": args.limit, "epoch_s": epoch_s,
        "samples_per_epoch": samples_per_epoch,
        "train_samples_per_s_median": statistics.median(steady) if steady else None,
        "test_accuracy": test_accuracy, "versions": package_versions}))
