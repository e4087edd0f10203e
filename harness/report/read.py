"""Reading: result files and pytest-benchmark files under folders, one DataFrame row each.

A file that is neither is named on stderr and skipped, and so is a result whose values the
later stages cannot use (`unusable`: a wrong type, a NaN or non-positive time, an accuracy
outside [0, 1]) and a second file of a cell already read; hidden files (a runner's temporary
file, a tool's cache) are not read at all. Never imports a framework.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import math
import sys
import types
import typing
from pathlib import Path

import pandas as pd

from harness.analysis.trials import data_label
from harness.measure.machine import slug
from harness.measure.results import Result, parse
from harness.measure.store import Store
from harness.plan.errors import HarnessError
from harness.plan.files import REPO_ROOT
from harness.plan.frameworks import default_frameworks, framework

EXTRA_FIELDS = ("predictions", "weights_file")  # optional result fields that feed two plots
MAKE_RESULTS = "python -m harness.run --framework numpy --model logistic --epochs 2 (or tox -e torch,keras,jax)"


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to one level, keys joined by '_' (metrics.epoch_s.median -> epoch_s_median)."""
    out = {}
    for key, value in d.items():
        out.update(flatten(value, f"{prefix}{key}_") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def benchmark_rows(doc: dict, path: Path) -> list[dict]:
    """One row per pytest-benchmark benchmark, with where it ran."""
    machine, commit = doc["machine_info"], doc.get("commit_info") or {}
    cpu = machine.get("cpu") or {}
    env = {"env_hostname": machine.get("node"), "env_python": machine.get("python_version"),
           "env_cpu": cpu.get("brand_raw") or machine.get("processor"), "env_cpu_count": cpu.get("count"),
           "env_commit": commit.get("id"), "env_dirty": commit.get("dirty")}
    return [{"source": "pytest-benchmark", "file": str(path), "benchmark": b["name"], "group": b.get("group"),
             "median_s": b["stats"]["median"], "iqr_s": b["stats"]["iqr"], "ops": b["stats"]["ops"],
             "rounds": b["stats"].get("rounds"), **flatten(b.get("extra_info") or {}), "status": "ok", **env}
            for b in doc["benchmarks"]]


def cell_row(result: Result, path: Path) -> dict:
    """One result as one flat row: the cell's fields (data_*, hyper_*), metrics, env (env_ prefix);
    the curves kept whole, and the typed result itself for what reads it by name."""
    # a list in the cell (data.classes) becomes text, so that cells group by it
    cell = {k: json.dumps(v) if isinstance(v, (list, tuple)) else v
            for k, v in flatten(dataclasses.asdict(result.cell)).items()}
    doc = result.to_dict()
    extra = {k: doc[k] for k in EXTRA_FIELDS if doc.get(k) is not None}
    if "weights_file" in extra:  # relative to the result file, so that a results folder can move
        extra["weights_file"] = str(path.parent / extra["weights_file"])
    return {"source": "harness", "file": str(path), "machine": result.env.machine.id,
            "table": data_label(result.cell), **cell, "id": result.cell.id, "cell_fields": tuple(cell),
            "status": result.status, "message": result.message, **flatten(doc["metrics"]),
            **flatten(doc["env"], "env_"), "curves": doc["curves"], "result": result, **extra}


def place_benchmarks(df: pd.DataFrame) -> pd.DataFrame:
    """Give each pytest-benchmark row the machine of the cells with its CPU and core count."""
    bench = df["source"] == "pytest-benchmark"
    if not bench.any():
        return df
    cells = df[~bench]
    known = {} if cells.empty else {
        (cpu, cores): machine for machine, cpu, cores in
        zip(cells["machine"], cells["env_machine_cpu"], cells["env_machine_cores"])}
    df = df.copy()
    df.loc[bench, "machine"] = [
        known.get((cpu, cores), slug(f"{cpu} {cores}c"))
        for cpu, cores in zip(df.loc[bench, "env_cpu"], df.loc[bench, "env_cpu_count"])]
    return df


def read_results(dirs: list[Path]) -> pd.DataFrame:
    """Every result and pytest-benchmark file under dirs, one row per cell or benchmark; any other
    file (an unknown schema, a side file, a result the report cannot use, a second file of a cell
    already read on that machine) is named on stderr in one line and skipped."""
    rows, kept, again = [], {}, {}
    for folder in dirs:
        if not folder.is_dir():
            raise HarnessError(f"results directory {folder} does not exist; make results with: {MAKE_RESULTS}")
        for path, doc in Store(folder).documents():
            try:
                if isinstance(doc, dict) and "machine_info" in doc and "benchmarks" in doc:
                    rows += benchmark_rows(doc, path)
                    continue
                if isinstance(doc, dict) and "pairs" in doc and path.name == "plain-loops.json":
                    continue  # the plain loops' side file (harness.run.plain_loops), not a cell
                result = parse(doc) if not isinstance(doc, Exception) else _raise(doc)
                why = unusable(result)
                if why:
                    raise HarnessError(why)
                # a cell is one trial of one machine: two files of it would count it twice
                key = (result.env.machine.id, result.cell.id)
                if key in kept:
                    again.setdefault(key, []).append(path)
                    continue
                rows.append(cell_row(result, path))
                kept[key] = path
            except (HarnessError, KeyError, TypeError, AttributeError, ValueError) as exc:
                print(f"skipped {path}: {exc if isinstance(exc, HarnessError) else repr(exc)}", file=sys.stderr)
    for key, paths in again.items():
        print(f"skipped {', '.join(map(str, paths))}: the same cell of {key[0]} as {kept[key]}, which is kept",
              file=sys.stderr)
    if not rows:
        raise HarnessError(f"no result files under {', '.join(map(str, dirs))}; make some with: {MAKE_RESULTS}")
    return place_benchmarks(pd.DataFrame(rows))


def _raise(exc: Exception):
    raise HarnessError(f"not JSON ({exc})")


# ---------------------------------------------------------------- results the report can use
def unusable(result: Result) -> str | None:
    """Why the report's later stages (summary, stats, plots) cannot use a parsed result, or None.

    The one place for these checks. Parsing builds the records but leaves each value as the
    file had it, so here: every value of its declared type; no NaN or infinity among the
    metrics; times and rates above zero (harness.analysis.stats takes logarithms of them); accuracies
    in [0, 1]; curves as long as their epochs; predictions whose images fit their shape.
    """
    m, c, hints = result.metrics, result.curves, _hints(Result)
    for name in ("cell", "status", "message", "data", "metrics", "curves", "env", "predictions", "weights_file"):
        why = _mistyped(hints[name], getattr(result, name), name)
        if why:
            return why
    bad = _first_not_finite(dataclasses.asdict(m), "metrics")
    if bad:
        return bad
    positive = [(f"metrics.steady_epoch_s[{i}]", s) for i, s in enumerate(m.steady_epoch_s)] + [
        (f"metrics.{name}", getattr(m, name)) for name in ("samples_per_epoch", "steps_per_epoch")] + [
        (f"metrics.{name}.median", getattr(m, name).median)
        for name in ("epoch_s", "train_samples_per_s", "infer_samples_per_s") if getattr(m, name) is not None]
    for where, value in positive:
        if value is not None and not value > 0:
            return f"{where} is {value!r}, not a number above zero"
    accuracies = [("metrics.test_accuracy", m.test_accuracy), ("metrics.val_accuracy", m.val_accuracy)] + [
        (f"metrics.per_class_accuracy[{i}]", a) for i, a in enumerate(m.per_class_accuracy or [])] + [
        (f"curves.{name}[{i}]", a) for name in ("test_accuracy", "val_accuracy")
        for i, a in enumerate(getattr(c, name))]
    for where, value in accuracies:
        if value is not None and not 0 <= value <= 1:
            return f"{where} is {value!r}, not an accuracy in [0, 1]"
    for name in ("train_loss", "test_loss", "test_accuracy", "epoch_s", "val_accuracy", "gpu_busy_s",
                 "energy_j", "input_s"):
        length = len(getattr(c, name))
        if length != len(c.epoch) and (length or name in ("train_loss", "test_loss", "test_accuracy", "epoch_s")):
            return f"curves.{name} has {length} values for {len(c.epoch)} epochs"
    concurrent = result.env.settings.get("concurrent_cells", 1)
    if not isinstance(concurrent, int) or isinstance(concurrent, bool) or concurrent < 1:
        return f"env.settings.concurrent_cells is {concurrent!r}, not a count of cells"
    return _bad_predictions(result.predictions)


def _mistyped(kind, value, where: str) -> str | None:
    """Where value (or a value inside it) is not of its annotated type `kind`, or None."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is typing.Any:
        return None
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        whys = [_mistyped(option, value, where) for option in args if option is not type(None)]
        return None if None in whys else whys[0] if len(whys) == 1 else f"{where} is {_kind_of(value)}"
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, kind):
            return f"{where} is {_kind_of(value)}, not a record of {kind.__name__}"
        hints = _hints(kind)
        return next(filter(None, (_mistyped(hints[f.name], getattr(value, f.name), f"{where}.{f.name}")
                                  for f in dataclasses.fields(kind))), None)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return f"{where} is {_kind_of(value)}, not a list"
        return next(filter(None, (_mistyped(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))), None)
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} is {_kind_of(value)}, not an object"
        return next(filter(None, (_mistyped(args[1], v, f"{where}.{k}") for k, v in value.items())), None)
    wanted = (int, float) if kind is float else kind
    if not isinstance(value, wanted) or (isinstance(value, bool) and kind is not bool):
        return f"{where} is {_kind_of(value)}, not {'a number' if kind in (int, float) else kind.__name__}"
    return None


@functools.cache
def _hints(kind: type) -> dict:
    return typing.get_type_hints(kind)


def _kind_of(value) -> str:
    return "missing" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _first_not_finite(value, where: str) -> str | None:
    """Where a number in value (nested dicts and lists) is NaN or infinite, or None."""
    if isinstance(value, dict):
        return next(filter(None, (_first_not_finite(v, f"{where}.{k}") for k, v in value.items())), None)
    if isinstance(value, (list, tuple)):
        return next(filter(None, (_first_not_finite(v, f"{where}[{i}]") for i, v in enumerate(value))), None)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value!r}, not a finite number"
    return None


def _bad_predictions(p) -> str | None:
    """Why a result's prediction sample cannot be drawn (harness.report.plots.digits), or None."""
    if p is None:
        return None
    try:
        size = len(base64.b64decode(p.images_b64, validate=True))
    except (binascii.Error, ValueError):
        return "predictions.images_b64 is not base64"
    if len(p.shape) != 3 or min(p.shape) < 0 or math.prod(p.shape) != size:
        return f"predictions.images_b64 holds {size} bytes, not images of shape {p.shape}"
    if not len(p.true) == len(p.predicted) <= p.shape[0]:
        return f"predictions has {len(p.true)} labels, {len(p.predicted)} predictions and {p.shape[0]} images"
    return None


def model_definitions(marker: str = "mlp") -> list[tuple[str, str]]:
    """(framework, source) of a model's definition in each framework's impl file, between the
    lines `# {marker}: begin` and `# {marker}: end`: the code itself, never a copy of it."""
    out = []
    for name in default_frameworks():
        module = framework(name).impl.split(":")[0]
        path = REPO_ROOT.joinpath(*module.split(".")).with_suffix(".py")
        text = path.read_text() if path.is_file() else ""
        begin, end = f"# {marker}: begin\n", f"# {marker}: end"
        if begin in text and end in text:
            out.append((f"{name} ({path.relative_to(REPO_ROOT)})", text.split(begin, 1)[1].split(end, 1)[0].rstrip()))
    return out
