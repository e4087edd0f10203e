"""What the suite knows about each framework: one framework-free record per framework.

The runner reads these to expand a matrix, to skip a framework that is not installed, to
record versions and to set a cell's environment; an impl's base class reads them to check
its mode, precision, device and profile once. Importing this module imports no framework.
Adding a framework: its impls/<name>_impl.py, one record here, and its tox env.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.spec import PROFILES

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
    in_default_matrix: bool = True
    about: str = ""

    @property
    def idiomatic_mode(self) -> str:
        return self.modes[0]

    def needs(self, backend: str | None, profile: str = "equal") -> tuple[str, ...]:
        """The packages a cell on this backend and profile imports."""
        return (self.packages + (self.backends.get(backend, ()) if backend else ())
                + (self.native_packages if profile == "native" else ()))

    def tox_env(self, backend: str | None) -> str:
        """The tox env that installs what a cell of this framework (and backend) needs."""
        return self.name if backend in (None, "tensorflow") else f"{self.name}-{backend}"

    def cell_env(self, backend: str | None, device: str, precision: str) -> dict[str, str | None]:
        """Environment variables for a cell (None: remove the variable)."""
        env: dict[str, str | None] = {}
        if backend:
            env["KERAS_BACKEND"] = backend
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU cell must not touch a GPU, even if one is there
        else:
            env.update(GPU_PRECISION_ENV[precision])
        return env


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in [
    Framework("torch", "impls.torch_impl:TorchImpl", ("torch",), modes=("eager", "compile", "cudagraph"),
              native_packages=("torchvision",), native_modes=("eager", "compile"), gpu_only_modes=("cudagraph",),
              about="eager: fused Adam/SGD; compile: torch.compile over the whole step; "
                    "cudagraph: 16 whole steps per CUDA-graph replay (GPU only)"),
    Framework("keras", "impls.keras_impl:KerasImpl", ("keras",), modes=("fit", "fit-jit"), native_modes=("fit", "fit-jit"),
              backends={"tensorflow": ("tensorflow",), "jax": ("jax",), "torch": ("torch",)},
              about="fit: compile's defaults; fit-jit: jit_compile=True, several steps per execution"),
    Framework("jax", "impls.jax_impl:JaxImpl", ("jax", "flax", "optax"), modes=("step", "scan"), native_modes=("step",),
              about="step: one jitted call per step; scan: the whole epoch as one jitted lax.scan"),
    # The float64 oracle: runs only when asked for, and only as profile equal.
    Framework("numpy", "impls.numpy_impl:NumpyImpl", ("numpy",), modes=("reference",),
              profiles=("equal",), in_default_matrix=False,
              about="the float64 numpy reference behind the parity tests"),
]}
