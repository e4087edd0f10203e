"""Reading: result files and pytest-benchmark files under folders, one DataFrame row each.

A file that is neither is named on stderr and skipped; hidden files (a runner's temporary
file, a tool's cache) are not read at all. Never imports a framework.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from harness.results import REPO_ROOT, schema_problem, slug
from harness.spec import HarnessError
from impls.records import default_frameworks, framework

EXTRA_FIELDS = ("predictions", "weights_file")  # optional result fields that feed two plots
MAKE_RESULTS = "python -m harness.run --framework numpy --model logistic --epochs 2 (or tox -e torch,keras,jax)"


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to one level, keys joined by '_' (metrics.epoch_s.median -> epoch_s_median)."""
    out = {}
    for key, value in d.items():
        out.update(flatten(value, f"{prefix}{key}_") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def data_label(cell: dict) -> str:
    """The data a cell trained on, subset and recipe included: cells compare only within one."""
    d = cell["dataset"]
    parts = [d["name"]]
    if d.get("classes"):
        parts.append("classes " + ",".join(map(str, d["classes"])))
    if d.get("train_rows") or d.get("val_rows"):
        parts.append(f"first {d.get('train_rows')} train + {d.get('val_rows')} val rows")
    if d.get("test_val"):
        parts.append(f"{d['test_val']} test rows as val")
    label = ", ".join(parts)
    return f"{cell['recipe']}: {label}" if cell.get("recipe") else label


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


def cell_row(doc: dict, path: Path) -> dict:
    """One result file as one flat row: cell fields, metrics, env (env_ prefix), curves kept whole."""
    # a list in the cell (dataset.classes) becomes text, so that cells group by it
    cell = {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(doc["cell"]).items()}
    extra = {k: doc[k] for k in EXTRA_FIELDS if k in doc}
    if "weights_file" in extra:  # relative to the result file, so that a results folder can move
        extra["weights_file"] = str(path.parent / extra["weights_file"])
    return {"source": "harness", "file": str(path), "machine": doc["env"]["machine"]["id"],
            "table": data_label(doc["cell"]), **cell, "cell_fields": tuple(cell), "status": doc["status"],
            "message": doc["message"], **flatten(doc["metrics"]), **flatten(doc["env"], "env_"),
            "curves": doc["curves"], **extra}


def file_rows(path: Path) -> list[dict]:
    """The rows of one file, or a ValueError saying why it is neither kind of file."""
    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and "machine_info" in doc and "benchmarks" in doc:
        return benchmark_rows(doc, path)
    problem = schema_problem(doc)
    if problem:
        raise ValueError(problem)
    return [cell_row(doc, path)]


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
    """Every result and pytest-benchmark file under dirs, one row per cell or benchmark."""
    rows = []
    for folder in dirs:
        if not folder.is_dir():
            raise HarnessError(f"results directory {folder} does not exist; make results with: {MAKE_RESULTS}")
        for path in sorted(folder.rglob("*.json")):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue  # hidden: a runner's temporary file, a tool's cache
            try:
                rows += file_rows(path)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                print(f"skipped {path}: {exc if isinstance(exc, ValueError) else repr(exc)}", file=sys.stderr)
    if not rows:
        raise HarnessError(f"no result files under {', '.join(map(str, dirs))}; make some with: {MAKE_RESULTS}")
    return place_benchmarks(pd.DataFrame(rows))


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
