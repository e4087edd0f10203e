"""Datasets: the real MNIST with its official counts, checksummed caches, subsets, clear errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import data
from harness.data import formats
from harness.measure import protocol
from harness.plan.spec import DataSpec
from tests.conftest import FRAMEWORK_LIBRARIES

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
ROOT = Path(__file__).resolve().parents[1]


def test_mnist_has_official_shapes_dtypes_and_class_counts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int32
    assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN
    assert np.bincount(mnist.y_test).tolist() == MNIST_TEST


def test_dataset_is_loaded_once_per_process():
    assert data.load("mnist") is data.load(DataSpec("mnist"))


def test_tiny5x5_is_seed_000s_ten_digits():
    tiny = data.load("tiny5x5")
    assert tiny.x_train.shape == (10, 5, 5, 1) and tiny.y_train.tolist() == list(range(10))
    one = tiny.x_train[1, :, :, 0]
    assert one.tolist() == [[0, 0, 0, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0],
                            [0, 0, 0, 1, 0], [0, 0, 1, 1, 1]]


def test_fashion_comes_from_debian_package():
    if not data.FASHION_SYSTEM_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed (.ci/run installs it)")
    fashion = data.load("fashion")
    assert fashion.x_train.shape == (60000, 28, 28, 1)
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10


def test_subsets_follow_the_seeds(mnist):
    first = data.load(DataSpec("mnist", train_rows=2000, val_rows=500))  # seed 004
    assert len(first.x_train) == 2000 and len(first.x_val) == 500
    np.testing.assert_array_equal(first.x_val, mnist.x_train[2000:2500])
    pair = data.load(DataSpec("mnist", classes=(3, 7)))  # seed 003
    assert pair.num_classes == 2 and sorted(set(pair.y_train.tolist())) == [0, 1]
    assert np.bincount(pair.y_test).tolist() == [MNIST_TEST[3], MNIST_TEST[7]]
    split = data.load(DataSpec("mnist", test_val=2000))  # seed 002
    assert len(split.x_val) == 2000 and len(split.x_test) == 8000
    # stratified: each class's share of the validation set is within one row of its quota
    quota = np.array(MNIST_TEST) * 2000 / 10000
    assert np.all(np.abs(np.bincount(split.y_val) - quota) < 1)


def test_batch_orders_are_seeded_permutations_with_the_last_partial_batch_dropped():
    a = protocol.batch_order(1000, 32, seed=1, epoch=0)
    assert a.shape == (31, 32) and len(set(a.ravel().tolist())) == 31 * 32
    np.testing.assert_array_equal(a, protocol.batch_order(1000, 32, seed=1, epoch=0))
    assert not np.array_equal(a, protocol.batch_order(1000, 32, seed=2, epoch=0))
    assert not np.array_equal(a, protocol.batch_order(1000, 32, seed=1, epoch=1))


# ---------------------------------------------------------------- the checksummed cache
@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty suite cache and a HOME without user caches; load_raw's memo cleared around it."""
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    data.load_raw.cache_clear()
    yield tmp_path
    data.load_raw.cache_clear()


def damage(path: Path, how: str) -> None:
    blob = bytearray(path.read_bytes())
    if how == "truncated":
        blob = blob[: len(blob) // 2]
    else:
        blob[len(blob) // 2] ^= 0x01  # one bit in the middle of the pixel data
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("how", ["truncated", "byte flipped"])
def test_damaged_cache_is_rejected_and_rebuilt_never_loaded(isolated_cache, how, capsys):
    raw = data.load_raw("mnist")  # the real cache, from before isolation... or a rebuild
    good = formats.Raw(raw.x_train, raw.y_train, raw.x_test, raw.y_test, "test fixture")
    cached = data.write_cache("mnist", good)
    # a user's Keras cache is the source the rebuild must come from
    keras_npz = isolated_cache / "home/.keras/datasets/mnist.npz"
    keras_npz.parent.mkdir(parents=True)
    np.savez(keras_npz, x_train=raw.x_train, y_train=raw.y_train, x_test=raw.x_test, y_test=raw.y_test)
    damage(cached, how)
    data.load_raw.cache_clear()
    rebuilt = data.load_raw("mnist")
    assert "fails its SHA-256 check" in capsys.readouterr().err
    assert rebuilt.source == str(keras_npz)
    np.testing.assert_array_equal(rebuilt.x_train, raw.x_train)
    assert data.read_cache("mnist") is not None  # the rebuilt cache passes its check


def test_cache_is_written_atomically_with_its_checksum(isolated_cache):
    raw = data.load_raw("tiny5x5")
    path = data.write_cache("tiny", raw)
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.npz", "tiny.npz.sha256"]
    assert path.with_suffix(".npz.sha256").read_text().split()[0] == formats.sha256_file(path)


def test_mnist_pickle_with_wrong_checksum_is_never_unpickled():
    with pytest.raises(formats.DataError, match="refusing to unpickle"):
        formats.read_mnist_pickle(b"not the pickle", "test")


# ---------------------------------------------------------------- errors on the command line
def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.data", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **(env or {})})


def bad_inputs(tmp: Path):
    (tmp / "empty").mkdir()
    (tmp / "notes.npz").write_text("this is not an npz")
    (tmp / "idx").mkdir()
    for stem in formats.IDX_NAMES.values():
        (tmp / "idx" / stem).write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x05")  # header only
    return {
        "unknown dataset": (["info", "cifar"], {}, "valid datasets: mnist, fashion, tiny5x5"),
        "missing path": (["info", "--path", str(tmp / "nowhere")], {}, "does not exist"),
        "missing env path": (["info"], {"FWCOMPARE_MNIST": str(tmp / "nowhere")}, "does not exist"),
        "wrong format": (["info", "--path", str(tmp / "notes.npz")], {}, "not a readable npz"),
        "empty directory": (["info", "--path", str(tmp / "empty")], {}, "empty directory"),
        "truncated idx": (["info", "--path", str(tmp / "idx")], {}, "truncated"),
    }


@pytest.mark.parametrize("case", ["unknown dataset", "missing path", "missing env path",
                                  "wrong format", "empty directory", "truncated idx"])
def test_bad_input_gives_one_line_error_naming_the_fix(tmp_path, case):
    args, env, expected = bad_inputs(tmp_path)[case]
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert expected in lines[0]
    if case != "unknown dataset":
        assert "Fix:" in lines[0]


def test_info_runs_without_any_framework_imported():
    code = ("import sys, harness.data, harness.plan.spec, harness.measure.protocol, harness.measure.reference; "
            f"print(sorted(set({FRAMEWORK_LIBRARIES!r}) & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True, capture_output=True)
    assert proc.stdout.strip() == "[]", proc.stderr
