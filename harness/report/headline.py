"""The numbers of the first screen: per table, the fastest mode and its lead, accuracy parity, compile payback.

Also the two per-mode views that follow the tables: native against equal profile, and on a
GPU the framework tax (host time per step against device time per step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.parity import TOLERANCES
from harness.analysis.tables import Analysis, Question, idiomatic_mode
from harness.analysis.verdicts import Verdict, ratio
from harness.report.summary import Table, framework_label, missing, setting

DEVICE_BOUND = 0.8  # GPU utilisation from which a mode waits on the device rather than the host


@dataclass
class Headline:
    """One question's answer (harness.analysis.tables.Question): what is fastest, by how much,
    whether the frameworks agree."""
    table: Table
    compared: pd.DataFrame  # the table's rows of one profile at its most common settings
    settings: list[str]  # those settings, as text
    fastest: dict | None  # the row with the most training samples/s; None if none was measured
    idiomatic: dict[str, dict | None]  # "torch eager" -> that row; None if a framework's idiomatic mode did not run
    verdicts: list[Verdict]  # the fastest against each idiomatic mode and the next fastest
    accuracy_spread: float  # the largest same-seed difference in test accuracy between rows; NaN if < 2 rows
    tolerance: float | None  # the parity tests' bound for this model and profile, if they have one
    break_even: int | None  # the epoch from which the fastest leads in total time; None: never


def accuracy_spread(rows: pd.DataFrame) -> float:
    """The largest difference in test accuracy between rows at one seed, as the parity tests measure it."""
    worst = np.nan
    seeds = {s for by_seed in rows["acc_by_seed"] for s in by_seed}
    for seed in seeds:
        accs = [by_seed[seed] for by_seed in rows["acc_by_seed"] if seed in by_seed]
        if len(accs) > 1:
            worst = np.nanmax([worst, max(accs) - min(accs)])
    return float(worst)


def total_seconds(r: dict, epochs: int) -> float:
    """Training time of `epochs` epochs: the first (compile, warm-up), then steady ones."""
    return r["first_epoch_s"] + (epochs - 1) * r["epoch_s"]


def break_even_epoch(fastest: dict, others: list[dict]) -> int | None:
    """The first epoch count at which `fastest` has trained in no more total time than every other row."""
    epochs = 1
    for r in others:
        if missing(r["first_epoch_s"]) or missing(r["epoch_s"]) or total_seconds(fastest, 1) <= total_seconds(r, 1):
            continue
        saved_per_epoch = r["epoch_s"] - fastest["epoch_s"]
        if saved_per_epoch <= 0:
            return None  # it started later and never runs faster: it never catches up
        extra = (fastest["first_epoch_s"] - r["first_epoch_s"]) / saved_per_epoch
        epochs = max(epochs, 1 + math.ceil(extra - 1e-9))  # 1e-9: 2.0 / 0.01 must not round up to 201
    return epochs


def contenders(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows that compete: measured (the controls are not rows of a table)."""
    return rows[rows["sps"].notna()]


def idiomatic_rows(rows: pd.DataFrame) -> dict[str, dict | None]:
    """'torch eager' -> that row, for every framework of the rows; None where its idiomatic mode did not run."""
    out: dict[str, dict | None] = {}
    for r in rows.to_dict("records"):
        name = f"{framework_label(r)} {idiomatic_mode(r['framework']) or r['mode']}"
        out[name] = r if r["label"] == name else out.get(name)  # a fast mode does not replace it
    return out


def headline(table: Table, question: Question) -> Headline:
    keys = {c.key for c in question.configurations}
    rows = table.rows[table.rows["config"].isin(keys)]
    by_key = {r["config"]: r for r in rows.to_dict("records")}
    fastest = by_key.get(question.fastest.key) if question.fastest else None
    if fastest is None and len(contenders(rows)) == 1:  # the only row measured: no question, still the fastest
        fastest = contenders(rows).iloc[0].to_dict()
    others = [r for r in contenders(rows).to_dict("records") if fastest and r["label"] != fastest["label"]]
    return Headline(table, rows, list(question.settings), fastest, idiomatic_rows(rows), list(question.verdicts),
                    accuracy_spread(rows), TOLERANCES.get(question.profile, {}).get(table.model),
                    break_even_epoch(fastest, others) if fastest else None)


def headlines(tables: list[Table], analysis: Analysis) -> list[Headline]:
    """One headline per question of the analysis, table by table (the seeds' recipes ask none)."""
    out = []
    for t in tables:
        for q in analysis.questions:
            if q.table == (t.machine, t.data, t.model, t.device):
                out.append(headline(t, q))
    return out


def ratio_estimate(x, y) -> tuple[float, float, float]:
    """How many times faster configuration x is than y, and its 95% interval (paired by round where
    they shared rounds; NaN with too few trials). The estimate is the interval's own: where they
    shared 4 of 5 rounds, the ratio of the two geometric means over every trial sits off its centre."""
    r = ratio(x, y) if x.trials and y.trials else None
    return (r.estimate, r.low, r.high) if r else (math.nan, math.nan, math.nan)


def native_vs_equal(tables: list[Table]) -> pd.DataFrame:
    """Per framework and mode, the native profile's training rate and accuracy against the equal profile's."""
    out = []
    for t in tables:
        if "profile" not in t.varying:
            continue
        # a native row pairs with the equal row of its framework, mode, batch and epochs; precision
        # is the framework's default in native, so equal's float32 is its partner
        key = ["label"] + [c for c in ("hyper_batch_size", "hyper_epochs") if c in t.varying]
        native = t.rows[t.rows["profile"] == "native"]
        equal = t.rows[t.rows["profile"] == "equal"].sort_values(
            "precision", key=lambda p: p != "float32", kind="stable").drop_duplicates(key)
        for e in native.merge(equal, on=key, suffixes=("_n", "_e")).to_dict("records"):
            row = ", ".join([e["label"]] + [setting(c, e[c]) for c in key[1:]])
            estimate, low, high = ratio_estimate(e["configuration_n"], e["configuration_e"])
            out.append({"table": t.title, "model": t.model, "row": row,
                        "equal samples/s": e["sps_e"], "native samples/s": e["sps_n"],
                        # no uncontended trials on a side: the rates' ratio, with no interval
                        "native ÷ equal": e["sps_n"] / e["sps_e"] if math.isnan(estimate) else estimate,
                        "low": low, "high": high,
                        "equal accuracy": e["acc_mean_e"], "native accuracy": e["acc_mean_n"]})
    return pd.DataFrame(out)


def framework_tax(table: Table) -> pd.DataFrame:
    """Host against device time per step for a GPU table's rows, and where each mode turns device-bound."""
    rows = table.rows[table.rows["gpu_busy_s"].notna() & table.rows["steps_per_epoch"].notna()]
    if rows.empty:
        return pd.DataFrame()
    varying = [c for c in table.varying if c != "hyper_batch_size"]
    bound_from = {}
    for label, g in rows.groupby(["label"] + varying, sort=False):
        if g["hyper_batch_size"].nunique() > 1:  # a sweep: the smallest batch at which the device is the bottleneck
            bound = g[g["gpu_util"] >= DEVICE_BOUND]["hyper_batch_size"]
            bound_from[label] = (f"batch {bound.min()}" if len(bound)
                                 else f"not up to batch {g['hyper_batch_size'].max()}")
    out = []
    for r in rows.to_dict("records"):
        key = tuple([r["label"]] + [r[c] for c in varying])
        out.append({"row": ", ".join([r["label"]] + [setting(c, r[c]) for c in table.varying]),
                    "host ms/step": 1000 * r["epoch_s"] / r["steps_per_epoch"],
                    "device ms/step": 1000 * r["gpu_busy_s"] / r["steps_per_epoch"],
                    "GPU busy": r["gpu_util"], "device-bound from": bound_from.get(key, "—")})
    return pd.DataFrame(out)
