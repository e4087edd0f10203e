"""Summarising: the cells of a table pooled into one row per configuration, and the tables themselves.

A table is one machine, one data set (subset and recipe included), one model and one device:
rows compare only within it. A row is a framework and mode; a setting that varies between
the rows (batch size, precision, profile) is a column, one that does not is the table's note.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.analysis.tables import CHOSEN_SETTINGS, setting, show
from harness.analysis.trials import configurations
from harness.measure.machine import slug
from harness.measure.results import STATUSES, Result, Spread
from harness.plan.frameworks import frameworks

TABLE_KEY = ["machine", "table", "model", "device"]
NAMED = ["framework", "backend", "mode", "twin", "planted_slowdown"]  # a row's label
# Cell fields that are not settings: seeds and trials are repetitions of one configuration.
NOT_CONFIG = {"id", "hyper_seed", "trial", "data_sha256"}
# CHOSEN_SETTINGS (harness.analysis.tables): a column where they differ between rows, else
# named in the table's note. Any other setting that differs (an optimizer's eps, a framework
# setting) is in the table's fairness block.
ACCURACY_TARGET = 0.97  # "time to 97%": the accuracy a tutorial's MNIST model is expected to reach


def missing(v) -> bool:
    """None or NaN: nothing was measured."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def field_name(column_name: str) -> str:
    """A flat column as the result file names it: env_settings_threads -> settings.threads."""
    for prefix, dotted in (("env_settings_", "settings."), ("hyper_", "hyper."), ("data_", "data.")):
        if column_name.startswith(prefix):
            return dotted + column_name.removeprefix(prefix)
    return column_name


def first(values):
    """The first value that is not missing, or None."""
    return next((v for v in values if not missing(v)), None)


def median(values) -> float:
    """The median of the values that are not missing; NaN if none is."""
    values = [v for v in values if not missing(v)]
    return float(np.median(values)) if values else np.nan


def column(df: pd.DataFrame, name: str) -> pd.Series:
    """df[name], or a column of None where no file had that field."""
    return df[name] if name in df else pd.Series(None, index=df.index, dtype=object)


def framework_label(r) -> str:
    """torch, or keras[jax] for a Keras backend."""
    return r["framework"] + ("" if missing(r["backend"]) else f"[{r['backend']}]")


def row_label(r) -> str:
    """'torch eager', 'keras[jax] fit': what names a row ('(A/A twin)', '(planted 1.25x)' after a control's)."""
    planted = r.get("planted_slowdown")
    control = (" (A/A twin)" if r.get("twin") is True else
               f" (planted {planted:g}x)" if not missing(planted) and planted != 1 else "")
    env = json.loads(r["env"]) if isinstance(r.get("env"), str) else []  # a noise experiment's variant
    return f"{framework_label(r)} {r['mode']}" + "".join(f" {name}={value}" for name, value in env) + control


def framework_modes(framework: str) -> tuple[str, ...]:
    """A framework's modes, its idiomatic one (the code its users write) first; () if unknown."""
    record = frameworks().get(framework)
    return record.modes if record else ()


def mode_rank(rows: pd.DataFrame) -> pd.Series:
    """Where each row's mode stands in its framework's list: the idiomatic mode first."""
    return rows.apply(lambda r: (framework_modes(r["framework"]) + (r["mode"],)).index(r["mode"]), axis=1)


def config_columns(df: pd.DataFrame) -> list[str]:
    """Columns that say what a cell ran, apart from its seed: the result files' cell fields."""
    fields = set().union(*column(df, "cell_fields").dropna())
    return [c for c in df.columns if c in fields and c not in NOT_CONFIG]


def settings_columns(df: pd.DataFrame) -> list[str]:
    """The configuration apart from a row's table and label: what may vary between rows."""
    return [c for c in config_columns(df) if c not in TABLE_KEY + NAMED]


def training_clock(r: dict) -> np.ndarray:
    """Training seconds at the end of each epoch (evaluation excluded, as the harness times it).

    The CUPTI-traced epoch counts at a steady epoch's time: tracing, not training, slowed it.
    """
    c = r["curves"]
    steady = median(r.get("steady_epoch_s") or [])
    seconds = [steady if e == c.get("profiled_epoch") and not missing(steady) else s
               for e, s in zip(c["epoch"], c["epoch_s"])]
    return np.cumsum(np.asarray(seconds, np.float64))


def time_to_target(r: dict) -> float:
    """Training seconds until test accuracy first reached ACCURACY_TARGET, or NaN."""
    for elapsed, acc in zip(training_clock(r), r["curves"]["test_accuracy"]):
        if not missing(acc) and acc >= ACCURACY_TARGET:
            return float(elapsed)
    return np.nan


def spread_median(value) -> float:
    """A Spread's median, a number as it is, NaN for none or a NotAvailable."""
    if isinstance(value, Spread):
        return value.median
    return float(value) if isinstance(value, (int, float)) else np.nan


def time_split(results: list[Result]) -> dict:
    """The median over trials of each part of a steady epoch (harness.measure.split), NaN where none was taken."""
    splits = [r.metrics.split for r in results if r.metrics.split is not None]
    parts = ("input_s", "overhead_s", "arithmetic_s")
    return {f"split_{p}": median(getattr(s, p) for s in splits) for p in parts} | {
        "split_input_how": first(s.input_how for s in splits), "split_note": first(s.note or None for s in splits)}


def configuration(key: tuple, g: pd.DataFrame, keys: list[str]) -> dict:
    """Every number the tables show for one configuration: its trials (processes) pooled.

    Speed is the analysis layer's (harness.analysis.trials): the geometric mean over trials with
    its 95% interval, never over the epochs of one process; trials that other processes
    contended for are left out and counted. Accuracy is a sample over seeds: a seed run twice
    is one seed, at its runs' mean.
    """
    ok = [r for r in g["result"] if r.status == "ok"]
    analysed = configurations(list(g["result"]))[0]
    rate = analysed.rate if analysed.trials else None
    by_seed: dict = {}
    for r in ok:
        if r.metrics.test_accuracy is not None:
            by_seed.setdefault(r.cell.hyper.seed, []).append(r.metrics.test_accuracy)
    by_seed = {seed: float(np.mean(v)) for seed, v in by_seed.items()}
    acc = list(by_seed.values())
    counts = g["status"].value_counts().reindex(STATUSES).dropna().astype(int)
    na = [r.metrics for r in ok]
    head = dict(zip(keys, key))
    return {
        **head, "label": row_label(head), "configuration": analysed, "config": analysed.key,
        "control": analysed.control, "acc_by_seed": by_seed, "acc_values": acc,
        "acc_mean": np.mean(acc) if acc else np.nan,
        "acc_sd": np.std(acc, ddof=1) if len(acc) > 1 else np.nan,  # the sample sd over seeds
        "val_mean": median(m.val_accuracy for m in na),
        "times": analysed.times, "n_trials": len(analysed.trials), "infer_times": analysed.infer_times,
        "n_contended": analysed.contended,
        "contention_unknown": sum(t.contended is None for t in analysed.trials),
        "sps": rate.estimate if rate else np.nan, "sps_low": rate.low if rate else np.nan,
        "sps_high": rate.high if rate else np.nan,
        "first_epoch_s": median(m.first_epoch_s for m in na),
        "epoch_s": median(t.epoch_s for t in analysed.trials),
        "steps_per_epoch": median(m.steps_per_epoch for m in na),
        "time_to_target_s": median(time_to_target(r) for r in g[g["status"] == "ok"].to_dict("records")),
        "infer_sps": median(spread_median(m.infer_samples_per_s) for m in na),
        "latency_ms": median(m.latency_b1_ms.p50 for m in na if m.latency_b1_ms),
        "gpu_busy_s": median(spread_median(m.gpu_busy_s) for m in na),
        "gpu_util": median(spread_median(m.gpu_utilization) for m in na),
        "gpu_reason": first(getattr(m.gpu_busy_s, "reason", None) for m in na),
        "rss_mb": max((m.peak_rss_mb for m in na if m.peak_rss_mb is not None), default=np.nan),  # the largest peak
        "device_mb": median(spread_median(m.peak_device_mb) for m in na),
        "device_reason": first(getattr(m.peak_device_mb, "reason", None) for m in na),
        **time_split(ok),
        "concurrent_cells": max((int(r.env.settings.get("concurrent_cells", 1)) for r in ok), default=1),
        "status": ", ".join(f"{s} {n}" for s, n in counts.items()),
        "problems": [f"seed {show(r.cell.hyper.seed)}: {r.status}: {r.message}"
                     for r in g["result"] if r.status != "ok"]}


def summarise(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of each table, its seeds pooled, with its ratio to the table's fastest."""
    config = config_columns(cells)
    keys = TABLE_KEY + [c for c in config if c not in TABLE_KEY]
    rows = [configuration(key, g, keys) for key, g in cells.groupby(keys, dropna=False, sort=False)]
    out = pd.DataFrame(rows)
    out["cell_fields"] = [tuple(config)] * len(out)
    # within one table, so within one device and machine: a CPU row never meets a GPU row
    out["slowdown"] = out.groupby(TABLE_KEY, dropna=False)["sps"].transform("max") / out["sps"]
    out["mode_rank"] = mode_rank(out)
    order = TABLE_KEY + ["framework", "backend", "mode_rank"] + [c for c in CHOSEN_SETTINGS if c in out]
    return out.sort_values(order, kind="stable", ignore_index=True)


@dataclass
class Table:
    """One machine, data set, model and device: its rows and what is the same or differs between them."""
    machine: str
    data: str
    model: str
    device: str
    rows: pd.DataFrame  # summarise()'s rows of this table
    cells: pd.DataFrame  # the cells behind them
    varying: list[str]  # settings that differ between rows: shown as columns
    same: list[str] = field(default_factory=list)  # CHOSEN_SETTINGS equal in every row, as text

    @property
    def title(self) -> str:
        return f"{self.data} / {self.model} on {self.device}"

    @property
    def anchor(self) -> str:
        """The table's name in links and plot files: 'mnist-logistic-on-cpu'."""
        return slug(self.title)

    @property
    def recipe(self) -> bool:
        """Whether the table's cells ran a seed's recipe (shown after the main comparison)."""
        return bool(column(self.rows, "recipe").notna().any())

    def row_names(self, rows: pd.DataFrame | None = None) -> pd.Series:
        """Each row's label with its varying settings: 'torch eager, batch 1000'."""
        rows = self.rows if rows is None else rows
        return rows.apply(lambda r: ", ".join([r["label"]] + [setting(c, r[c]) for c in self.varying]), axis=1)


def control_of(cells: pd.DataFrame) -> pd.Series:
    """Each cell's control (harness.plan.cell.Cell.control): "twin", "planted" or None."""
    return pd.Series([r.cell.control for r in cells["result"]], index=cells.index, dtype=object)


def varying_settings(rows: pd.DataFrame) -> list[str]:
    """The chosen settings (CHOSEN_SETTINGS) whose value differs between rows of one table."""
    return [c for c in CHOSEN_SETTINGS if c in rows and rows[c].map(show).nunique() > 1]


def tables(summary: pd.DataFrame, cells: pd.DataFrame) -> list[Table]:
    """The summary split into tables, in machine, data, model, device order."""
    out = []
    for (machine, data, model, device), rows in summary.groupby(TABLE_KEY, sort=True):
        varying = varying_settings(rows)
        same = [setting(c, rows[c].iloc[0]) for c in CHOSEN_SETTINGS if c in rows and c not in varying]
        rows = rows[rows["control"].isna()]  # the controls are lines of the summary, not rows
        mine = cells[(cells["machine"] == machine) & (cells["table"] == data) & (cells["model"] == model)
                     & (cells["device"] == device) & control_of(cells).isna()]
        out.append(Table(machine, data, model, device, rows.reset_index(drop=True), mine, varying, same))
    return out


def fairness(table: Table) -> pd.DataFrame:
    """The settings that differ between the table's rows beyond its columns: one column each, one row per row."""
    measured = table.cells[table.cells["status"].isin(["ok", "diverged"])]  # failed cells record no settings
    cells = measured if len(measured) else table.cells
    # env.settings.precision describes cell.precision; the note names the cells that shared a machine
    settings = [c for c in settings_columns(cells) + [c for c in cells if c.startswith("env_settings_")]
                if c not in table.varying and c.removeprefix("env_settings_") not in table.varying
                and c != "env_settings_concurrent_cells"]
    key = NAMED + table.varying
    grouped = cells.groupby(key, dropna=False, sort=False)  # one group per row of the table
    frame = pd.DataFrame({c: grouped[c].agg(lambda s: ", ".join(sorted(set(s.map(show))))) for c in settings},
                         index=grouped.size().index)
    differ = [c for c in settings if frame[c].nunique() > 1]
    frame = frame[differ].reset_index()
    frame.index = table.row_names(frame.assign(label=frame.apply(row_label, axis=1)))
    frame = frame.drop(columns=key).reindex(table.row_names()).fillna("—").rename(columns=field_name)
    return frame.rename_axis("row").reset_index()


def shared_machine(table: Table) -> list[str]:
    """The rows whose cells ran while other cells ran on the same machine."""
    return list(table.row_names()[table.rows["concurrent_cells"] > 1])
