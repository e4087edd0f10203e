"""python -m harness.run: train and measure a matrix of cells, one subprocess per cell.

    python -m harness.run --framework jax --model mlp --epochs 5      one cell
    python -m harness.run                                              the default matrix
    python -m harness.run --framework torch keras --model mlp cnn --batch-size 32 256 --seed 0 1

A cell is (framework, backend, model, mode, batch size, seed, dataset, precision, device,
recipe). Each runs in a fresh process so that peak memory and allocator state do not
leak between cells, and writes one JSON file atomically under --out; finished cells are
skipped on a re-run unless --force.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.spec import (DEFAULT_FRAMEWORKS, MODELS, RECIPE_MODELS, DataSpec, HarnessError, Hyper, cli_main,
                          impls, load_impl, model_spec, modes)

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32",)  # float32 with TF32 off; tf32/bf16 arrive with the fast-path modes
DEVICES = ("cpu", "cuda")
LATENCY_CALLS = 200
PREDICTION_SAMPLE = 16  # test images kept with their predictions in each result
WEIGHT_IMAGE_MODELS = ("logistic",)  # whose final weights are saved: the report draws them
INFER_REPEATS = 3
# Python packages a framework's cells need; a framework missing here is skipped.
REQUIRES = {"torch": ("torch",), "jax": ("jax", "flax", "optax"), "keras": ("keras",), "numpy": ()}
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
    elif cell.precision == "float32":
        # True float32 for every library that would take TF32: cuBLAS/cuDNN under any
        # framework (TensorFlow, Keras on torch) and XLA under Keras on jax.
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
    logits = np.asarray(impl.logits(x), np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    pred = logits.argmax(axis=1)
    per_class = [float((pred[y == c] == c).mean()) if (y == c).any() else None
                 for c in range(num_classes)]
    return {"loss": float(-logp[np.arange(len(y)), y].mean()),
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
    from harness.results import write_npz_atomic
    from harness.weights import initial_weights

    ds = data_mod.load(cell.data)
    model = model_spec(cell.model, ds.input_shape, ds.num_classes)
    h = cell.hyper
    weights = initial_weights(model, h.seed) if h.init == "canonical" else None
    impl = load_impl(cell.framework)
    gpu = measure.GpuTimer(cell.device)
    build_s, _ = measure.timed(
        lambda: impl.build(model, h, ds, weights, cell.device, cell.mode), lambda: None)

    curves: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "test_loss", "test_accuracy",
                                               "val_accuracy", "epoch_s", "gpu_busy_s", "energy_j")}
    status, message, overhead, extra = "ok", "", [], {}
    n = len(ds.x_train)
    for epoch in range(h.epochs):
        t0 = time.perf_counter()
        order = data_mod.batch_order(n, h.batch_size, h.seed, epoch)
        prep_s = time.perf_counter() - t0
        energy0, gpu0 = gpu.energy_mj(), gpu.timestamp_ns()
        epoch_s, losses = measure.timed(lambda: impl.train_epoch(order), impl.sync)
        gpu1, energy1 = gpu.timestamp_ns(), gpu.energy_mj()
        t0 = time.perf_counter()
        losses = np.asarray(losses, np.float64)
        overhead.append(prep_s + time.perf_counter() - t0)
        curves["epoch"].append(epoch + 1)
        curves["epoch_s"].append(epoch_s)
        curves["train_loss"].append(float(losses.mean()) if np.isfinite(losses).all() else None)
        curves["gpu_busy_s"].append(gpu.busy_seconds(gpu0, gpu1))
        curves["energy_j"].append((energy1 - energy0) / 1e3 if energy0 is not None and energy1 is not None else None)
        if not np.isfinite(losses).all():
            bad = int(np.flatnonzero(~np.isfinite(losses))[0])
            status, message = "diverged", f"loss became {losses[bad]} at epoch {epoch + 1}, step {bad + 1}"
            for key in ("test_loss", "test_accuracy", "val_accuracy"):
                curves[key].append(None)
            say(f"epoch {epoch + 1}/{h.epochs}  diverged: {message}")
            break
        test = evaluate(impl, ds.x_test, ds.y_test, ds.num_classes)
        curves["test_loss"].append(test["loss"])
        curves["test_accuracy"].append(test["accuracy"])
        val = evaluate(impl, ds.x_val, ds.y_val, ds.num_classes)["accuracy"] if len(ds.y_val) else None
        curves["val_accuracy"].append(val)
        say(f"epoch {epoch + 1}/{h.epochs}  loss {curves['train_loss'][-1]:.4f}  "
            f"test_loss {test['loss']:.4f}  test_acc {test['accuracy']:.4f}  {epoch_s:.2f} s")

    steady = curves["epoch_s"][1:] if status == "ok" else []
    steps = n // h.batch_size
    metrics: dict[str, Any] = {
        "build_s": build_s,
        "first_epoch_s": curves["epoch_s"][0] if curves["epoch_s"] else None,
        "epoch_s": measure.spread(steady),
        "train_samples_per_s": measure.spread(steps * h.batch_size / s for s in steady),
        "test_accuracy": None, "test_loss": None, "val_accuracy": None, "per_class_accuracy": None,
        "infer_samples_per_s": None, "latency_b1_ms": None,
    }
    if status == "ok" and h.epochs:
        final = evaluate(impl, ds.x_test, ds.y_test, ds.num_classes)
        metrics.update(test_accuracy=final["accuracy"], test_loss=final["loss"],
                       per_class_accuracy=final["per_class"], val_accuracy=curves["val_accuracy"][-1])
        extra["predictions"] = prediction_sample(ds.x_test, ds.y_test, final["predicted"])
        if cell.model in WEIGHT_IMAGE_MODELS and weights_out is not None:
            write_npz_atomic(weights_out, impl.get_weights())
            extra["weights_file"] = str(weights_out.relative_to(weights_out.parent.parent))
        infer = [measure.timed(lambda: impl.logits(ds.x_test), impl.sync)[0] for _ in range(INFER_REPEATS)]
        metrics["infer_samples_per_s"] = measure.spread(len(ds.x_test) / s for s in infer)
        metrics["latency_b1_ms"] = measure.latency_ms(impl.logits, ds.x_test, LATENCY_CALLS)
    busy = [b for b in curves["gpu_busy_s"][1:] if b is not None]
    energy = [e for e in curves["energy_j"][1:] if e is not None]
    na = measure.not_available
    metrics["gpu_busy_s"] = measure.spread(busy) or na(gpu.reason or "no steady epoch")
    metrics["gpu_utilization"] = (float(np.median(busy) / np.median(steady)) if busy and steady
                                  else na(gpu.reason or "no steady epoch"))
    metrics["energy_j_per_epoch"] = measure.spread(energy) or na(
        gpu.reason or getattr(gpu, "nvml_reason", "NVML gave no energy reading"))
    device_mb = getattr(impl, "peak_device_memory_mb", lambda: None)()
    metrics["peak_device_mb"] = device_mb if device_mb is not None else na(
        "CPU cell: no device allocator" if cell.device == "cpu" else "framework reported none")
    metrics["peak_rss_mb"] = measure.peak_rss_mb()
    metrics["harness_overhead_s"] = measure.spread(overhead)
    metrics["harness_overhead_fraction"] = (float(np.median(overhead) / np.median(steady))
                                            if steady else None)

    env = results.machine_env()
    env.update(framework_version=framework_versions(cell), keras_backend=cell.backend,
               device_name=getattr(impl, "device_name", lambda: None)() or env["cpu"],
               settings={"threads": int(os.environ.get("OMP_NUM_THREADS", 0)),
                         "float32_matmul": "TF32 off (full float32)",
                         "preallocate": "off (XLA_PYTHON_CLIENT_PREALLOCATE=false, "
                                        "TF_FORCE_GPU_ALLOW_GROWTH=true)",
                         "determinism": "not enforced; same data, order and weights",
                         **getattr(impl, "settings", lambda: {})()})
    return {**payload(cell, status, message, metrics, curves, env), **extra}


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
def missing_packages(cell: Cell) -> list[str]:
    names = REQUIRES.get(cell.framework, ()) + ((BACKEND_REQUIRES[cell.backend],) if cell.backend else ())
    return [n for n in names if importlib.util.find_spec(n) is None]


def check_choice(kind: str, values, valid) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise HarnessError(f"unknown {kind} {', '.join(map(repr, bad))}; valid {kind}s: {', '.join(valid)}")


def expand(args) -> list[Cell]:
    from harness.data import DATASETS
    from harness.recipes import recipe

    registry = impls()
    check_choice("framework", args.framework, registry)
    check_choice("model", args.model, {**MODELS, **RECIPE_MODELS})
    check_choice("dataset", args.dataset, DATASETS)
    check_choice("backend", args.backend, KERAS_BACKENDS)
    check_choice("precision", args.precision, PRECISIONS)
    check_choice("device", args.device, DEVICES)
    check_choice("mode", args.mode or [], sorted({m for fw in registry for m in modes(fw)}))
    if args.recipe:
        r = recipe(args.recipe)
        runs = [(model, dataclasses.replace(hyper, batch_size=bs))
                for model, hyper in r.runs for bs in (args.batch_size or [hyper.batch_size])]
        datas = [r.data]
    else:
        base = Hyper(optimizer=args.optimizer, lr=args.lr, **({"eps": args.eps} if args.eps else {}))
        runs = [(model, dataclasses.replace(base, batch_size=bs))
                for model in args.model for bs in (args.batch_size or [base.batch_size])]
        datas = [DataSpec(name) for name in args.dataset]
    cells = []
    for fw, (model, hyper), ds, seed, prec, dev in itertools.product(
            args.framework, runs, datas, args.seed, args.precision, args.device):
        hyper = dataclasses.replace(hyper, seed=seed, init=args.init,
                                    epochs=hyper.epochs if args.epochs is None else args.epochs)
        chosen = [m for m in (args.mode or modes(fw)[:1]) if m in modes(fw)]
        for mode, backend in itertools.product(chosen, args.backend if fw == "keras" else [None]):
            cells.append(Cell(fw, backend, model, mode, ds, hyper, prec, dev, args.threads, args.recipe))
    return cells


def run_matrix(cells: list[Cell], out_dir: Path, force: bool, quiet: bool) -> dict[str, int]:
    """Run each cell in its own process; returns the count of each outcome."""
    from tqdm import tqdm

    from harness.results import finished

    counts: dict[str, int] = {}
    bar = tqdm(total=len(cells), unit="cell", disable=quiet, dynamic_ncols=True)
    for cell in cells:
        path = out_dir / f"{cell.id}.json"
        label = cell.id.rsplit("-", 1)[0]
        missing = missing_packages(cell)
        if missing:
            outcome = "skipped"
            tqdm.write(f"skip {label}: {', '.join(missing)} not installed here "
                       f"(run it in its tox env: tox -e {cell.framework})", file=sys.stderr)
        elif finished(path) and not force:
            outcome = "done before"
            if not quiet:
                tqdm.write(f"skip {label}: finished before ({path.name}); --force reruns it",
                           file=sys.stderr)
        else:
            bar.set_description(label)
            outcome = run_child(cell, path, bar, quiet)
        counts[outcome] = counts.get(outcome, 0) + 1
        bar.update(1)
    bar.close()
    return counts


def run_child(cell: Cell, path: Path, bar, quiet: bool) -> str:
    from tqdm import tqdm
    from harness.results import write_json_atomic

    cmd = [sys.executable, "-m", "harness.run", "--cell", json.dumps(cell.asdict()), "--cell-out", str(path)]
    proc = subprocess.Popen(cmd, env=cell_env(cell), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    tail: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith("epoch"):
                bar.set_postfix_str(line.split("  ")[0])
            if not quiet or line.startswith("status"):
                tqdm.write(f"  {line}" if not line.startswith("status")
                           else f"{cell.id.rsplit('-', 1)[0]}: {line}", file=sys.stderr)
        code = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    if code != 0 or not path.exists():  # a crash (segfault, kill) still leaves a result
        message = f"cell process exited with code {code}: " + " | ".join(tail[-5:])
        write_json_atomic(path, failure_payload(cell, "oom" if code in (-9, 137) else "error", message))
    return json.loads(path.read_text())["status"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = Hyper()
    p.add_argument("--framework", nargs="+", default=list(DEFAULT_FRAMEWORKS), help=f"of {', '.join(impls())}")
    p.add_argument("--model", nargs="+", default=list(MODELS), help=f"of {', '.join(MODELS)}")
    p.add_argument("--mode", nargs="+", help="default: each framework's first mode")
    p.add_argument("--backend", nargs="+", default=[os.environ.get("KERAS_BACKEND", "tensorflow")],
                   help=f"Keras backends, of {', '.join(KERAS_BACKENDS)}")
    p.add_argument("--dataset", nargs="+", default=["mnist"])
    p.add_argument("--recipe", help="a seed's recipe from harness/recipes.py (sets data, models, optimizer)")
    p.add_argument("--batch-size", nargs="+", type=int, help=f"default {d.batch_size}, or the recipe's")
    p.add_argument("--seed", nargs="+", type=int, default=[d.seed])
    p.add_argument("--precision", nargs="+", default=["float32"])
    p.add_argument("--device", nargs="+", default=["cpu"])
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}, or the recipe's")
    p.add_argument("--optimizer", default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eps", type=float, help=f"Adam epsilon (default {d.eps})")
    p.add_argument("--init", default=d.init, help="canonical (harness weights) or native")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per cell; 0 = all cores")
    p.add_argument("--out", type=Path, default=Path("results/runs"), help="folder for the JSON files")
    p.add_argument("--force", action="store_true", help="rerun cells that already have results")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines (CI)")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    p.add_argument("--cell-out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cell:
        return child_main(args.cell, args.cell_out)
    cells = expand(args)
    start = time.perf_counter()
    counts = run_matrix(cells, args.out, args.force, args.quiet)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"{len(cells)} cells in {time.perf_counter() - start:.0f} s: {summary}; results in {args.out}/")
    return 1 if counts.get("error") else 0


if __name__ == "__main__":
    cli_main(main)
