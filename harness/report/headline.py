"""The numbers of the first screen: per table, the fastest mode and its lead, accuracy parity, compile payback.

Also the two per-mode views that follow the tables: native against equal profile, and on a
GPU the framework tax (host time per step against device time per step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import stats
from harness.parity import TOLERANCES
from harness.report.summary import Table, missing, setting
from harness.report.verdicts import NoiseFloor, comparisons, contenders, idiomatic_rows, named_rivals, speed

DEVICE_BOUND = 0.8  # GPU utilisation from which a mode waits on the device rather than the host


@dataclass
class Headline:
    """One comparison's answer: what is fastest, by how much beyond the noise, whether the frameworks agree."""
    table: Table
    compared: pd.DataFrame  # the table's rows of one profile at its most common settings
    settings: list[str]  # those settings, as text
    fastest: dict | None  # the row with the most training samples/s; None if none was measured
    idiomatic: dict[str, dict | None]  # "torch eager" -> that row; None if a framework's idiomatic mode did not run
    verdicts: list[stats.Verdict]  # the fastest against each idiomatic mode and the next fastest
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


def headline(table: Table, rows: pd.DataFrame, settings: list[str], floor: NoiseFloor) -> Headline:
    measured = contenders(rows)
    fastest = measured.loc[measured["sps_median"].idxmax()].to_dict() if len(measured) else None
    others = [r for r in measured.to_dict("records") if fastest and r["label"] != fastest["label"]]
    verdicts = [speed(fastest, rival, floor) for rival in named_rivals(rows, fastest)] if fastest else []
    profile = rows["profile"].iloc[0] if "profile" in rows else "equal"
    return Headline(table, rows, settings, fastest, idiomatic_rows(rows), verdicts, accuracy_spread(rows),
                    TOLERANCES.get(profile, {}).get(table.model),
                    break_even_epoch(fastest, others) if fastest else None)


def headlines(tables: list[Table], floor: NoiseFloor) -> list[Headline]:
    """One headline per profile of each table of the main comparison (the seeds' recipes come later)."""
    return [headline(t, rows, settings, floor) for t in tables if not t.recipe for rows, settings in comparisons(t)]


def ratio_bounds(times_x, times_y) -> tuple[float, float]:
    """The 95% interval of how many times faster x is than y (NaN with too few trials)."""
    ratio = stats.speed_ratio(times_x, times_y) if len(times_x) and len(times_y) else None
    return (ratio.low, ratio.high) if ratio else (math.nan, math.nan)


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
            out.append({"table": t.title, "model": t.model, "row": row,
                        "equal samples/s": e["sps_median_e"], "native samples/s": e["sps_median_n"],
                        "native ÷ equal": e["sps_median_n"] / e["sps_median_e"],
                        **dict(zip(("low", "high"), ratio_bounds(e["times_n"], e["times_e"]))),
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
            bound_from[label] = f"batch {bound.min()}" if len(bound) else f"not up to batch {g['batch_size'].max()}"
    out = []
    for r in rows.to_dict("records"):
        key = tuple([r["label"]] + [r[c] for c in varying])
        out.append({"row": ", ".join([r["label"]] + [setting(c, r[c]) for c in table.varying]),
                    "host ms/step": 1000 * r["epoch_s"] / r["steps_per_epoch"],
                    "device ms/step": 1000 * r["gpu_busy_s"] / r["steps_per_epoch"],
                    "GPU busy": r["gpu_util"], "device-bound from": bound_from.get(key, "—")})
    return pd.DataFrame(out)
