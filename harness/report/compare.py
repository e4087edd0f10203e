"""Two archives side by side (say a GPU machine's and a CPU machine's): per framework and mode, B against A.

Rows match one to one on data, model, framework, mode, the settings a person chooses
(profile, batch, precision, epochs, optimizer, lr) and whether a row is a control (the A/A
twin, the planted slowdown), and on the device too where both archives ran on one (so a GPU
machine's CPU rows meet only CPU rows); everything else that differs between the archives
(machine, device, threads, versions, framework settings, an optimizer's eps) is named above
the tables. The machine's drift between the runs is measured apart (harness.analysis.drift)
and each configuration is judged on its change after it. On one machine a B slower beyond
the margin is a REGRESSION, a configuration A measured and B did not is FAILED, and the exit
code says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis import stats
from harness.analysis.drift import Change, Drift, Timed, changes, drift
from harness.analysis.trials import Configuration
from harness.plan.errors import HarnessError
from harness.report.summary import CHOSEN_SETTINGS, column, control_of, field_name, missing, settings_columns, show

# A regression (only between two archives of one machine): B trains or infers slower than A
# by more than the margin after the machine's drift, the whole interval beyond it; or its
# mean test accuracy is this much lower (absolute): seeds alone move MNIST
# accuracy by a few tenths of a point, a whole point is a change in what was learned.
ACCURACY_DROP_THRESHOLD = 0.01
MACHINE_SETTINGS = ("device", "threads")  # differ with the machine: named, not matched on
KEY = (["table", "model", "framework", "backend", "mode"] + [c for c in CHOSEN_SETTINGS if c not in MACHINE_SETTINGS]
       + ["control"])
# What the header compares between the archives, besides the framework settings and versions.
ENV_FIELDS = {"machine": "machine", "device": "device", "env_machine_cpu": "CPU", "env_machine_cores": "cores",
              "env_device_name": "device name", "env_machine_driver": "driver", "env_machine_cuda": "CUDA",
              "env_python": "Python", "env_numpy": "numpy"}


@dataclass
class Comparison:
    """B against A: the matched rows, what differs between the archives, and whether B regressed."""
    a: str
    b: str
    rows: pd.DataFrame  # one row per configuration in A or B, columns suffixed _a and _b
    differences: list[str]  # "device: cpu → cuda"
    same_machine: bool
    drift: Drift
    margin: float = stats.MARGIN
    could_see: float = math.nan  # the median smallest change in training speed its configurations could find

    @property
    def regressed(self) -> bool:
        """A REGRESSION or a FAILED row on one machine."""
        return self.same_machine and bool(self.rows["verdict"].isin(["REGRESSION", "FAILED"]).any())


def only_machine(cells: pd.DataFrame, name: str) -> str:
    """The one machine whose results a compared folder holds."""
    machines = sorted(cells["machine"].unique())
    if len(machines) != 1:
        raise HarnessError(f"{name} holds results of {len(machines)} machines ({', '.join(machines)}); "
                           "compare one machine's folder with another's")
    return machines[0]


def values(cells: pd.DataFrame, c: str) -> str:
    """The distinct values of a field in these cells ('—' if none has it): a torch cell has no jax version."""
    return ", ".join(sorted({show(v) for v in column(cells, c) if not missing(v)})) or "—"


def differences(cells_a: pd.DataFrame, cells_b: pd.DataFrame, key: list[str]) -> list[str]:
    """Settings and environment that differ between the compared cells of A and of B, as 'name: A → B'."""
    in_both = set(keys(cells_a, key)) & set(keys(cells_b, key))
    cells_a, cells_b = cells_a[keys(cells_a, key).isin(in_both)], cells_b[keys(cells_b, key).isin(in_both)]
    fields = dict(ENV_FIELDS)
    for frame in (cells_a, cells_b):
        named = settings_columns(frame) + [c for c in frame if c.startswith("env_settings_")]
        fields.update({c: field_name(c) for c in named})
        fields.update({c: c.removeprefix("env_framework_version_") + " version" for c in frame
                       if c.startswith("env_framework_version_")})
    out = []
    for c, name in fields.items():
        a, b = values(cells_a, c), values(cells_b, c)
        if a != b:
            out.append(f"{name}: {a} → {b}")
    return out


def keys(frame: pd.DataFrame, key: list[str]) -> pd.Series:
    """What a row or cell is matched on, as text (None matches None)."""
    return frame[key].map(show).apply(tuple, axis=1)


def verdict(r: dict, same_machine: bool, train, infer) -> tuple[str, str]:
    """(verdict, its words) for one matched row, given its training and inference changes after the drift."""
    if missing(r["label_a"]):
        return "only in B", ""
    if missing(r["label_b"]):
        return "only in A", ""
    if missing(r["sps_b"]) and not missing(r["sps_a"]):
        return "FAILED", f"measured in A, no finished trial in B: {r['status_b']}"
    if missing(r["sps_a"]) or missing(r["sps_b"]):
        return "not measured", ""
    if not missing(r["control_a"]):
        return "control", f"B ÷ A {r['sps_b'] / r['sps_a']:.2f} (a control: not judged)"
    if not same_machine:
        return "", f"{train.text.replace('after the drift', 'after the machines’ ratio')} (two machines)"
    lost = r["acc_mean_a"] - r["acc_mean_b"]
    if train.kind == "slower" or (infer is not None and infer.kind == "slower"):
        slower = train if train.kind == "slower" else infer
        return "REGRESSION", ("inference: " if slower is infer else "") + slower.text
    if not missing(lost) and lost > ACCURACY_DROP_THRESHOLD:
        return "REGRESSION", f"mean test accuracy {lost:.4f} lower"
    return {"too few": "no verdict", "within": "same"}.get(train.kind, train.kind), train.text


def compare(a: tuple[str, pd.DataFrame, pd.DataFrame], b: tuple[str, pd.DataFrame, pd.DataFrame],
            margin: float = stats.MARGIN) -> Comparison:
    """B against A, each given as (name, summary, cells) of one machine."""
    (name_a, summary_a, cells_a), (name_b, summary_b, cells_b) = a, b
    cells_a, cells_b = (cells.assign(control=control_of(cells)) for cells in (cells_a, cells_b))
    same_machine = only_machine(cells_a, name_a) == only_machine(cells_b, name_b)
    shared_device = set(cells_a["device"]) & set(cells_b["device"])
    key = KEY + ["device"] if shared_device else KEY
    both = [s.assign(key=keys(s, key)) for s in (summary_a, summary_b)]
    for name, side in zip((name_a, name_b), both):
        twice = side[side["key"].duplicated(keep=False)]
        if len(twice):
            raise HarnessError(f"{name} has {len(twice)} rows that match as one ({twice['label'].iloc[0]}, "
                               f"{', '.join(show(v) for v in twice['key'].iloc[0])}): compare folders that ran "
                               "each configuration on one device and thread count")
    m = both[0].merge(both[1], on="key", how="outer", suffixes=("_a", "_b"), validate="one_to_one")
    for c in key:
        m[c] = m[f"{c}_a"].combine_first(m[f"{c}_b"])
    m["label"] = m["label_a"].fillna(m["label_b"])
    m["B ÷ A"] = m["sps_b"] / m["sps_a"]
    records = m.to_dict("records")
    judged = [i for i, r in enumerate(records) if not missing(r["sps_a"]) and not missing(r["sps_b"])
              and missing(r["control_a"])]
    pairs = [(training(records[i]["configuration_a"]), training(records[i]["configuration_b"])) for i in judged]
    infer_pairs = [(inference(records[i]["configuration_a"]), inference(records[i]["configuration_b"]))
                   for i in judged]
    k = 2 * len(judged)  # one family: training and inference of every configuration, corrected together
    train = dict(zip(judged, changes(pairs, margin, k=k)))
    infer = dict(zip(judged, changes(infer_pairs, margin, k=k)))
    words = [verdict(r, same_machine, train.get(i), infer.get(i)) for i, r in enumerate(records)]
    m["verdict"], m["verdict_text"] = [w[0] for w in words], [w[1] for w in words]
    m["after drift"] = [train[i].ratio.estimate if i in train else np.nan for i in range(len(records))]
    sort = ["table", "model", "framework", "backend"] + [f"mode_rank_{s}" for s in "ab"]
    m = m.sort_values(sort, kind="stable", ignore_index=True)
    groups = [records[i]["framework"] for i in judged]
    return Comparison(name_a, name_b, m, differences(cells_a, cells_b, key), same_machine,
                      drift(pairs, groups, margin), margin, could_see(list(train.values())))


def training(c: Configuration) -> Timed:
    """A configuration's training trials: (round, seconds per sample)."""
    return [(t.block, t.seconds_per_sample) for t in c.trials]


def inference(c: Configuration) -> Timed:
    """A configuration's inference trials: (round, seconds per sample at a large batch)."""
    return [(t.block, t.infer_s_per_sample) for t in c.trials if t.infer_s_per_sample is not None]


def could_see(judged: list[Change]) -> float:
    """The median over the configurations of the smallest training change each could have found."""
    seen = [c.could_see for c in judged if math.isfinite(c.could_see)]
    return float(np.median(seen)) if seen else math.nan


def varying(rows: pd.DataFrame) -> list[str]:
    """The chosen settings that differ between a compared table's rows: its columns."""
    return [c for c in CHOSEN_SETTINGS if c in rows and c not in MACHINE_SETTINGS and rows[c].nunique() > 1]


def tables(comparison: Comparison) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """The comparison per data set and model: (title, rows, setting columns)."""
    return [(f"{data} / {model}", rows, varying(rows))
            for (data, model), rows in comparison.rows.groupby(["table", "model"], sort=False)]


def headline(comparison: Comparison) -> list[str]:
    """A few lines for the terminal and the top of COMPARE.md."""
    m = comparison.rows
    matched = m[m["B ÷ A"].notna() & m["control"].isna()]
    counts = m["verdict"].value_counts()
    lines = [f"{comparison.b} against {comparison.a}: {len(matched)} configurations in both, "
             f"{counts.get('FAILED', 0)} FAILED in B, {counts.get('only in A', 0)} only in A, "
             f"{counts.get('only in B', 0)} only in B", "  " + comparison.drift.text]
    lines += [f"  the frameworks disagree about the drift: {d}" for d in comparison.drift.disagreements]
    if math.isfinite(comparison.could_see):
        lines.append(f"  this comparison could see a change in training speed of {comparison.could_see:.2f}x or more "
                     f"(the median over its configurations, {stats.POWER:.0%} power, training and inference "
                     f"verdicts corrected together); \"undecided\" rows changed less than that or not at all")
    for (data, model), g in matched.groupby(["table", "model"], sort=False):
        ratio = g["B ÷ A"]
        acc = (g["acc_mean_b"] - g["acc_mean_a"]).abs().max()
        spread = f"median of {len(g)}; {ratio.min():.3g}x-{ratio.max():.3g}x" if len(g) > 1 else "one configuration"
        lines.append(f"  {data} / {model}: B trains {ratio.median():.3g}x as fast as A ({spread}); "
                     f"accuracy differs by at most {acc:.4f}")
    if comparison.same_machine:
        lines.append(f"  one machine: {counts.get('REGRESSION', 0)} regressions (training or inference speed slower "
                     f"than A by more than the margin, {comparison.margin:.0%}, after the drift, or accuracy "
                     f"{ACCURACY_DROP_THRESHOLD} lower), {counts.get('FAILED', 0)} FAILED, {counts.get('faster', 0)} "
                     f"faster, {counts.get('same', 0)} within {comparison.margin:.0%}, {counts.get('undecided', 0)} "
                     f"undecided, {counts.get('no verdict', 0)} with too few trials for a verdict")
        for r in m[m["verdict"].isin(["REGRESSION", "FAILED"])].to_dict("records"):
            lines.append(f"  {r['verdict']} {r['table']} / {r['model']} {r['label']}: {r['verdict_text']}")
    return lines
