"""One cell of the matrix, run in its own process: train, measure, write one result file.

A cell is (framework, backend, model, mode, batch size, seed, dataset, precision, device,
recipe). harness.run starts `python -m harness.run --cell JSON` for each; child_main runs
it here and writes its JSON atomically, whatever happens (ok, diverged, oom, error).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.spec import PRECISION_NOTES, DataSpec, HarnessError, Hyper, load_impl, model_spec

LATENCY_CALLS = 200
INFER_REPEATS = 3
PREDICTION_SAMPLE = 16  # test images kept with their predictions in each result
WEIGHT_IMAGE_MODELS = ("logistic",)  # whose final weights are saved: the report draws them
STEP_POINTS = 100  # per-iteration loss curve: at most this many points an epoch (means of steps)
BACKEND_REQUIRES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
VERSION_PACKAGES = {"torch": ("torch",), "jax": ("jax", "flax", "optax"), "keras": ("keras",), "numpy": ("numpy",)}


@dataclasses.dataclass(frozen=True)
class Cell:
    framework: str
    backend: str | None  # Keras's backend; None for torch and jax
    model: str
    mode: str
    data: DataSpec
    hyper: Hyper
    precision: str = "float32"
    device: str = "cpu"
    threads: int = 0  # 0: every core
    recipe: str | None = None  # the seed recipe this cell belongs to (harness/recipes.py)

    @property
    def id(self) -> str:
        """Readable name plus a hash of everything, so no two different cells share a file."""
        digest = hashlib.sha1(json.dumps(self.asdict(), sort_keys=True).encode()).hexdigest()[:8]
        fw = f"{self.framework}-{self.backend}" if self.backend else self.framework
        h = self.hyper
        prefix = f"{self.recipe}-" if self.recipe else ""
        return (f"{prefix}{self.data.name}-{self.model}-{fw}-{self.mode}-b{h.batch_size}-{h.optimizer}"
                f"-e{h.epochs}-s{h.seed}-{self.precision}-{self.device}-{digest}")

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fromdict(cls, d: dict) -> "Cell":
        d = dict(d)
        data = dict(d.pop("data"))
        data["classes"] = tuple(data.get("classes", ()))
        return cls(data=DataSpec(**data), hyper=Hyper(**d.pop("hyper")), **d)


# ---------------------------------------------------------------- inside one cell's process
def cell_env(cell: Cell) -> dict[str, str]:
    """Environment pinned before any framework is imported: threads, allocators, backend."""
    env = dict(os.environ)
    threads = str(cell.threads or os.cpu_count() or 1)
    env.update({
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # JAX: allocate as needed, like torch
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",        # TensorFlow likewise
        "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
    })
    if cell.backend:
        env["KERAS_BACKEND"] = cell.backend
    if cell.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU cell must not touch a GPU, even if one is there
    elif cell.precision == "tf32":
        # TF32 for every library, also where it is off by default (cuBLAS under torch, and
        # so Keras on torch); TensorFlow and cuDNN take it by default.
        env.pop("NVIDIA_TF32_OVERRIDE", None)
        env["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"] = "1"
        env["JAX_DEFAULT_MATMUL_PRECISION"] = "tensorfloat32"
    else:
        # True float32 (and, under bf16, for whatever stays float32) for every library that
        # would take TF32: cuBLAS/cuDNN under any framework (TensorFlow, Keras on torch) and
        # XLA under Keras on jax.
        env["NVIDIA_TF32_OVERRIDE"] = "0"
        env["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    return env


def framework_versions(cell: Cell) -> dict[str, str]:
    names = VERSION_PACKAGES.get(cell.framework, ()) + ((BACKEND_REQUIRES[cell.backend],) if cell.backend else ())
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name if name != "tensorflow" else _tf_dist())
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _tf_dist() -> str:
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            metadata.version(dist)
            return dist
        except metadata.PackageNotFoundError:
            pass
    return "tensorflow"


def evaluate(impl, x: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy from the impl's logits, computed by the harness."""
    from harness.reference import cross_entropy

    logits = np.asarray(impl.logits(x), np.float64)
    pred = logits.argmax(axis=1)
    per_class = [float((pred[y == c] == c).mean()) if (y == c).any() else None
                 for c in range(num_classes)]
    return {"loss": cross_entropy(logits, y)[0],
            "accuracy": float((pred == y).mean()), "per_class": per_class, "predicted": pred}


def prediction_sample(x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """The first PREDICTION_SAMPLE // 2 wrong and right test images, for the report's digit grid."""
    import base64

    half = PREDICTION_SAMPLE // 2
    wrong, right = np.flatnonzero(pred != y)[:half], np.flatnonzero(pred == y)
    index = np.sort(np.concatenate([wrong, right[:PREDICTION_SAMPLE - len(wrong)]]))
    images = np.round(x[index, ..., 0] * 255).astype(np.uint8)
    return {"index": index.tolist(), "true": y[index].tolist(), "predicted": pred[index].tolist(),
            "shape": list(images.shape), "images_b64": base64.b64encode(images.tobytes()).decode()}


def run_cell(cell: Cell, say=print, weights_out: Path | None = None) -> dict[str, Any]:
    """Train and measure one cell in this process; returns the result payload.

    weights_out: where a logistic model's final weights go (.npz), for the report.
    """
    from harness import data as data_mod
    from harness import measure, results
    from harness.weights import initial_weights

    ds = data_mod.load(cell.data)
    model = model_spec(cell.model, ds.input_shape, ds.num_classes)
    h = cell.hyper
    weights = initial_weights(model, h.seed) if h.init == "canonical" else None
    impl = load_impl(cell.framework)
    gpu = measure.GpuTimer(cell.device)
    build_s, _ = measure.timed(
        lambda: impl.build(model, h, ds, weights, cell.device, cell.mode, cell.precision), lambda: None)
    curves, status, message, overhead = train(impl, ds, h, gpu, say)

    steady = steady_epochs(curves) if status == "ok" else []
    samples = len(ds.x_train) // h.batch_size * h.batch_size
    metrics: dict[str, Any] = {
        "build_s": build_s,
        "first_epoch_s": curves["epoch_s"][0] if curves["epoch_s"] else None,
        "epoch_s": measure.spread(steady),
        "train_samples_per_s": measure.spread(samples / s for s in steady),
        "test_accuracy": None, "test_loss": None, "val_accuracy": None, "per_class_accuracy": None,
        "infer_samples_per_s": None, "latency_b1_ms": None,
    }
    extra: dict[str, Any] = {}
    if status == "ok" and h.epochs:
        final = evaluate(impl, ds.x_test, ds.y_test, ds.num_classes)
        metrics.update(test_accuracy=final["accuracy"], test_loss=final["loss"],
                       per_class_accuracy=final["per_class"], val_accuracy=curves["val_accuracy"][-1])
        extra["predictions"] = prediction_sample(ds.x_test, ds.y_test, final["predicted"])
        if cell.model in WEIGHT_IMAGE_MODELS and weights_out is not None:
            results.write_npz_atomic(weights_out, impl.get_weights())
            extra["weights_file"] = str(weights_out.relative_to(weights_out.parent.parent))
        infer = [measure.timed(lambda: impl.logits(ds.x_test), impl.sync)[0] for _ in range(INFER_REPEATS)]
        metrics["infer_samples_per_s"] = measure.spread(len(ds.x_test) / s for s in infer)
        metrics["latency_b1_ms"] = measure.latency_ms(impl.logits, ds.x_test, LATENCY_CALLS)
    metrics.update(device_metrics(cell, impl, gpu, curves, steady))
    metrics["peak_rss_mb"] = measure.peak_rss_mb()
    metrics["harness_overhead_s"] = measure.spread(overhead)
    metrics["harness_overhead_fraction"] = (float(np.median(overhead) / np.median(steady))
                                            if steady else None)

    env = results.machine_env()
    env.update(framework_version=framework_versions(cell), keras_backend=cell.backend,
               device_name=getattr(impl, "device_name", lambda: None)() or env["cpu"],
               settings={"threads": int(os.environ.get("OMP_NUM_THREADS", 0)),
                         "precision": PRECISION_NOTES[cell.precision],
                         "preallocate": "off (XLA_PYTHON_CLIENT_PREALLOCATE=false, "
                                        "TF_FORCE_GPU_ALLOW_GROWTH=true)",
                         "determinism": "not enforced; same data, order and weights",
                         "compile_cache": "fresh per cell (first epochs compile cold)",
                         **getattr(impl, "settings", lambda: {})()})
    return {**payload(cell, status, message, metrics, curves, env), **extra}


def train(impl, ds, h: Hyper, gpu, say) -> tuple[dict[str, list], str, str, list[float]]:
    """The epochs: each timed between sync barriers, evaluated outside the timer.

    Returns the per-epoch curves, the status ("ok" or "diverged") with its message, and
    the harness's own overhead per epoch (making the order, converting the losses).
    """
    from harness import data as data_mod
    from harness import measure

    curves: dict[str, Any] = {k: [] for k in ("epoch", "train_loss", "test_loss", "test_accuracy",
                                              "val_accuracy", "epoch_s", "gpu_busy_s", "energy_j", "step_loss")}
    steps = len(ds.x_train) // h.batch_size
    curves["steps_per_point"] = -(-steps // STEP_POINTS)  # seed 004 plots loss per iteration
    # On a GPU the last epoch is traced by CUPTI for the busy time, and left out of the
    # steady timings, as tracing slows the host side; at least two untraced epochs remain.
    curves["profiled_epoch"] = h.epochs if gpu.reason is None and h.epochs >= 3 else None
    overhead: list[float] = []
    for epoch in range(h.epochs):
        t0 = time.perf_counter()
        order = data_mod.batch_order(len(ds.x_train), h.batch_size, h.seed, epoch)
        prep_s = time.perf_counter() - t0
        traced = epoch + 1 == curves["profiled_epoch"]
        energy0 = None if traced else gpu.energy_mj()
        start_ns = gpu.start() if traced else None
        epoch_s, losses = measure.timed(lambda: impl.train_epoch(order), impl.sync)
        busy = gpu.stop(start_ns) if traced else None
        energy1 = None if traced else gpu.energy_mj()
        t0 = time.perf_counter()
        losses = np.asarray(losses, np.float64)
        overhead.append(prep_s + time.perf_counter() - t0)
        finite = bool(np.isfinite(losses).all())
        k = curves["steps_per_point"]
        curves["step_loss"] += [float(c.mean()) if np.isfinite(c).all() else None
                                for c in np.array_split(losses, range(k, len(losses), k))]
        curves["epoch"].append(epoch + 1)
        curves["epoch_s"].append(epoch_s)
        curves["train_loss"].append(float(losses.mean()) if finite else None)
        curves["gpu_busy_s"].append(busy)
        # NVML's counter moves in steps (~0.1 s apart): an epoch inside one step reads 0 J,
        # which is no measurement, so it is left out rather than averaged in
        curves["energy_j"].append(None if energy0 is None or energy1 is None or energy1 == energy0
                                  else (energy1 - energy0) / 1e3)
        if not finite:
            bad = int(np.flatnonzero(~np.isfinite(losses))[0])
            message = f"loss became {losses[bad]} at epoch {epoch + 1}, step {bad + 1}"
            for key in ("test_loss", "test_accuracy", "val_accuracy"):
                curves[key].append(None)
            say(f"epoch {epoch + 1}/{h.epochs}  diverged: {message}")
            return curves, "diverged", message, overhead
        test = evaluate(impl, ds.x_test, ds.y_test, ds.num_classes)
        curves["test_loss"].append(test["loss"])
        curves["test_accuracy"].append(test["accuracy"])
        curves["val_accuracy"].append(
            evaluate(impl, ds.x_val, ds.y_val, ds.num_classes)["accuracy"] if len(ds.y_val) else None)
        say(f"epoch {epoch + 1}/{h.epochs}  loss {curves['train_loss'][-1]:.4f}  "
            f"test_loss {test['loss']:.4f}  test_acc {test['accuracy']:.4f}  {epoch_s:.2f} s")
    return curves, "ok", "", overhead


def steady_epochs(curves: dict) -> list[float]:
    """Epoch times after the first (compile, warm-up), without the CUPTI-traced epoch."""
    return [s for e, s in zip(curves["epoch"], curves["epoch_s"])
            if e > 1 and e != curves.get("profiled_epoch")]


def device_metrics(cell: Cell, impl, gpu, curves: dict, steady: list[float]) -> dict[str, Any]:
    """GPU busy time, utilisation, energy and device memory, or why each is not available."""
    from harness import measure

    na = measure.not_available
    busy = [b for b in curves["gpu_busy_s"] if b is not None]
    energy = [e for e in curves["energy_j"][1:] if e is not None]
    device_mb = getattr(impl, "peak_device_memory_mb", lambda: None)()
    no_busy = gpu.reason or "no traced epoch (a GPU cell traces its last of at least 3)"
    profiled = curves.get("profiled_epoch")
    return {
        "gpu_busy_s": measure.spread(busy) or na(no_busy),
        # busy time over an untraced epoch's wall time: the kernels are the same, the host is faster
        "gpu_utilization": (float(np.median(busy) / np.median(steady)) if busy and steady else na(no_busy)),
        # the traced epoch's own wall time: against epoch_s it shows what tracing costs
        "profiled_epoch_s": curves["epoch_s"][profiled - 1] if profiled and len(curves["epoch_s"]) >= profiled
        else na(no_busy),
        "energy_j_per_epoch": measure.spread(energy) or na(
            gpu.nvml_reason or "every steady epoch ended before NVML's energy counter moved"),
        "peak_device_mb": device_mb if device_mb is not None else na(
            "CPU cell: no device allocator" if cell.device == "cpu" else "framework reported none"),
    }


def payload(cell: Cell, status: str, message: str, metrics: dict, curves: dict, env: dict) -> dict:
    from harness.results import SCHEMA_VERSION

    c = cell.asdict()
    flat = {"id": cell.id, "framework": c["framework"], "backend": c["backend"], "model": c["model"],
            "mode": c["mode"], "dataset": c["data"], "batch_size": cell.hyper.batch_size,
            "seed": cell.hyper.seed, "precision": c["precision"], "device": c["device"],
            "epochs": cell.hyper.epochs, "hyper": c["hyper"], "threads": c["threads"],
            "recipe": cell.recipe}
    return {"schema_version": SCHEMA_VERSION, "cell": flat, "status": status, "message": message,
            "metrics": metrics, "curves": curves, "env": env}


def failure_payload(cell: Cell, status: str, message: str) -> dict:
    """A cell that ended without measurements (error, out of memory, crash)."""
    from harness import results

    keys = results.SCHEMA["properties"]["metrics"]["required"]
    env = results.machine_env()
    env.update(framework_version=framework_versions(cell), keras_backend=cell.backend,
               device_name=None, settings={})
    curves = {k: [] for k in results.SCHEMA["properties"]["curves"]["required"]}
    return payload(cell, status, message, dict.fromkeys(keys), curves, env)


def classify(exc: BaseException) -> str:
    text = f"{type(exc).__name__} {exc}".lower()
    oom = isinstance(exc, MemoryError) or any(
        s in text for s in ("out of memory", "resource_exhausted", "resource exhausted", "oom"))
    return "oom" if oom else "error"


def child_main(cell_json: str, out: Path) -> int:
    """Entry point of a cell's subprocess: run it and write its result file, whatever happens."""
    from harness.results import write_json_atomic

    cell = Cell.fromdict(json.loads(cell_json))
    try:
        result = run_cell(cell, weights_out=out.parent / "weights" / f"{out.stem}.npz")
    except HarnessError as exc:
        result = failure_payload(cell, "error", str(exc))
    except Exception as exc:  # recorded, so that the matrix goes on
        result = failure_payload(cell, classify(exc), f"{type(exc).__name__}: {exc}")
    write_json_atomic(out, result)
    print(f"status {result['status']}" + (f": {result['message']}" if result["message"] else ""))
    return 0


# ---------------------------------------------------------------- the matrix, in the parent
