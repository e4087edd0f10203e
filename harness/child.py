"""One cell, trained and measured in its own process: python -m harness.child CELL_JSON OUT_PATH.

The runner's parent side (harness.launch) starts it with the cell's environment already set
(threads, allocators, backend, precision), so that nothing here runs before a framework is
imported. It writes one result file atomically whatever happens (ok, diverged, oom, error);
if even that write fails, it says so on its last line and exits with WRITE_FAILED.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.cell import Cell
from harness.protocol import evaluate, steady_epochs
from harness.spec import PRECISION_NOTES, HarnessError, Hyper, model_spec
from impls.records import framework, load_impl

LATENCY_CALLS = 200
INFER_REPEATS = 3
PREDICTION_SAMPLE = 16  # test images kept with their predictions in each result
WEIGHT_IMAGE_MODELS = ("logistic",)  # whose final weights are saved: the report draws them
STEP_POINTS = 100  # per-iteration loss curve: at most this many points an epoch (means of steps)
WRITE_FAILED = 3  # the exit code when the result file could not be written


def framework_versions(cell: Cell) -> dict[str, str]:
    """Versions of the packages the cell's framework, backend and profile import."""
    return framework(cell.framework).versions(cell.backend, cell.profile)


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
    from harness.protocol import initial_weights

    ds = data_mod.load(cell.data)
    if cell.data_sha256 and ds.sha256 != cell.data_sha256:
        raise HarnessError(f"{cell.data.name} changed since the run started (SHA-256 {ds.sha256[:12]}, "
                           f"the cell was made for {cell.data_sha256[:12]}); run it again")
    model = model_spec(cell.model, ds.input_shape, ds.num_classes)
    h = cell.hyper
    # profile native starts from each framework's own initialisation
    weights = initial_weights(model, h.seed) if h.init == "canonical" and cell.profile == "equal" else None
    impl = load_impl(cell.framework)
    gpu = measure.GpuTimer(cell.device)
    build_s, _ = measure.timed(
        lambda: impl.build(model, h, ds, weights, cell.device, cell.mode, cell.precision, cell.profile),
        lambda: None)
    curves, status, message, overhead = train(impl, ds, h, gpu, say)

    steady = steady_epochs(curves) if status == "ok" else []
    steps = len(ds.x_train) // h.batch_size
    # The last partial batch is dropped (harness.protocol.batch_order); a native input pipeline
    # may keep it, and says how many samples its epoch trains on.
    samples = getattr(impl, "samples_per_epoch", None) or steps * h.batch_size
    steps = -(-samples // h.batch_size)  # a kept partial batch is one more step
    metrics: dict[str, Any] = {
        "build_s": build_s, "samples_per_epoch": samples, "steps_per_epoch": steps,
        "first_epoch_s": curves["epoch_s"][0] if curves["epoch_s"] else None,
        "steady_epoch_s": steady,
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
                         "determinism": "not enforced; " + ("same data, order and weights" if cell.profile == "equal"
                                                            else "same data, each framework's own order and init"),
                         "compile_cache": "fresh per cell (first epochs compile cold)",
                         **getattr(impl, "settings", lambda: {})()})
    return {**payload(cell, status, message, data_record(ds), metrics, curves, env), **extra}


def data_record(ds) -> dict[str, Any]:
    """What a result says about its data: name, where it came from, the SHA-256 of its arrays, sizes."""
    return {"name": ds.spec.name, "source": ds.source, "sha256": ds.sha256,
            "train": len(ds.y_train), "val": len(ds.y_val), "test": len(ds.y_test)}


def train(impl, ds, h: Hyper, gpu, say) -> tuple[dict[str, list], str, str, list[float]]:
    """The epochs: each timed between sync barriers, evaluated outside the timer.

    Returns the per-epoch curves, the status ("ok" or "diverged") with its message, and
    the harness's own overhead per epoch (making the order, converting the losses).
    """
    from harness import measure
    from harness.protocol import batch_order

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
        order = batch_order(len(ds.x_train), h.batch_size, h.seed, epoch)
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


def payload(cell: Cell, status: str, message: str, data: dict, metrics: dict, curves: dict, env: dict) -> dict:
    """A result file's contents (harness.results.SCHEMA)."""
    from harness.results import SCHEMA_VERSION

    c = cell.asdict()
    flat = {"id": cell.id, "framework": c["framework"], "backend": c["backend"], "model": c["model"],
            "mode": c["mode"], "profile": c["profile"], "dataset": c["data"], "data_sha256": c["data_sha256"],
            "batch_size": cell.hyper.batch_size,
            "seed": cell.hyper.seed, "precision": c["precision"], "device": c["device"],
            "epochs": cell.hyper.epochs, "hyper": c["hyper"], "threads": c["threads"],
            "recipe": cell.recipe}
    return {"schema_version": SCHEMA_VERSION, "cell": flat, "status": status, "message": message,
            "data": data, "metrics": metrics, "curves": curves, "env": env}


def failure_payload(cell: Cell, status: str, message: str) -> dict:
    """A cell that ended without measurements (error, out of memory, crash)."""
    from harness import results

    keys = results.SCHEMA["properties"]["metrics"]["required"]
    env = results.machine_env()
    env.update(framework_version=framework_versions(cell), keras_backend=cell.backend,
               device_name=None, settings={})
    curves = {k: [] for k in results.SCHEMA["properties"]["curves"]["required"]}
    data = {"name": cell.data.name, "source": None, "sha256": cell.data_sha256 or None,
            "train": None, "val": None, "test": None}
    return payload(cell, status, message, data, dict.fromkeys(keys), curves, env)


def classify(exc: BaseException) -> str:
    text = f"{type(exc).__name__} {exc}".lower()
    oom = isinstance(exc, MemoryError) or any(
        s in text for s in ("out of memory", "resource_exhausted", "resource exhausted", "oom"))
    return "oom" if oom else "error"


def child_main(cell_json: str, out: Path) -> int:
    """Run a cell and write its result file, whatever happens; 0, or WRITE_FAILED if that write failed."""
    from harness.results import write_json_atomic

    cell = Cell.fromdict(json.loads(cell_json))
    try:
        result = run_cell(cell, weights_out=out.parent / "weights" / f"{out.stem}.npz")
    except HarnessError as exc:
        result = failure_payload(cell, "error", str(exc))
    except Exception as exc:  # recorded, so that the matrix goes on
        result = failure_payload(cell, classify(exc), f"{type(exc).__name__}: {exc}")
    try:
        write_json_atomic(out, result)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile: the parent records it
        print(f"status error: could not write {out}: {exc.strerror or exc}")
        return WRITE_FAILED
    print(f"status {result['status']}" + (f": {result['message']}" if result["message"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1], Path(sys.argv[2])))
