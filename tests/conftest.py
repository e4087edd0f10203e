"""Shared fixtures: real MNIST loaded once per test session, framework impls by name."""
from __future__ import annotations

import importlib.util

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


FRAMEWORKS = _params((f,) for f in DEFAULT_FRAMEWORKS)
# (framework, mode) for every mode this CPU can run; GPU-only modes are tested on a GPU.
FRAMEWORK_MODES = _params((f, m) for f in DEFAULT_FRAMEWORKS for m in modes(f) if m not in GPU_ONLY_MODES)


@pytest.fixture(scope="session")
def mnist() -> data.Data:
    return data.load("mnist")


@pytest.fixture
def make_impl():
    """make_impl(framework) -> a fresh Impl instance."""
    return load_impl
