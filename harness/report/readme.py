"""The README's CPU section, computed from an archive (harness.archive's layout: matrix/,
plain-loops/, seed-spread/): per profile a table of training rates with their intervals and
accuracies, the verdicts, and where a steady step's time goes in microseconds; native against
equal; the frameworks' example loops beside their native cells; the seed spread that the
parity tolerances come from.

`python -m harness.report ARCHIVE --readme` prints it; the README carries it between the
lines `<!-- archive: begin -->` and `<!-- archive: end -->`, and tests/test_readme.py checks
that it is what this module computes from the committed archive now.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.parity import TOLERANCES, seed_spread
from harness.analysis.tables import Analysis
from harness.measure.loops import pair_figures, read_pairs
from harness.measure.store import Store
from harness.plan.errors import HarnessError
from harness.plan.plans import LOOPS, REPORTED, SEED_SPREAD
from harness.plan.recipes import RECIPES
from harness.report.document import SPLIT_PARTS, control_lines, headline_lines, native_ratio, num, rate, samples_per_s
from harness.report.headline import Headline, contenders, native_vs_equal
from harness.report.render import Grid, md_table
from harness.report.summary import Table, missing

BEGIN, END = "<!-- archive: begin -->", "<!-- archive: end -->"
MODEL_ORDER = {"logistic": 0, "mlp": 1, "cnn": 2}


def split_us(r: dict) -> str:
    """'3 / 41 / 12': a steady step's microseconds of input pipeline / overhead / arithmetic."""
    parts = [r.get(c) for c in SPLIT_PARTS]
    steps = r.get("steps_per_epoch")
    if missing(steps) or not steps or any(missing(p) for p in parts[1:]):
        return "—"
    return " / ".join("?" if missing(p) else f"{1e6 * p / steps:,.0f}" for p in parts)


def per_model_grid(heads: list[Headline], columns: dict[str, callable]) -> Grid:
    """One row per framework and mode, for each model the given columns (name -> row -> text)."""
    models = [h.table.model for h in heads]
    rows: dict[str, dict] = {}
    for h in heads:
        for r in contenders(h.compared).to_dict("records"):
            row = rows.setdefault(r["label"], {"framework, mode": r["label"]})
            row.update({f"{h.table.model} {name}": show(r) for name, show in columns.items()})
    names = ["framework, mode"] + [f"{m} {name}" for m in models for name in columns]
    return Grid(pd.DataFrame(list(rows.values())).reindex(columns=names).fillna("—"))


SPEED_COLUMNS = {
    "samples/s (95% interval)": samples_per_s,
    "trials": lambda r: str(r["n_trials"]),
    "test accuracy": lambda r: f"{r['acc_mean']:.4f} ± {num(r['acc_sd'], '{:.4f}')}" if r["acc_values"] else "—",
}
SPLIT_COLUMNS = {"µs a step": split_us}


def native_table(tables: list[Table]) -> Grid | None:
    pairs = native_vs_equal([t for t in tables if t.device == "cpu"])
    if pairs.empty:
        return None
    ratio = [native_ratio(r) for r in pairs.to_dict("records")]
    return Grid(pd.DataFrame({"model": pairs["model"],
                              "framework, mode": pairs["row"],
                              "equal samples/s": pairs["equal samples/s"].map(rate),
                              "native samples/s": pairs["native samples/s"].map(rate),
                              "native ÷ equal (95% interval)": ratio,
                              "equal accuracy": pairs["equal accuracy"].map(lambda x: num(x, "{:.4f}")),
                              "native accuracy": pairs["native accuracy"].map(lambda x: num(x, "{:.4f}"))}))


def loops_table(pairs: dict) -> Grid | None:
    """The plain loops beside their suite cells: plain-loops.json's pairs by cell id, as harness.measure.loops
    reads them (its Pair records)."""
    head = ["loop", "suite cell", "loop samples/s", "suite samples/s", "suite ÷ loop", "loop accuracy",
            "suite accuracy"]
    rows = [dict(zip(head, [pair.label, *pair_figures(pair)])) for pair in pairs.values()]
    return Grid(pd.DataFrame(rows).sort_values(["suite cell", "loop"], kind="stable")) if rows else None


def spread_table(spread: dict) -> Grid | None:
    """Per model and profile: the seed-to-seed sd, native's gap between means, the bound they give."""
    rows = [{"profile": profile, "model": model, "largest seed-to-seed sd": f"{s['sd']:.4f}",
             "largest gap between means": f"{s['mean_gap']:.4f}" if profile == "native" else "—",
             "parity bound (harness/analysis/parity.py)": num(TOLERANCES.get(profile, {}).get(model), "{:.4f}")}
            for profile in ("equal", "native") for model, s in sorted(spread.get(profile, {}).items(),
                                                                      key=lambda kv: MODEL_ORDER.get(kv[0], 9))]
    return Grid(pd.DataFrame(rows)) if rows else None


def recipes_table(summary: pd.DataFrame) -> Grid | None:
    """The seeds' recipes: per recipe and model, the seed's published figure and each framework's."""
    if "recipe" not in summary:
        return None
    rows: dict[tuple, dict] = {}
    for r in summary[summary["recipe"].isin(list(RECIPES))].to_dict("records"):
        recipe = RECIPES[r["recipe"]]
        init = "" if r.get("hyper_init", "canonical") == "canonical" else f", {r['hyper_init']} init"
        ours = r["acc_mean"] if recipe.metric == "test_accuracy" else r["val_mean"]
        row = rows.setdefault((recipe.seed, r["model"], init, r["hyper_optimizer"], r["hyper_epochs"]), {
            "recipe (seed)": f"{recipe.name} ({recipe.seed})", "model": r["model"] + init,
            "optimizer, epochs": f"{r['hyper_optimizer']}, {r['hyper_epochs']}",
            "metric": recipe.metric.replace("_", " "), "published": num(recipe.published.get(r["model"]), "{:.4f}")})
        row[r["label"]] = num(ours, "{:.4f}")
    if not rows:
        return None
    frame = pd.DataFrame([rows[k] for k in sorted(rows, key=lambda k: (k[0], len(k[1]), *k[1:]))])
    return Grid(frame.fillna("—"))


def readme_section(machine: str, heads: list[Headline], tables: list[Table], analysis: Analysis,
                   loops: dict, spread: dict, summary: pd.DataFrame | None = None) -> str:
    """The Markdown between the README's markers."""
    out = [BEGIN, "", f"Machine `{machine}`. How the verdicts below were made, and the controls:", "",
           "```", *control_lines(analysis), "```"]
    for profile in ("equal", "native"):
        mine = sorted([h for h in heads if h.compared["profile"].iloc[0] == profile and h.table.device == "cpu"],
                      key=lambda h: MODEL_ORDER.get(h.table.model, 9))
        if not mine:
            continue
        settings = [s for s in mine[0].settings if not s.startswith("profile ")]
        out += ["", f"**Profile {profile}**, {', '.join(settings)}: training samples/s, the geometric mean over "
                "trials with its 95% interval, and test accuracy, mean ± sd over the trials' seeds.", "",
                md_table(per_model_grid(mine, SPEED_COLUMNS)), "",
                "```", *[line for h in mine for line in headline_lines(h)], "```", "",
                f"Where a steady step's time goes in profile {profile}, in µs: input pipeline / framework overhead "
                "/ arithmetic (harness.measure.split; the median over trials; ? where the framework's own loop hides "
                "its input pipeline):", "",
                md_table(per_model_grid(mine, SPLIT_COLUMNS))]
    native = native_table(tables)
    if native is not None:
        out += ["", "**Native against equal**, per framework and mode (the geometric mean over trials of each; "
                "the ratio and its interval over the rounds both ran in, unpaired where they shared fewer than "
                "4):", "", md_table(native)]
    table = loops_table(loops)
    if table is not None:
        out += ["", "**The frameworks' own loops beside the suite** (harness.run.plain_loops, the MLP; one process "
                "each, run back to back): each example loop beside its native cell, each reference-style loop "
                "beside its equal cell.", "", md_table(table)]
    table = spread_table(spread)
    if table is not None:
        out += ["", "**The seed spread behind the parity tolerances** (seeds 0-4, 2 epochs, batch 32; "
                "harness.analysis.parity.seed_spread over seed-spread/):", "", md_table(table)]
    table = recipes_table(summary) if summary is not None else None
    if table is not None:
        out += ["", "**The seeds' recipes** (harness/plan/recipes.py; profile equal, seed 0, one process each; the "
                "published figure is the seed's own, where it gave one):", "", md_table(table)]
    return "\n".join(out + ["", END])


def archive_parts(archive: Path) -> tuple[list[Path], dict, dict]:
    """The archive's result folders for the tables, its loop pairs and its seed spread."""
    folders = [archive / f for f in REPORTED]
    if not (archive / REPORTED[0]).is_dir():
        raise HarnessError(f"{archive} is not an archive (python -m harness.archive makes one): it has no "
                           f"{REPORTED[0]}/")
    loops = read_pairs(Store(archive / LOOPS)) if (archive / LOOPS).is_dir() else {}
    spread = seed_spread(archive / SEED_SPREAD) if (archive / SEED_SPREAD).is_dir() else {}
    return [f for f in folders if f.is_dir()], loops, spread
