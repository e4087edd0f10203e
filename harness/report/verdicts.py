"""Verdicts: what the rows of a table say about each other once the machine's noise is counted.

Speed: harness.stats compares two configurations over their trials (one median steady epoch
per process, seconds per sample), with a bootstrap interval and a permutation test, and calls
a difference only beyond the machine's noise floor. The floor comes from the A/A twins that
harness.drive runs in every round: the same configuration twice, counted apart; where a
machine's results hold no twin, the floor is unknown (1.0) and the summary says so.
Accuracy: the largest same-seed gap between frameworks against the parity tests' bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness import stats
from harness.report.summary import Table, framework_label, idiomatic_mode, setting, show

SHOWN_SETTINGS = ("hyper_batch_size", "precision")  # named in a headline even where every row has them


@dataclass(frozen=True)
class NoiseFloor:
    """The machine's noise floor: a factor >= 1, and what it was measured on."""
    factor: float
    about: str

    @property
    def known(self) -> bool:
        return self.factor > 1.0


def noise_floor(tables: list[Table]) -> NoiseFloor:
    """The widest A/A floor among the twins of one machine's tables (1.0 where there are none)."""
    floors = []
    for t in tables:
        rows = t.rows
        for twin in rows[rows["twin"].eq(True)].to_dict("records"):
            twin_settings = {c: twin[c] for c in t.varying}
            original = rows[rows["twin"].ne(True) & (rows["label"] == twin["label"].removesuffix(" (A/A twin)"))]
            for c, v in twin_settings.items():
                original = original[original[c] == v]
            if len(original) != 1:
                continue
            o = original.iloc[0]
            factor = stats.noise_floor(o["times"], twin["times"])
            n = min(len(o["times"]), len(twin["times"]))
            floors.append((factor, f"A/A pair {o['label']}, {t.model}, {n} trials each: "
                                   f"{stats.speed_ratio(o['times'], twin['times']).text('.3g')}"))
    if not floors:
        return NoiseFloor(1.0, "no A/A twin among these results (python -m harness.drive runs one each round)")
    return NoiseFloor(*max(floors))


def comparisons(table: Table) -> list[tuple[pd.DataFrame, list[str]]]:
    """The groups of a table's rows that the summary compares, each with its settings as text:
    one per profile (the users' code and the equalised code are separate questions), each at
    the other settings most of its rows share (batch, precision...)."""
    out = []
    for _, rows in table.rows.groupby("profile", sort=False) if "profile" in table.rows else [(None, table.rows)]:
        varying = [c for c in table.varying if c != "profile"]
        if varying:
            keys = rows[varying].map(show).apply(tuple, axis=1)
            rows = rows[keys == keys.value_counts(sort=True).index[0]]  # ties: the first in table order
        named = [c for c in SHOWN_SETTINGS if c in rows] + [c for c in table.varying if c not in SHOWN_SETTINGS]
        out.append((rows, [setting(c, rows[c].iloc[0]) for c in named]))
    return out


def idiomatic_rows(rows: pd.DataFrame) -> dict[str, dict | None]:
    """'torch eager' -> that row, for every framework of the rows; None where its idiomatic mode did not run."""
    out: dict[str, dict | None] = {}
    for r in rows[rows["twin"].ne(True)].to_dict("records"):
        name = f"{framework_label(r)} {idiomatic_mode(r['framework']) or r['mode']}"
        out[name] = r if r["label"] == name else out.get(name)  # a fast mode does not replace it
    return out


def named_rivals(rows: pd.DataFrame, fastest: dict) -> list[dict]:
    """The rows the summary sets against the fastest: each framework's idiomatic mode, then the next fastest."""
    measured = contenders(rows).sort_values("sps_median", ascending=False).to_dict("records")
    timed = {r["label"] for r in measured}
    rivals = [r for r in idiomatic_rows(rows).values()
              if r is not None and r["label"] != fastest["label"] and r["label"] in timed]
    following = [r for r in measured if r["label"] != fastest["label"]]
    if following and following[0]["label"] not in {r["label"] for r in rivals}:
        rivals.append(following[0])
    return rivals


def speed(x: dict, y: dict, floor: NoiseFloor) -> stats.Verdict:
    """Row x against row y: faster, slower, the same within the floor, undecided, or too few trials."""
    return stats.compare_speed(x["label"], x["times"], y["label"], y["times"], noise_floor=floor.factor)


def contenders(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows that compete: measured, and no A/A twin (which only calibrates)."""
    return rows[rows["sps_median"].notna() & rows["twin"].ne(True)]


def headline_verdicts(tables: list[Table], floor: NoiseFloor | None = None) -> list[stats.Verdict]:
    """Every speed verdict the summary states: per table, its fastest row against the others
    that the summary names (each framework's idiomatic mode, and the next fastest)."""
    floor = floor or noise_floor(tables)
    out = []
    for t in tables:
        for rows, _ in ([] if t.recipe else comparisons(t)):
            measured = contenders(rows)
            if len(measured) < 2:
                continue
            fastest = measured.loc[measured["sps_median"].idxmax()].to_dict()
            out += [speed(fastest, rival, floor) for rival in named_rivals(rows, fastest)]
    return out
