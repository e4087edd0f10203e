"""python -m harness.report: tables, plots and an HTML page from the result files.

    python -m harness.report                      every result under results/: stdout, REPORT.md, plots/
    python -m harness.report results/runs --html  also report.html, one self-contained page
    python -m harness.report --csv [PATH | -]     only the flat table, one row per cell (report.csv)
    python -m harness.report --compare A B        result set B against A; exit 1 on a regression

Reads the runner's result files (harness/results.py) and pytest-benchmark JSON files, recursively;
a file that is neither is named on stderr and skipped. Never imports a framework.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.cell import steady_epochs as cell_steady_epochs
from harness.recipes import RECIPES
from harness.results import RESULTS_DIR, SCHEMA, SCHEMA_VERSION, STATUSES
from harness.spec import HarnessError, cli_main

# --compare calls a run a regression when B trains or infers this fraction slower than A:
# epoch times on a shared CPU wander by a few percent between runs, 10% is beyond that.
SLOWDOWN_THRESHOLD = 0.10
# ... or when its mean test accuracy is this much lower (absolute): seeds alone move MNIST
# accuracy by a few tenths of a point, a whole point is a change in what was learned.
ACCURACY_DROP_THRESHOLD = 0.01
FAIRNESS_LIST = 6  # a setting's value names at most this many rows, else counts them
TABLE_KEY = ["table", "model"]  # one table per data (subset, recipe) and model: see data_label
NAMED = ["framework", "backend", "mode"]  # always in a row's label
# Cell fields that are not settings: seeds are pooled; hyper_batch_size/epochs repeat batch_size/epochs.
NOT_CONFIG = {"id", "seed", "hyper_seed", "hyper_batch_size", "hyper_epochs"}
# What Fairness names when every setting is equal (it compares them all).
HEADLINE_SETTINGS = ("precision", "device", "batch_size", "epochs", "hyper_optimizer", "hyper_lr", "hyper_eps",
                     "hyper_init", "env_settings_threads")
EXTRA_FIELDS = ("predictions", "weights_file")  # optional result fields that feed two plots
MAKE_RESULTS = "python -m harness.run --framework numpy --model logistic --epochs 2 (or tox -e torch,keras,jax)"


# ---------------------------------------------------------------- reading
def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to one level, keys joined by '_' (metrics.epoch_s.median -> epoch_s_median)."""
    out = {}
    for key, value in d.items():
        out.update(flatten(value, f"{prefix}{key}_") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def schema_problem(doc) -> str | None:
    """Why doc is not a result file of this schema version, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("schema_version") != SCHEMA_VERSION:
        return f"schema_version {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}"
    absent = [k for k in SCHEMA["required"] if k not in doc]
    for name, spec in SCHEMA["properties"].items():
        if "required" in spec and isinstance(doc.get(name), dict):
            absent += [f"{name}.{k}" for k in spec["required"] if k not in doc[name]]
    return f"missing {', '.join(absent)}" if absent else None


def benchmark_rows(doc: dict, path: Path) -> list[dict]:
    """One row per pytest-benchmark benchmark, with where it ran."""
    machine, commit = doc["machine_info"], doc.get("commit_info") or {}
    env = {"env_hostname": machine.get("node"), "env_python": machine.get("python_version"),
           "env_cpu": (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor"),
           "env_commit": commit.get("id"), "env_dirty": commit.get("dirty")}
    return [{"source": "pytest-benchmark", "file": str(path), "benchmark": b["name"], "group": b.get("group"),
             "median_s": b["stats"]["median"], "iqr_s": b["stats"]["iqr"], "ops": b["stats"]["ops"],
             "rounds": b["stats"].get("rounds"), **flatten(b.get("extra_info") or {}), "status": "ok", **env}
            for b in doc["benchmarks"]]


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


def file_rows(path: Path) -> list[dict]:
    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and "machine_info" in doc and "benchmarks" in doc:
        return benchmark_rows(doc, path)
    problem = schema_problem(doc)
    if problem:
        raise ValueError(problem)
    # a list in the cell (dataset.classes) becomes text, so that cells group by it
    cell = {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(doc["cell"]).items()}
    extra = {k: doc[k] for k in EXTRA_FIELDS if k in doc}
    if "weights_file" in extra:  # relative to the result file, so that a results folder can move
        extra["weights_file"] = str(path.parent / extra["weights_file"])
    return [{"source": "harness", "file": str(path), "table": data_label(doc["cell"]), **cell,
             "cell_fields": tuple(cell), "status": doc["status"],
             "message": doc["message"], **flatten(doc["metrics"]), **flatten(doc["env"], "env_"),
             "curves": doc["curves"], **extra}]


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
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- summarising
def column(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(None, index=df.index, dtype=object)


def missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def show(v) -> str:
    return "—" if missing(v) else f"{v:g}" if isinstance(v, float) else str(v)


def first(values):
    return next((v for v in values if not missing(v)), None)


def median(values) -> float:
    values = [v for v in values if not missing(v)]
    return float(np.median(values)) if values else np.nan


def metric(r: dict, name: str):
    """A metric's median where the cell recorded a spread, else its number (or None)."""
    return first([r.get(f"{name}_median"), r.get(name)])


def config_columns(df: pd.DataFrame) -> list[str]:
    """Columns that say what a cell ran, apart from its seed: the result files' cell fields."""
    fields = set().union(*column(df, "cell_fields").dropna())
    return [c for c in df.columns if c in fields and c not in NOT_CONFIG]


def labels(df: pd.DataFrame, ignore=()) -> pd.Series:
    """framework[backend] mode, plus the settings that tell apart two rows of one framework."""
    config = [c for c in config_columns(df) if c not in TABLE_KEY + NAMED + list(ignore)]
    parts = []
    for _, table in df.groupby(TABLE_KEY):
        shown = table[config].map(show)  # a setting that differs between frameworks goes to Fairness
        varying = [c for c in config if shown.groupby([table[n].map(show) for n in NAMED])[c].nunique().max() > 1]
        parts.append(table.apply(lambda r: " ".join(
            [r["framework"] + ("" if missing(r["backend"]) else f"[{r['backend']}]"), str(r["mode"])]
            + [f"{c}={show(r[c])}" for c in varying]), axis=1))
    return pd.concat(parts).reindex(df.index)


def steady_epochs(ok: list[dict]) -> tuple[list[float], list[float]]:
    """Every steady epoch of every seed: its seconds and its training samples/s."""
    times, rates = [], []
    for r in ok:
        t = np.asarray(cell_steady_epochs(r["curves"]), np.float64)
        if t.size:  # the runner counts steps*batch samples an epoch: the fastest epoch gave the max rate
            times += list(t)
            rates += list(r["train_samples_per_s_max"] * r["epoch_s_min"] / t)
    return times, rates


def summarise(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of each table, its seeds pooled: every number the tables show."""
    cells = cells.assign(label=labels(cells))
    config = config_columns(cells)
    rows = []
    for (_, _, label), g in cells.groupby(TABLE_KEY + ["label"]):
        ok = g[g["status"] == "ok"].to_dict("records")
        times, rates = steady_epochs(ok)
        q = np.percentile(rates, [0, 25, 50, 75, 100]) if rates else [np.nan] * 5
        # Accuracy is a sample over seeds: a seed run twice (say, in two result folders) is
        # one seed, at its runs' mean; its timings all count, each run being a new process.
        by_seed: dict = {}
        for r in ok:
            if not missing(r["test_accuracy"]):
                by_seed.setdefault(r["seed"], []).append(r["test_accuracy"])
        acc = [float(np.mean(v)) for v in by_seed.values()]
        counts = g["status"].value_counts().reindex(STATUSES).dropna().astype(int)
        rss = [r["peak_rss_mb"] for r in ok if not missing(r["peak_rss_mb"])]  # a peak: report the largest seed's
        rows.append({
            **g.iloc[0][config].to_dict(), "table": g.iloc[0]["table"], "cell_fields": tuple(config),
            "label": label,
            "key": " ".join(f"{c}={show(g.iloc[0][c])}" for c in config if c not in TABLE_KEY),
            "acc_values": acc, "acc_mean": np.mean(acc) if acc else np.nan,
            "acc_sd": np.std(acc, ddof=1) if len(acc) > 1 else np.nan,  # the sample sd over seeds
            "val_mean": median(r.get("val_accuracy") for r in ok),
            "first_epoch_s": median(r["first_epoch_s"] for r in ok), "epoch_s": median(times),
            **dict(zip(["sps_min", "sps_q1", "sps_median", "sps_q3", "sps_max"], q)),
            "infer_sps": median(metric(r, "infer_samples_per_s") for r in ok),
            "latency_ms": median(r.get("latency_b1_ms_p50") for r in ok),
            "gpu_busy_s": median(metric(r, "gpu_busy_s") for r in ok),
            "gpu_util": median(metric(r, "gpu_utilization") for r in ok),
            "gpu_reason": first(r.get("gpu_busy_s_reason") for r in ok),
            "rss_mb": max(rss, default=np.nan),
            "device_mb": median(metric(r, "peak_device_mb") for r in ok),
            "device_reason": first(r.get("peak_device_mb_reason") for r in ok),
            "status": ", ".join(f"{s} {n}" for s, n in counts.items()),
            "problems": [f"seed {show(r['seed'])}: {r['status']}: {r['message']}"
                         for r in g.to_dict("records") if r["status"] != "ok"]})
    out = pd.DataFrame(rows).sort_values(TABLE_KEY + ["framework", "mode", "batch_size"], kind="stable")
    out["sps_iqr"] = out["sps_q3"] - out["sps_q1"]
    out["slowdown"] = out.groupby(TABLE_KEY)["sps_median"].transform("max") / out["sps_median"]
    return out


# ---------------------------------------------------------------- tables
class Notes(dict):
    """Footnotes of one table: each distinct text gets its number once."""

    def ref(self, text: str) -> str:
        return f"[{self.setdefault(text, len(self) + 1)}]"

    def lines(self) -> list[str]:
        return [f"[{n}] {text}" for text, n in self.items()]


def num(v, fmt: str = "{:.4g}", reason=None, notes: Notes | None = None) -> str:
    """A number, or n/a with its reason as a footnote, or — where nothing was measured."""
    if not missing(v):
        return fmt.format(v)
    return f"n/a {notes.ref(reason)}" if notes is not None and not missing(reason) else "—"


def accuracy(r: dict) -> str:
    acc = r["acc_values"]
    return f"{r['acc_mean']:.4f} ± {num(r['acc_sd'], '{:.4f}')} (n={len(acc)})" if acc else "—"


def display_table(summary: pd.DataFrame, notes: Notes) -> pd.DataFrame:
    rows = []
    for r in summary.to_dict("records"):
        util = "" if missing(r["gpu_util"]) else f" ({r['gpu_util']:.0%})"
        rows.append({
            "run": r["label"], "test accuracy (mean ± sd, n seeds)": accuracy(r),
            "first epoch s": num(r["first_epoch_s"]), "steady epoch s": num(r["epoch_s"]),
            "train samples/s (median ± IQR)":
                "—" if missing(r["sps_median"]) else f"{r['sps_median']:,.0f} ± {r['sps_iqr']:,.0f}",
            "× slower than fastest": num(r["slowdown"], "{:.2f}"),
            "infer samples/s": num(r["infer_sps"], "{:,.0f}"), "latency b1 p50 ms": num(r["latency_ms"]),
            "GPU busy s (util)": num(r["gpu_busy_s"], "{:.4g}", r["gpu_reason"], notes) + util,
            "peak RSS MB": num(r["rss_mb"], "{:.0f}"),
            "peak device MB": num(r["device_mb"], "{:.0f}", r["device_reason"], notes),
            "status": r["status"] + "".join(f" {notes.ref(p)}" for p in r["problems"])})
    return pd.DataFrame(rows)


def fairness(cells: pd.DataFrame) -> list[str]:
    """Every setting that differs between the compared cells of one table, or that none does."""
    measured = cells[cells["status"].isin(["ok", "diverged"])]  # failed cells record no settings
    cells = measured if len(measured) else cells
    settings = [c for c in config_columns(cells) + [c for c in cells if c.startswith("env_settings_")]
                if c not in TABLE_KEY + ["framework", "mode"]]
    def rows(labels) -> str:  # a long list of rows is a count: the table above has them
        labels = sorted(set(labels))
        return ", ".join(labels) if len(labels) <= FAIRNESS_LIST else f"{len(labels)} rows"

    lines = []
    for c in settings:
        values = cells[c].map(show)
        if values.nunique() > 1:
            lines.append(f"{c} differs: " + "; ".join(
                f"{v} ({rows(cells['label'][values == v])})" for v in values.unique()))
    return lines or [f"All {len(settings)} settings are equal across these cells, among them: "
                     + ", ".join(f"{c} {show(cells[c].iloc[0])}" for c in HEADLINE_SETTINGS if c in cells)]


def published(summary: pd.DataFrame) -> pd.DataFrame:
    """Cells run from a seed's recipe, beside the figure that seed published."""
    rows = []
    for r in summary[column(summary, "recipe").isin(list(RECIPES))].to_dict("records"):
        recipe = RECIPES[r["recipe"]]
        ours = accuracy(r) if recipe.metric == "test_accuracy" else num(r["val_mean"], "{:.4f}")
        rows.append({"recipe": f"{recipe.name} (seed {recipe.seed})", "model": r["model"], "run": r["label"],
                     "ours": f"{ours} ({recipe.metric})",
                     "published": num(recipe.published.get(r["model"]), "{:.4f}"),
                     "published by": recipe.published_by, "deviations": recipe.deviations or "—"})
    return pd.DataFrame(rows)


def header(df: pd.DataFrame) -> list[str]:
    """Where and on what every number was measured."""
    def distinct(values, sep=", ") -> str:
        return sep.join(sorted({str(v) for v in values if not missing(v)})) or "—"

    versions = [c for c in df if c.startswith("env_framework_version_")]
    machines = [f"{show(h)}: {show(c)}" + ("" if missing(d) or d == c else f", device {d}") for h, c, d in
                zip(column(df, "env_hostname"), column(df, "env_cpu"), column(df, "env_device_name"))]
    return [f"Machines (host: cpu, device): {distinct(machines, '; ')}",
            f"Python {distinct(column(df, 'env_python'))}; numpy {distinct(column(df, 'env_numpy'))}",
            "Frameworks: " + distinct(f"{c.removeprefix('env_framework_version_')} {v}" for c in versions
                                      for v in df[c].dropna()),
            "Commits: " + distinct(f"{show(c)[:10]}{' (dirty)' if show(d) == 'True' else ''}"
                                   for c, d in zip(column(df, "env_commit"), column(df, "env_dirty")))]


# ---------------------------------------------------------------- documents
def report_blocks(df: pd.DataFrame, plot_dir: Path) -> list[tuple]:
    """The report as blocks (heading, paragraph, list, table, image), rendered as markdown or HTML."""
    cells, bench = df[df["source"] == "harness"], df[df["source"] == "pytest-benchmark"]
    blocks = [("h1", "Framework comparison"),
              ("p", f"{len(cells)} cells and {len(bench)} pytest-benchmark rows. Each table: one row per "
                    "configuration, seeds pooled; × slower than fastest: the table's best training samples/s "
                    "over the row's (1.00: the fastest)."),
              ("ul", header(df))]
    if len(cells):
        summary, cells = summarise(cells), cells.assign(label=labels(cells))
        for (ds, model), t in summary.groupby(TABLE_KEY):
            notes = Notes()
            blocks += [("h2", f"{ds} / {model}"), ("table", display_table(t, notes)), ("ul", notes.lines()),
                       ("h3", "Fairness"),
                       ("ul", fairness(cells[(cells["table"] == ds) & (cells["model"] == model)]))]
        if len(seeds := published(summary)):
            blocks += [("h2", "Seed recipes: ours against the published figure"), ("table", seeds)]
        from harness.report_plots import plot_blocks  # imports report: loaded on use

        blocks += plot_blocks(cells[cells["status"] == "ok"], summary, plot_dir)
    if len(bench):
        shown = [c for c in bench.dropna(axis=1, how="all") if c not in ("source", "file", "status")]
        blocks += [("h2", "pytest-benchmark"), ("table", bench[shown].map(show))]
    return blocks


def render_md(blocks: list[tuple], base: Path) -> str:
    out = []
    for kind, x in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + x)
        elif kind == "p":
            out.append(x)
        elif kind == "ul" and x:
            out.append("\n".join(f"- {item}" for item in x))
        elif kind == "table":
            rows = [[str(v).replace("|", "\\|") for v in row] for row in x.itertuples(index=False)]
            out.append("\n".join(["| " + " | ".join(x.columns) + " |", "|" + " --- |" * len(x.columns)]
                                 + ["| " + " | ".join(row) + " |" for row in rows]))
        elif kind == "img":
            out.append(f"![{x[0]}]({x[1].relative_to(base).as_posix()})")
    return "\n\n".join(out) + "\n"


def render_html(blocks: list[tuple]) -> str:
    """One self-contained page: the plots inlined as base64 PNG."""
    out = []
    for kind, x in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            out.append(f"<{kind}>{html.escape(x)}</{kind}>")
        elif kind == "ul" and x:
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in x) + "</ul>")
        elif kind == "table":
            out.append(x.to_html(index=False, border=0))
        elif kind == "img":
            data = base64.b64encode(x[1].read_bytes()).decode()
            out.append(f'<figure><img alt="{html.escape(x[0])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(x[0])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Framework comparison</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def emit(blocks: list[tuple], path: Path) -> None:
    """Markdown to stdout and to path."""
    text = render_md(blocks, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    sys.stdout.write(text)


def compare(a: Path, b: Path) -> tuple[list[tuple], bool]:
    """Result set B beside A: throughput ratios and accuracy differences; True if B regressed."""
    def summary(folder: Path) -> pd.DataFrame:
        cells = read_results([folder]).query("source == 'harness'")
        if cells.empty:
            raise HarnessError(f"no result files under {folder}; make some with: {MAKE_RESULTS}")
        return summarise(cells)

    m = summary(a).merge(summary(b), on=TABLE_KEY + ["key"], how="outer", suffixes=("_a", "_b"))
    train, infer = m["sps_median_b"] / m["sps_median_a"], m["infer_sps_b"] / m["infer_sps_a"]
    acc = m["acc_mean_b"] - m["acc_mean_a"]
    worse = (train < 1 - SLOWDOWN_THRESHOLD) | (infer < 1 - SLOWDOWN_THRESHOLD) | (acc < -ACCURACY_DROP_THRESHOLD)
    verdict = np.select([m["label_a"].isna(), m["label_b"].isna(), worse, train.isna()],
                        ["only in B", "only in A", "REGRESSION", "not measured"], "ok")
    columns = {"train samples/s A": (m["sps_median_a"], "{:,.0f}"),
               "train samples/s B": (m["sps_median_b"], "{:,.0f}"), "train B/A": (train, "{:.2f}"),
               "infer B/A": (infer, "{:.2f}"), "accuracy A": (m["acc_mean_a"], "{:.4f}"),
               "accuracy B": (m["acc_mean_b"], "{:.4f}"), "accuracy B−A": (acc, "{:+.4f}")}
    table = pd.DataFrame({"data / model": m["table"] + " / " + m["model"],
                          "run": m["label_a"].fillna(m["label_b"]),
                          **{name: v.map(lambda x, f=fmt: num(x, f)) for name, (v, fmt) in columns.items()},
                          "verdict": verdict})
    blocks = [("h1", f"Comparison: {b} against {a}"),
              ("p", f"REGRESSION: training or inference samples/s more than {SLOWDOWN_THRESHOLD:.0%} below A's, "
                    f"or mean test accuracy more than {ACCURACY_DROP_THRESHOLD:.2f} below A's."),
              ("table", table)]
    return blocks, bool((verdict == "REGRESSION").any())


def write_csv(df: pd.DataFrame, target: str, out_dir: Path) -> None:
    """The flat table, one row per cell; lists as JSON text, the curves left out."""
    flat = df.drop(columns=["curves", "predictions", "cell_fields"], errors="ignore")
    flat = flat.map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v).convert_dtypes()
    if target == "-":
        flat.to_csv(sys.stdout, index=False)
        return
    path = Path(target) if target else out_dir / "report.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    flat.to_csv(path, index=False)
    print(f"{len(flat)} rows in {path}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="*", type=Path, default=[RESULTS_DIR],
                   help="result folders, read recursively (default results/)")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR,
                   help="for REPORT.md, plots/, report.html, report.csv, COMPARE.md (default results/)")
    p.add_argument("--html", action="store_true", help="also write report.html, tables and plots inlined")
    p.add_argument("--csv", nargs="?", const="", metavar="PATH",
                   help="write only the flat table (default OUT_DIR/report.csv; - for stdout); "
                        "folders go before it")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"),
                   help="B against A, also to OUT_DIR/COMPARE.md")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.compare:
        blocks, regressed = compare(*args.compare)
        emit(blocks, args.out_dir / "COMPARE.md")
        return 1 if regressed else 0
    df = read_results(args.dirs)
    if args.csv is not None:
        write_csv(df, args.csv, args.out_dir)
        return 0
    blocks = report_blocks(df, args.out_dir / "plots")
    emit(blocks, args.out_dir / "REPORT.md")
    if args.html:
        (args.out_dir / "report.html").write_text(render_html(blocks))
    return 0


if __name__ == "__main__":
    cli_main(main)
