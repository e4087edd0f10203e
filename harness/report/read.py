"""Reading: result files and pytest-benchmark files under folders, one DataFrame row each.

A file that is neither is named on stderr and skipped; hidden files (a runner's temporary
file, a tool's cache) are not read at all. Never imports a framework.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd

from harness.cell import Cell
from harness.files import REPO_ROOT
from harness.machine import slug
from harness.results import Result, SchemaError, parse
from harness.spec import HarnessError
from harness.store import Store
from impls.records import default_frameworks, framework

EXTRA_FIELDS = ("predictions", "weights_file")  # optional result fields that feed two plots
MAKE_RESULTS = "python -m harness.run --framework numpy --model logistic --epochs 2 (or tox -e torch,keras,jax)"


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to one level, keys joined by '_' (metrics.epoch_s.median -> epoch_s_median)."""
    out = {}
    for key, value in d.items():
        out.update(flatten(value, f"{prefix}{key}_") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def data_label(cell: Cell) -> str:
    """The data a cell trained on, subset and recipe included: cells compare only within one."""
    d = cell.data
    parts = [d.name]
    if d.classes:
        parts.append("classes " + ",".join(map(str, d.classes)))
    if d.train_rows or d.val_rows:
        parts.append(f"first {d.train_rows} train + {d.val_rows} val rows")
    if d.test_val:
        parts.append(f"{d.test_val} test rows as val")
    label = ", ".join(parts)
    return f"{cell.recipe}: {label}" if cell.recipe else label


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
    file (an unknown schema, a side file) is named on stderr in one line and skipped."""
    rows = []
    for folder in dirs:
        if not folder.is_dir():
            raise HarnessError(f"results directory {folder} does not exist; make results with: {MAKE_RESULTS}")
        for path, doc in Store(folder).documents():
            try:
                if isinstance(doc, dict) and "machine_info" in doc and "benchmarks" in doc:
                    rows += benchmark_rows(doc, path)
                elif isinstance(doc, dict) and "pairs" in doc and path.name == "plain-loops.json":
                    continue  # the plain loops' side file (harness.plain_loops), not a cell
                else:
                    rows.append(cell_row(parse(doc) if not isinstance(doc, Exception) else _raise(doc), path))
            except (SchemaError, KeyError, TypeError, AttributeError) as exc:
                print(f"skipped {path}: {exc if isinstance(exc, SchemaError) else repr(exc)}", file=sys.stderr)
    if not rows:
        raise HarnessError(f"no result files under {', '.join(map(str, dirs))}; make some with: {MAKE_RESULTS}")
    return place_benchmarks(pd.DataFrame(rows))


def _raise(exc: Exception):
    raise SchemaError(f"not JSON ({exc})")


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
