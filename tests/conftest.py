"""Shared fixtures: real MNIST loaded once per test session, framework impls by name."""
from __future__ import annotations

import importlib.util

import pytest

from harness import data
from harness.spec import DEFAULT_FRAMEWORKS, load_impl

# The Python package each framework needs; tests of a framework not installed are skipped,
# so each tox env runs the tests of its own framework.
FRAMEWORK_PACKAGES = {"torch": "torch", "keras": "keras", "jax": "flax"}


def installed(framework: str) -> bool:
    return importlib.util.find_spec(FRAMEWORK_PACKAGES[framework]) is not None


FRAMEWORKS = [pytest.param(f, marks=pytest.mark.skipif(not installed(f), reason=f"{f} not installed"))
              for f in DEFAULT_FRAMEWORKS]


@pytest.fixture(scope="session")
def mnist() -> data.Data:
    return data.load("mnist")


@pytest.fixture
def make_impl():
    """make_impl(framework) -> a fresh Impl instance."""
    return load_impl
