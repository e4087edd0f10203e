"""What the suite knows about each framework: one framework-free record per framework, and the
registry that every other module asks.

A framework is its record (here), its impl (impls/<name>_impl.py) and its tox env. The runner
reads the record to expand a matrix, to skip a framework that is not installed, to record
versions and to set a cell's environment; the report to name a framework's idiomatic mode;
the tests to know which tests apply. Importing this module imports no framework.

More frameworks can be plugged in from outside the package: $FWCOMPARE_FRAMEWORKS names
records ("module:ATTRIBUTE,..."), each a Framework (the tests add a toy fourth framework
this way), and $FWCOMPARE_IMPLS names bare impls ("name=module:Class,...": one mode,
profile equal only; the tests' misbehaving fakes).
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata

from harness.plan.errors import HarnessError
from harness.plan.spec import PROFILES

RECORDS_ENV = "FWCOMPARE_FRAMEWORKS"
IMPLS_ENV = "FWCOMPARE_IMPLS"

# The environment a GPU cell needs for its precision, for every library that reads one
# (cuBLAS and cuDNN under any framework, XLA under jax and Keras on jax, cuBLAS's TF32
# override under torch and Keras on torch). Set for the whole process, before any import.
GPU_PRECISION_ENV: dict[str, dict[str, str | None]] = {
    # True float32 (and, under bf16, for whatever stays float32).
    "float32": {"NVIDIA_TF32_OVERRIDE": "0", "JAX_DEFAULT_MATMUL_PRECISION": "highest"},
    "bf16": {"NVIDIA_TF32_OVERRIDE": "0", "JAX_DEFAULT_MATMUL_PRECISION": "highest"},
    # TF32 for every library, also where it is off by default (cuBLAS under torch).
    "tf32": {"NVIDIA_TF32_OVERRIDE": None, "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1",
             "JAX_DEFAULT_MATMUL_PRECISION": "tensorfloat32"},
    # The framework's own defaults: nothing is overridden.
    "default": {"NVIDIA_TF32_OVERRIDE": None},
}

# What each library reads from the environment, set before it is imported. "{threads}" is the
# cell's thread count. A package that a cell imports brings its variables, so Keras on jax
# gets jax's.
PACKAGE_ENV: dict[str, dict[str, str]] = {
    "jax": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},  # allocate as needed, like torch
    "tensorflow": {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
                   "TF_NUM_INTRAOP_THREADS": "{threads}", "TF_NUM_INTEROP_THREADS": "1"},
}
# Import names whose distribution on PyPI is named otherwise, tried in order.
DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu")}


@dataclass(frozen=True)
class Framework:
    """One framework: where its impl lives and what its cells need."""
    name: str
    impl: str  # "module:Class", imported only inside a cell's process
    packages: tuple[str, ...]  # import names a cell needs; their versions are recorded
    modes: tuple[str, ...]  # the first is the idiomatic one (the default), the rest fast paths
    native_packages: tuple[str, ...] = ()  # more that profile native needs (its input pipeline)
    # Modes with a native form: what the framework's users write. The others exist only in
    # profile equal (a CUDA graph of 16 steps or a lax.scan epoch is not how users write it).
    native_modes: tuple[str, ...] = ()
    gpu_only_modes: tuple[str, ...] = ()
    profiles: tuple[str, ...] = PROFILES
    backends: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Keras: backend -> its packages
    backend_env: str | None = None  # the variable its impl reads the backend from; the first backend by default
    in_default_matrix: bool = True
    has_parity_tests: bool = True  # tests/test_parity.py and tests/test_models.py cover it
    # Its plain reference-style loops (impls/plain/, harness.run.plain_loops): each loop mode, and
    # the suite cell set beside it: a mode of profile equal, or (mode, profile).
    plain_loop_modes: dict[str, str | tuple[str, str]] = field(default_factory=dict)

    @property
    def idiomatic_mode(self) -> str:
        """The code its users write: its first mode."""
        return self.modes[0]

    def check_mode(self, mode: str | None) -> str:
        """The mode a cell runs: the idiomatic one for None, a HarnessError listing the valid ones if unknown."""
        if mode is None:
            return self.idiomatic_mode
        if mode not in self.modes:
            raise HarnessError(f"{self.name} has no mode {mode!r}; valid modes: {', '.join(self.modes)}")
        return mode

    def needs(self, backend: str | None, profile: str = "equal") -> tuple[str, ...]:
        """The packages a cell on this backend and profile imports."""
        return (self.packages + (self.backends.get(backend, ()) if backend else ())
                + (self.native_packages if profile == "native" else ()))

    def default_backend(self) -> str | None:
        """The backend a cell runs on unless told: $backend_env, else the first (None without backends)."""
        if not self.backends:
            return None
        return os.environ.get(self.backend_env or "") or next(iter(self.backends))

    def tox_env(self, backend: str | None) -> str:
        """The tox env that installs what a cell of this framework (and backend) needs: the first
        backend's is the framework's own env (keras), the others have their own (keras-jax)."""
        return self.name if backend in (None, next(iter(self.backends), None)) else f"{self.name}-{backend}"

    def label(self, backend: str | None) -> str:
        """'torch', or 'keras[jax]' for a Keras backend."""
        return f"{self.name}[{backend}]" if backend else self.name

    def cell_env(self, backend: str | None, device: str, precision: str, threads: int,
                 profile: str = "equal") -> dict[str, str | None]:
        """Environment variables for a cell (None: remove the variable)."""
        env: dict[str, str | None] = {}
        for package in self.needs(backend, profile):
            env.update({k: v.format(threads=threads) for k, v in PACKAGE_ENV.get(package, {}).items()})
        if backend and self.backend_env:
            env[self.backend_env] = backend
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU cell must not touch a GPU, even if one is there
        else:
            env.update(GPU_PRECISION_ENV[precision])
        return env

    def versions(self, backend: str | None, profile: str = "equal") -> dict[str, str]:
        """Installed versions of the packages a cell imports ("not installed" where absent)."""
        out = {}
        for name in self.needs(backend, profile):
            out[name] = "not installed"
            for dist in DISTRIBUTIONS.get(name, (name,)):
                try:
                    out[name] = metadata.version(dist)
                    break
                except metadata.PackageNotFoundError:
                    pass
        return out


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in [
    Framework("torch", "impls.torch_impl:TorchImpl", ("torch",), modes=("eager", "compile", "cudagraph"),
              native_packages=("torchvision",), native_modes=("eager", "compile"), gpu_only_modes=("cudagraph",),
              plain_loop_modes={"eager": "eager", "graph": "cudagraph", "example": ("eager", "native")}),
    Framework("keras", "impls.keras_impl:KerasImpl", ("keras",), modes=("fit", "fit-jit"),
              native_modes=("fit", "fit-jit"), backend_env="KERAS_BACKEND",
              backends={"tensorflow": ("tensorflow",), "jax": ("jax",), "torch": ("torch",)},
              plain_loop_modes={"fit": "fit", "fit-jit": "fit-jit", "example": ("fit", "native")}),
    Framework("jax", "impls.jax_impl:JaxImpl", ("jax", "flax", "optax"), modes=("step", "scan"),
              native_packages=("grain",), native_modes=("step",),
              plain_loop_modes={"step": "step", "scan": "scan", "example": ("step", "native")}),
    # The float64 oracle: runs only when asked for, and only as profile equal.
    Framework("numpy", "impls.numpy_impl:NumpyImpl", ("numpy",), modes=("reference",),
              profiles=("equal",), in_default_matrix=False, has_parity_tests=False),
]}


def _plugged_in() -> dict[str, Framework]:
    """Records and bare impls named in the environment (see the module docstring)."""
    out = {}
    for target in filter(None, os.environ.get(RECORDS_ENV, "").split(",")):
        module, _, attribute = target.strip().partition(":")
        try:
            record = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise HarnessError(f"{RECORDS_ENV}: {target!r} is no importable module:ATTRIBUTE ({exc})") from None
        out[record.name] = record
    for item in filter(None, os.environ.get(IMPLS_ENV, "").split(",")):
        name, _, target = item.partition("=")
        if ":" not in target:
            raise HarnessError(f"{IMPLS_ENV}: {item!r} is not name=module:Class")
        out[name.strip()] = Framework(name.strip(), target.strip(), (), modes=("default",), profiles=("equal",),
                                      in_default_matrix=False, has_parity_tests=False)
    return out


def frameworks() -> dict[str, Framework]:
    """Every framework's record: the suite's own, then any plugged in."""
    return {**FRAMEWORKS, **_plugged_in()}


def framework(name: str) -> Framework:
    """A framework's record, or a HarnessError listing the valid names."""
    registry = frameworks()
    if name not in registry:
        raise HarnessError(f"unknown framework {name!r}; valid frameworks: {', '.join(registry)}")
    return registry[name]


def make_envs_command(envs) -> str:
    """The command that makes these tox environments (each once, in order) without running their tests."""
    return f"tox -e {','.join(dict.fromkeys(envs))} --notest"


def default_frameworks() -> tuple[str, ...]:
    """What a matrix runs when no --framework is given."""
    return tuple(name for name, record in frameworks().items() if record.in_default_matrix)


def default_backends() -> list[str]:
    """The backend each framework with backends runs on unless told (Keras: $KERAS_BACKEND, else TensorFlow)."""
    return list(dict.fromkeys(r.default_backend() for r in frameworks().values() if r.backends))


def load_impl(name: str):
    """Import and instantiate a framework's Impl; a one-line error if it is not installed."""
    record = framework(name)
    module_name, cls_name = record.impl.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarnessError(
            f"framework {name!r} is not installed here ({exc}); "
            f"run it in its tox env (tox -e {record.tox_env(None)}) or pip install -e '.[{name}]'"
        ) from None
    return getattr(module, cls_name)()
