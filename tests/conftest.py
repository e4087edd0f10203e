"""Shared fixtures: real MNIST loaded once per test session, framework impls by name."""
from __future__ import annotations

import importlib.util
import os

import pytest

from harness import data
from harness.spec import DEFAULT_FRAMEWORKS, GPU_ONLY_MODES, load_impl, modes

# The Python package each framework needs; tests of a framework not installed are skipped,
# so each tox env runs the tests of its own framework.
FRAMEWORK_PACKAGES = {"torch": "torch", "keras": "keras", "jax": "flax"}


def installed(framework: str) -> bool:
    return importlib.util.find_spec(FRAMEWORK_PACKAGES[framework]) is not None


def _params(pairs):
    return [pytest.param(*p, marks=pytest.mark.skipif(not installed(p[0]), reason=f"{p[0]} not installed"),
                         id="-".join(p)) for p in pairs]


# Where the framework tests run: cpu (CI), or cuda on a GPU machine, where the GPU-only
# modes and precisions are tested too. Keras takes its device from CUDA_VISIBLE_DEVICES,
# and on a GPU its float32 from NVIDIA_TF32_OVERRIDE=0 / JAX_DEFAULT_MATMUL_PRECISION=highest
# (harness.cell.cell_env sets them for every run; set them for a GPU test run).
DEVICE = os.environ.get("FWCOMPARE_TEST_DEVICE", "cpu")
ON_GPU = DEVICE != "cpu"

FRAMEWORKS = _params((f,) for f in DEFAULT_FRAMEWORKS)
# (framework, mode) for every mode this device can run.
FRAMEWORK_MODES = _params((f, m) for f in DEFAULT_FRAMEWORKS for m in modes(f)
                          if ON_GPU or m not in GPU_ONLY_MODES)


@pytest.fixture(scope="session")
def mnist() -> data.Data:
    return data.load("mnist")


@pytest.fixture
def make_impl():
    """make_impl(framework) -> a fresh Impl instance."""
    return load_impl
