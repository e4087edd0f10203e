"""One cell, trained and measured in its own process: python -m harness.measure.child CELL_JSON STORE [CONTEXT_JSON].

The runner's parent side (harness.run.launch) starts it with the cell's environment already set
(threads, allocators, backend, precision), so that nothing here runs before a framework is
imported. It writes one result into the store whatever happens (ok, diverged, oom, error);
if even that write fails, it says so on its last line and exits with faults.WRITE_FAILED.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import data as data_mod
from harness.measure import timing
from harness.measure.faults import WRITE_FAILED, out_of_memory
from harness.measure.machine import (ContentionMeter, GcClock, machine_env, machine_times, thread_deltas,
                                     thread_times)
from harness.measure.protocol import batch_order, evaluate, initial_weights, steady_epochs
from harness.measure.results import SCHEMA_VERSION, Metrics, Result, build
from harness.measure.split import time_split
from harness.measure.store import Store, failure_record
from harness.plan.cell import Cell
from harness.plan.errors import HarnessError
from harness.plan.frameworks import framework, load_impl
from harness.plan.spec import PRECISION_NOTES, Hyper, model_spec

LATENCY_CALLS = 200
INFER_REPEATS = 3
PREDICTION_SAMPLE = 16  # test images kept with their predictions in each result
WEIGHT_IMAGE_MODELS = ("logistic",)  # whose final weights are saved: the report draws them
STEP_POINTS = 100  # per-iteration loss curve: at most this many points an epoch (means of recorded losses)


def prediction_sample(x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """The first PREDICTION_SAMPLE // 2 wrong and right test images, for the report's digit grid."""
    import base64

    half = PREDICTION_SAMPLE // 2
    wrong, right = np.flatnonzero(pred != y)[:half], np.flatnonzero(pred == y)
    index = np.sort(np.concatenate([wrong, right[:PREDICTION_SAMPLE - len(wrong)]]))
    images = np.round(x[index, ..., 0] * 255).astype(np.uint8)
    return {"index": index.tolist(), "true": y[index].tolist(), "predicted": pred[index].tolist(),
            "shape": list(images.shape), "images_b64": base64.b64encode(images.tobytes()).decode()}


# Where an epoch's wall time went, from getrusage over the process's threads between the epoch's
# begin and end: CPU seconds (user, and the kernel's on the process's behalf), minor page faults, and
# context switches (voluntary: a thread waited; involuntary: the scheduler took the core away); and
# from /proc/stat, the whole machine's busy, idle and stolen CPU seconds over the same span, summed
# over its cores: busy beyond the process's own CPU is other processes', idle is cores nobody used;
# and the seconds the process's threads were ready to run but waited for a core (summed over threads);
# each thread's own CPU and waits, for the threads that ran or waited THREAD_SHARE of the epoch; and
# the seconds Python's garbage collector ran.
USAGE = ("epoch_user_s", "epoch_sys_s", "epoch_minflt", "epoch_nvcsw", "epoch_nivcsw",
         "epoch_machine_busy_s", "epoch_machine_idle_s", "epoch_machine_steal_s", "epoch_run_wait_s",
         "epoch_migrations", "epoch_threads", "epoch_gc_s")
THREAD_SHARE = 0.02


def usage_now(gc_clock: GcClock):
    return (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), machine_times(), thread_times(),
            gc_clock.seconds)


def epoch_usage(before, after) -> dict[str, Any]:
    (t0, u0, (busy0, idle0, steal0), threads0, gc0), (t1, u1, (busy1, idle1, steal1), threads1, gc1) = before, after
    threads = thread_deltas(threads0, threads1)
    shown = sorted(((tid, t) for tid, t in threads.items() if t.cpu_s + t.wait_s >= THREAD_SHARE * (t1 - t0)),
                   key=lambda item: -item[1].cpu_s)
    return {"epoch_user_s": u1.ru_utime - u0.ru_utime, "epoch_sys_s": u1.ru_stime - u0.ru_stime,
            "epoch_minflt": u1.ru_minflt - u0.ru_minflt, "epoch_nvcsw": u1.ru_nvcsw - u0.ru_nvcsw,
            "epoch_nivcsw": u1.ru_nivcsw - u0.ru_nivcsw, "epoch_machine_busy_s": busy1 - busy0,
            "epoch_machine_idle_s": idle1 - idle0, "epoch_machine_steal_s": steal1 - steal0,
            "epoch_run_wait_s": sum(t.wait_s for t in threads.values()),
            "epoch_migrations": sum(t.migrations for t in threads.values()),
            "epoch_threads": [{"tid": tid, "name": t.name, "cpu_s": t.cpu_s, "wait_s": t.wait_s,
                               "migrations": t.migrations} for tid, t in shown],
            "epoch_gc_s": gc1 - gc0}


class Training:
    """The harness's side of the epochs (contract.EpochHooks): orders, GPU tracing, evaluation, curves.

    Each epoch is timed by the impl between sync barriers; everything here happens outside
    that clock. `overhead` is the harness's own work per epoch (making the order, converting
    the losses), recorded beside the epoch time.
    """

    def __init__(self, impl, ds, hyper: Hyper, gpu, say, planted_slowdown: float = 1.0):
        self.impl, self.ds, self.hyper, self.gpu, self.say = impl, ds, hyper, gpu, say
        self.planted_slowdown = planted_slowdown
        self.curves: dict[str, Any] = {k: [] for k in ("epoch", "train_loss", "test_loss", "test_accuracy",
                                                       "val_accuracy", "epoch_s", "gpu_busy_s", "energy_j",
                                                       "step_loss", "input_s", "planted_s", *USAGE)}
        steps = len(ds.x_train) // hyper.batch_size
        self.curves["loss_every"] = getattr(impl, "loss_every", 1)
        every = self.curves["loss_every"]
        recorded = -(-steps // every) if every else 1  # the losses the impl's loop records an epoch
        self.curves["steps_per_point"] = -(-recorded // STEP_POINTS)  # seed 004 plots loss per iteration
        # On a GPU the last epoch is traced by CUPTI for the busy time, and left out of the
        # steady timings, as tracing slows the host side; at least two untraced epochs remain.
        self.curves["profiled_epoch"] = hyper.epochs if gpu.reason is None and hyper.epochs >= 3 else None
        self.overhead: list[float] = []
        self.status, self.message = "ok", ""
        self._prep_s, self._start_ns, self._energy0, self._usage0 = 0.0, None, None, None
        self.gc_clock = GcClock()  # installed around the epochs by run_cell

    def order_for(self, epoch: int) -> np.ndarray:
        start = time.perf_counter()
        order = batch_order(len(self.ds.x_train), self.hyper.batch_size, self.hyper.seed, epoch - 1)
        self._prep_s = time.perf_counter() - start
        return order

    def begin(self, epoch: int) -> None:
        traced = epoch == self.curves["profiled_epoch"]
        self._energy0 = None if traced else self.gpu.energy_mj()
        self._start_ns = self.gpu.start() if traced else None
        self._usage0 = usage_now(self.gc_clock)

    def end(self, epoch: int, seconds: float, losses, input_s: float | None) -> bool:
        usage = usage_now(self.gc_clock)  # before anything else of end(): the epoch's own
        if self.planted_slowdown != 1.0:  # the positive control: sleep the planted share after the epoch's
            start = time.perf_counter()  # closing sync, and count the sleep as measured into the epoch
            time.sleep((self.planted_slowdown - 1) * seconds)
            slept = time.perf_counter() - start
            self.curves["planted_s"].append(slept)
            seconds += slept
        traced = epoch == self.curves["profiled_epoch"]
        busy = self.gpu.stop(self._start_ns) if traced else None
        energy1 = None if traced else self.gpu.energy_mj()
        start = time.perf_counter()
        losses = np.atleast_1d(np.asarray(losses, np.float64))
        self.overhead.append(self._prep_s + time.perf_counter() - start)
        c, finite = self.curves, bool(np.isfinite(losses).all())
        k = c["steps_per_point"]
        c["step_loss"] += [float(chunk.mean()) if np.isfinite(chunk).all() else None
                           for chunk in np.array_split(losses, range(k, len(losses), k))]
        c["epoch"].append(epoch)
        c["epoch_s"].append(seconds)
        for key, value in epoch_usage(self._usage0, usage).items():
            c[key].append(value)
        c["input_s"].append(input_s)
        c["train_loss"].append(float(losses.mean()) if finite else None)
        c["gpu_busy_s"].append(busy)
        # NVML's counter moves in steps (~0.1 s apart): an epoch inside one step reads 0 J,
        # which is no measurement, so it is left out rather than averaged in
        c["energy_j"].append(None if self._energy0 is None or energy1 is None or energy1 == self._energy0
                             else (energy1 - self._energy0) / 1e3)
        if not finite:
            bad = int(np.flatnonzero(~np.isfinite(losses))[0])
            where = "the epoch's mean" if c["loss_every"] == 0 else f"step {bad * max(c['loss_every'], 1) + 1}"
            self.status, self.message = "diverged", f"loss became {losses[bad]} at epoch {epoch}, {where}"
            for key in ("test_loss", "test_accuracy", "val_accuracy"):
                c[key].append(None)
            self.say(f"epoch {epoch}/{self.hyper.epochs}  diverged: {self.message}")
            return False
        test = evaluate(self.impl, self.ds.x_test, self.ds.y_test, self.ds.num_classes)
        c["test_loss"].append(test["loss"])
        c["test_accuracy"].append(test["accuracy"])
        c["val_accuracy"].append(evaluate(self.impl, self.ds.x_val, self.ds.y_val, self.ds.num_classes)["accuracy"]
                                 if len(self.ds.y_val) else None)
        self.say(f"epoch {epoch}/{self.hyper.epochs}  loss {c['train_loss'][-1]:.4f}  "
                 f"test_loss {test['loss']:.4f}  test_acc {test['accuracy']:.4f}  {seconds:.2f} s")
        return True


def run_cell(cell: Cell, store: Store, say=print, context: dict | None = None) -> Result:
    """Train and measure one cell in this process; its result (weights written beside it for the report)."""
    ds = data_mod.load(cell.data)
    if cell.data_sha256 and ds.sha256 != cell.data_sha256:
        raise HarnessError(f"{cell.data.name} changed since the run started (SHA-256 {ds.sha256[:12]}, "
                           f"the cell was made for {cell.data_sha256[:12]}); run it again")
    model = model_spec(cell.model, ds.input_shape, ds.num_classes)
    h = cell.hyper
    # profile native starts from each framework's own initialisation

    def build_impl(spec):
        weights = initial_weights(spec, h.seed) if h.init == "canonical" and cell.profile == "equal" else None
        impl = load_impl(cell.framework)
        impl.build(spec, h, ds, weights, cell.device, cell.mode, cell.precision, cell.profile)
        return impl

    gpu = timing.GpuTimer(cell.device)
    build_s, impl = timing.timed(lambda: build_impl(model), lambda: None)
    training = Training(impl, ds, h, gpu, say, cell.planted_slowdown)
    meter = ContentionMeter().start()
    with training.gc_clock:
        impl.run_epochs(h.epochs, training.order_for, training)
    contention = meter.stop(gpu=cell.device != "cpu")
    curves, status = training.curves, training.status
    steady = steady_epochs(curves) if status == "ok" else []
    # The last partial batch is dropped (harness.measure.protocol.batch_order); a native input pipeline
    # may keep it, and says how many samples its epoch trains on.
    samples = impl.samples_per_epoch
    steps = -(-samples // h.batch_size)  # a kept partial batch is one more step
    metrics: dict[str, Any] = {
        "build_s": build_s, "samples_per_epoch": samples, "steps_per_epoch": steps,
        "first_epoch_s": curves["epoch_s"][0] if curves["epoch_s"] else None, "steady_epoch_s": steady,
        "epoch_s": timing.spread(steady), "train_samples_per_s": timing.spread(samples / s for s in steady),
        "harness_overhead_s": timing.spread(training.overhead),
        "harness_overhead_fraction": float(np.median(training.overhead) / np.median(steady)) if steady else None,
    }
    extra: dict[str, Any] = {}
    if status == "ok" and h.epochs:
        final = evaluate(impl, ds.x_test, ds.y_test, ds.num_classes)
        metrics.update(test_accuracy=final["accuracy"], test_loss=final["loss"],
                       per_class_accuracy=final["per_class"], val_accuracy=curves["val_accuracy"][-1])
        extra["predictions"] = prediction_sample(ds.x_test, ds.y_test, final["predicted"])
        if cell.model in WEIGHT_IMAGE_MODELS:
            extra["weights_file"] = store.write_weights(cell, impl.get_weights())
        infer = [timing.timed(lambda: impl.logits(ds.x_test), impl.sync)[0] for _ in range(INFER_REPEATS)]
        metrics["infer_samples_per_s"] = timing.spread(len(ds.x_test) / s for s in infer)
        metrics["latency_b1_ms"] = timing.latency_ms(impl.logits, ds.x_test, LATENCY_CALLS)
    metrics.update(device_metrics(cell, impl, gpu, curves, steady))
    metrics["peak_rss_mb"] = timing.peak_rss_mb()
    settings = impl.settings()
    if steady:  # after every other measurement: the probe builds a second model in this process
        steady_inputs = [s for e, s in zip(curves["epoch"], curves["input_s"])
                         if e > 1 and e != curves["profiled_epoch"]]
        metrics["split"] = time_split(cell, model, h, ds, build_impl, steady, steady_inputs, steps,
                                      impl.input_clock.how)
    env = machine_env()
    env.update(framework_version=framework(cell.framework).versions(cell.backend, cell.profile),
               keras_backend=cell.backend, contention=contention, round=(context or {}).get("round"),
               device_name=getattr(impl, "device_name", lambda: None)() or env["cpu"],
               settings={"threads": int(os.environ.get("OMP_NUM_THREADS", 0)),
                         "precision": PRECISION_NOTES[cell.precision],
                         "determinism": "not enforced; " + ("same data, order and weights" if cell.profile == "equal"
                                                            else "same data, each framework's own order and init"),
                         "compile_cache": "fresh per cell (first epochs compile cold)", **settings})
    return build(Result, {"schema_version": SCHEMA_VERSION, "cell": cell.asdict(), "status": status,
                          "message": training.message, "data": data_record(ds),
                          "metrics": {name: None for name in Metrics.__dataclass_fields__} | metrics,
                          "curves": curves, "env": env, **extra}, "result")


def data_record(ds) -> dict[str, Any]:
    """What a result says about its data: name, where it came from, the SHA-256 of its arrays, sizes."""
    return {"name": ds.spec.name, "source": ds.source, "sha256": ds.sha256,
            "train": len(ds.y_train), "val": len(ds.y_val), "test": len(ds.y_test)}


def device_metrics(cell: Cell, impl, gpu, curves: dict, steady: list[float]) -> dict[str, Any]:
    """GPU busy time, utilisation, energy and device memory, or why each is not available."""
    na = timing.not_available
    busy = [b for b in curves["gpu_busy_s"] if b is not None]
    energy = [e for e in curves["energy_j"][1:] if e is not None]
    device_mb = getattr(impl, "peak_device_memory_mb", lambda: None)()
    no_busy = gpu.reason or "no traced epoch (a GPU cell traces its last of at least 3)"
    profiled = curves.get("profiled_epoch")
    return {
        "gpu_busy_s": timing.spread(busy) or na(no_busy),
        # busy time over an untraced epoch's wall time: the kernels are the same, the host is faster
        "gpu_utilization": (float(np.median(busy) / np.median(steady)) if busy and steady else na(no_busy)),
        # the traced epoch's own wall time: against epoch_s it shows what tracing costs
        "profiled_epoch_s": curves["epoch_s"][profiled - 1] if profiled and len(curves["epoch_s"]) >= profiled
        else na(no_busy),
        "energy_j_per_epoch": timing.spread(energy) or na(
            gpu.nvml_reason or "every steady epoch ended before NVML's energy counter moved"),
        "peak_device_mb": device_mb if device_mb is not None else na(
            "CPU cell: no device allocator" if cell.device == "cpu" else "framework reported none"),
    }


def classify(exc: BaseException) -> str:
    """"oom" for an exception in which an allocator says it ran out of memory (faults.OOM_WORDS), else "error"."""
    return "oom" if isinstance(exc, MemoryError) or out_of_memory(f"{type(exc).__name__}: {exc}") else "error"


def child_main(cell_json: str, root: Path, context_json: str = "{}") -> int:
    """Run a cell and store its result, whatever happens; 0, or WRITE_FAILED if that write failed."""
    cell, store, context = Cell.fromdict(json.loads(cell_json)), Store(root), json.loads(context_json)
    extra = {"round": context.get("round")}
    try:
        result = run_cell(cell, store, context=context)
    except HarnessError as exc:
        result = failure_record(cell, "error", str(exc), extra)
    except Exception as exc:  # recorded, so that the matrix goes on
        result = failure_record(cell, classify(exc), f"{type(exc).__name__}: {exc}", extra)
    try:
        store.write(cell, result)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile: the parent records it
        print(f"status error: could not write the result in {root}: {exc.strerror or exc}")
        return WRITE_FAILED
    print(f"status {result.status}" + (f": {result.message}" if result.message else ""))
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:4]))
