"""Shared fixtures: real MNIST loaded once per test session, framework impls by name."""
from __future__ import annotations

import importlib.util
import os

import pytest

from harness import data
from harness.plan.frameworks import framework, frameworks, load_impl

# the report's fixtures (full, cpu_tables, gpu_tables), for tests/test_report*.py
pytest_plugins = ["tests.report_fixtures"]

def installed(name: str) -> bool:
    """Whether a framework's packages are here: tests of one not installed are skipped, so each
    tox env runs the tests of its own framework."""
    return all(importlib.util.find_spec(p) is not None for p in framework(name).packages)


def _params(pairs):
    return [pytest.param(*p, marks=pytest.mark.skipif(not installed(p[0]), reason=f"{p[0]} not installed"),
                         id="-".join(p)) for p in pairs]


# Where the framework tests run: cpu (CI), or cuda on a GPU machine, where the GPU-only
# modes and precisions are tested too. Keras takes its device from CUDA_VISIBLE_DEVICES,
# and on a GPU its float32 from NVIDIA_TF32_OVERRIDE=0 / JAX_DEFAULT_MATMUL_PRECISION=highest
# (harness.run.launch.cell_env sets them for every run; set them for a GPU test run).
DEVICE = os.environ.get("FWCOMPARE_TEST_DEVICE", "cpu")
ON_GPU = DEVICE != "cpu"

# The frameworks the parity and model tests hold to the oracle: every one the registry says has them.
PARITY_FRAMEWORKS = [name for name, record in frameworks().items() if record.has_parity_tests]
FRAMEWORKS = _params((f,) for f in PARITY_FRAMEWORKS)
# The libraries of every framework in the registry, which the harness itself never imports.
FRAMEWORK_LIBRARIES = sorted({p for r in frameworks().values() for p in (*r.packages, *r.native_packages,
                                                                          *(q for b in r.backends.values() for q in b))}
                             - {"numpy"})
# (framework, mode) for every mode this device can run.
FRAMEWORK_MODES = _params((f, m) for f in PARITY_FRAMEWORKS for m in framework(f).modes
                          if ON_GPU or m not in framework(f).gpu_only_modes)


@pytest.fixture(scope="session")
def mnist() -> data.Data:
    return data.load("mnist")


@pytest.fixture
def make_impl():
    """make_impl(framework) -> a fresh Impl instance."""
    return load_impl


# What the Ray executor's workers must get from the driver (its runtime_env), not from the
# process that started Ray.
RAY_ENV_VARS = ("FWCOMPARE_IMPLS", "FWCOMPARE_TEST_PID_DIR", "FWCOMPARE_TEST_EPOCH_S", "FWCOMPARE_TEST_FAIL")


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray instance, CPU only with 2 CPUs, for the tests' drivers to join; shut down after."""
    ray = pytest.importorskip("ray")
    assert not any(name in os.environ for name in RAY_ENV_VARS)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
