"""The README's CPU section, computed from an archive: one table per profile (a row per framework
and mode, a column group per model), the verdicts, and where the time goes.

`python -m harness.report ARCHIVE --readme` prints it; the README carries it between the
lines `<!-- archive: begin -->` and `<!-- archive: end -->`, and tests/test_readme.py checks
that it is what this module computes from the committed archive now.
"""
from __future__ import annotations

import pandas as pd

from harness.report.document import SPLIT_PARTS, headline_lines, num, samples_per_s
from harness.report.headline import Headline
from harness.report.render import Grid, md_table
from harness.report.summary import missing
from harness.report.verdicts import NoiseFloor, contenders

BEGIN, END = "<!-- archive: begin -->", "<!-- archive: end -->"


def split_shares(r: dict) -> str:
    """'12% / 30% / 58%': input pipeline / overhead / arithmetic of a steady epoch."""
    parts = [r.get(c) for c in SPLIT_PARTS]
    if any(missing(p) for p in parts[1:]):
        return "—"
    total = sum(0.0 if missing(p) else p for p in parts)
    return " / ".join("?" if missing(p) else f"{p / total:.0%}" for p in parts) if total else "—"


def profile_table(heads: list[Headline]) -> Grid:
    """One row per framework and mode, for each model its samples/s with interval, trials,
    accuracy and time split (the comparisons of one profile)."""
    models = [h.table.model for h in heads]
    rows: dict[str, dict] = {}
    for h in heads:
        for r in contenders(h.compared).to_dict("records"):
            row = rows.setdefault(r["label"], {"framework, mode": r["label"]})
            row[f"{h.table.model} samples/s (95% interval)"] = samples_per_s(r)
            row[f"{h.table.model} trials"] = str(r["n_trials"])
            row[f"{h.table.model} test accuracy"] = (f"{r['acc_mean']:.4f} ± {num(r['acc_sd'], '{:.4f}')}"
                                                     if r["acc_values"] else "—")
            row[f"{h.table.model} input / overhead / arithmetic"] = split_shares(r)
    columns = ["framework, mode"] + [f"{m} {what}" for m in models
                                     for what in ("samples/s (95% interval)", "trials", "test accuracy",
                                                  "input / overhead / arithmetic")]
    return Grid(pd.DataFrame(list(rows.values())).reindex(columns=columns).fillna("—"))


def readme_section(machine: str, heads: list[Headline], floor: NoiseFloor) -> str:
    """The Markdown between the README's markers."""
    order = {"logistic": 0, "mlp": 1, "cnn": 2}
    out = [BEGIN, "",
           f"Machine `{machine}`. Noise floor: "
           + (f"{floor.factor:.3g}x ({floor.about})." if floor.known else f"unknown ({floor.about}).")]
    for profile in ("equal", "native"):
        mine = sorted([h for h in heads if h.compared["profile"].iloc[0] == profile and h.table.device == "cpu"],
                      key=lambda h: order.get(h.table.model, 9))
        if not mine:
            continue
        settings = [s for s in mine[0].settings if not s.startswith("profile ")]
        out += ["", f"Profile {profile}, {', '.join(settings)}:", "", md_table(profile_table(mine)), "",
                "```", *[line for h in mine for line in headline_lines(h)], "```"]
    return "\n".join(out + ["", END])
