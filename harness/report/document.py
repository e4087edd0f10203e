"""What the report says: the summary lines and the sections of one machine's report, and of a comparison.

Numbers come from summary, headline and compare; this module only words and formats them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.noise import Noise
from harness.analysis import stats
from harness.analysis.tables import Analysis
from harness.analysis.verdicts import could_see_text
from harness.measure.machine import slug
from harness.plan.recipes import RECIPES
from harness.report import compare as comparing
from harness.report.headline import DEVICE_BOUND, Headline, contenders, framework_tax, native_vs_equal
from harness.report.noise import noise_section
from harness.report.read import model_definitions
from harness.report.render import Document, Grid, Section
from harness.report.summary import (ACCURACY_TARGET, CHOSEN_SETTINGS, Table, column, fairness, missing, shared_machine,
                                    show)

Figures = dict[str, list[tuple[str, Path]]]  # section anchor -> (caption, PNG path)


def num(v, fmt: str = "{:.4g}") -> str:
    return "—" if missing(v) else fmt.format(v)


def rate(v) -> str:
    return num(v, "{:,.0f}")


def times(x: float) -> str:
    """A ratio with 2-3 significant digits: 2.00x, 14.2x, 131x."""
    return "—" if missing(x) else f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


class Notes(dict):
    """Footnotes of one table: each distinct text gets its number once."""

    def ref(self, text: str) -> str:
        return f"[{self.setdefault(text, len(self) + 1)}]"

    def lines(self) -> list[str]:
        return [f"[{n}] {text}" for text, n in self.items()]


def machine_text(cells: pd.DataFrame) -> str:
    """'NVIDIA H100 80GB HBM3 (driver 580.1, CUDA 13.0); Intel Xeon, 16 cores'."""
    r = cells.iloc[0]
    gpus = r.get("env_machine_gpus")
    gpu = "" if not isinstance(gpus, list) or not gpus else (
        ", ".join(gpus) + f" (driver {show(r.get('env_machine_driver'))}, CUDA {show(r.get('env_machine_cuda'))}); ")
    return f"{gpu}{show(r.get('env_machine_cpu'))}, {show(r.get('env_machine_cores'))} cores"


# ---------------------------------------------------------------- the summary
def headline_lines(h: Headline) -> list[str]:
    """A comparison's answer in a few lines: the fastest and the verdicts against it, accuracy
    against the parity bound, where the time goes, compile cost."""
    rows = contenders(h.compared)
    trials = sorted(set(rows["n_trials"]))
    left_out = int(rows["n_contended"].sum())
    span = "-".join(map(str, sorted({trials[0], trials[-1]}))) if trials else ""
    counted = (f"{span} {'trial' if span == '1' else 'trials'} each"
               + (f", {left_out} contended left out" if left_out else "")) if trials else "no trial measured"
    lines = [f"{h.table.title}, {', '.join(h.settings)} ({counted}):"]
    f = h.fastest
    if f is None:
        return lines + ["  no row measured a training rate"]
    interval = f" ({rate(f['sps_low'])}-{rate(f['sps_high'])})" if not missing(f["sps_low"]) else ""
    lines.append(f"  fastest {f['label']}, {rate(f['sps'])} samples/s{interval}"
                 + ("" if h.verdicts else " (the only row)"))
    if h.verdicts:
        lines.append("  " + "; ".join(v.text for v in h.verdicts))
        if seen := could_see_text(h.verdicts):
            lines.append("  " + seen)
    absent = [f"{name} {'not run' if r is None else r['status'].split()[0]}" for name, r in h.idiomatic.items()
              if r is None or missing(r["sps"])]
    if absent:
        lines.append(f"  not measured: {', '.join(absent)}")
    accs = h.compared["acc_mean"].dropna()
    if len(accs) > 1:
        seeds = max(len(v) for v in h.compared["acc_values"])
        bound = ("no parity tolerance for this model" if h.tolerance is None or missing(h.accuracy_spread) else
                 f"same accuracy within the parity tolerance {h.tolerance:.4f}" if h.accuracy_spread <= h.tolerance
                 else f"BEYOND the parity tolerance {h.tolerance:.4f}")
        spread = "" if missing(h.accuracy_spread) else f", {h.accuracy_spread:.4f} apart at one seed"
        lines.append(f"  test accuracy {accs.min():.4f}-{accs.max():.4f} (means over {seeds} seeds){spread}: {bound}")
    if parts := largest_parts(rows):
        lines.append(f"  largest part of a steady epoch: {parts}")
    if not missing(f["first_epoch_s"]) and not missing(f["epoch_s"]):
        payback = ("ahead in total time from the first epoch" if h.break_even == 1 else
                   "a mode that starts sooner stays ahead in total time" if h.break_even is None else
                   f"ahead of every mode in total time from epoch {h.break_even}")
        lines.append(f"  its first epoch (compile) {f['first_epoch_s']:.3g} s, then {f['epoch_s']:.3g} s an epoch: "
                     + payback)
    return lines


SPLIT_PARTS = {"split_input_s": "input pipeline", "split_overhead_s": "overhead", "split_arithmetic_s": "arithmetic"}


def largest_parts(rows: pd.DataFrame) -> str:
    """'torch eager: 62% overhead; jax step: 71% arithmetic': each row's largest part of its split epoch."""
    out = []
    for r in rows.to_dict("records"):
        parts = {name: r[col] for col, name in SPLIT_PARTS.items() if not missing(r.get(col))}
        if "overhead" in parts and sum(parts.values()):
            name = max(parts, key=parts.get)
            out.append(f"{r['label']}: {parts[name] / sum(parts.values()):.0%} {name}")
    return "; ".join(out)


def control_lines(analysis: Analysis) -> list[str]:
    """The margin, then one line per control (or why there is none)."""
    lines = [f"margin {analysis.margin:.0%}: a difference within it is a tie; each table's profile is one family, "
             f"with at most a {stats.ALPHA:.0%} chance of any false verdict (Bonferroni over its comparisons, "
             "spent over the driver's looks), paired by round"]
    kinds = {c.kind for c in analysis.controls}
    lines += [c.text for c in analysis.controls]
    if "negative" not in kinds:
        lines.append("no A/A twin among these results: nothing shows how far identical processes land apart here "
                     "(python -m harness.drive runs one each round)")
    if "positive" not in kinds:
        lines.append("no planted slowdown among these results: nothing shows this run could see a difference "
                     "(python -m harness.drive runs one each round)")
    return lines


def summary_lines(machine: str, cells: pd.DataFrame, heads: list[Headline], analysis: Analysis) -> list[str]:
    lines = [f"{machine}: {machine_text(cells)}; {len(cells)} cells", *control_lines(analysis)]
    contended = int(sum(h.compared["n_contended"].sum() for h in heads))
    if contended:
        lines.append(f"{contended} trials left out: other processes used the machine while they trained "
                     f"(env.contention)")
    for h in heads:
        lines += headline_lines(h)
    return lines


# ---------------------------------------------------------------- one table
def accuracy(r: dict) -> str:
    acc = r["acc_values"]
    return f"{r['acc_mean']:.4f} ± {num(r['acc_sd'], '{:.4f}')} ({len(acc)})" if acc else "—"


def samples_per_s(r: dict) -> str:
    """The geometric mean over trials, with its 95% interval where there are enough trials."""
    return rate(r["sps"]) + ("" if missing(r["sps_low"]) else f" ({rate(r['sps_low'])}-{rate(r['sps_high'])})")


def trials(r: dict) -> str:
    """How many trials count, and how many were left out as contended."""
    return str(r["n_trials"]) + (f" (+{r['n_contended']} contended)" if r["n_contended"] else "")


def split(r: dict) -> str:
    """The steady epoch's seconds as input / overhead / arithmetic."""
    if missing(r.get("split_overhead_s")):
        return "—"
    return " / ".join("?" if missing(r[c]) else f"{r[c]:.3g}" for c in SPLIT_PARTS)


def gpu_busy(r: dict) -> str:
    return "—" if missing(r["gpu_busy_s"]) else f"{r['gpu_busy_s']:.4g} ({num(r['gpu_util'], '{:.0%}')})"


COLUMNS = {  # header: what a row shows
    "test acc ± sd (seeds)": accuracy,
    "samples/s (95% interval)": samples_per_s, "trials": trials,
    "× slower than fastest": lambda r: num(r["slowdown"], "{:.2f}"),
    "input / overhead / arithmetic s": split,
    "first epoch s": lambda r: num(r["first_epoch_s"]), "steady epoch s": lambda r: num(r["epoch_s"]),
    f"s to {ACCURACY_TARGET:.0%}": lambda r: num(r["time_to_target_s"], "{:.3g}"),
    "infer samples/s": lambda r: rate(r["infer_sps"]), "b1 latency ms": lambda r: num(r["latency_ms"], "{:.3g}"),
    "GPU busy s (util)": gpu_busy, "peak RSS MB": lambda r: num(r["rss_mb"], "{:.0f}"),
    "peak device MB": lambda r: num(r["device_mb"], "{:.0f}"), "status": lambda r: r["status"],
}
REASONS = {"GPU busy s (util)": "gpu_reason", "peak device MB": "device_reason"}  # why a column reads n/a


def main_grid(table: Table, notes: Notes) -> Grid:
    """One row per framework and mode; empty columns dropped, their reason in the notes."""
    rows = table.rows.to_dict("records")
    frame = pd.DataFrame({"framework, mode": [r["label"] for r in rows],
                          **{CHOSEN_SETTINGS.get(c, c): [show(r[c]) for r in rows] for c in table.varying},
                          **{name: [show_fn(r) for r in rows] for name, show_fn in COLUMNS.items()}})
    for name, reason in REASONS.items():
        why = {r[reason] for r in rows if not missing(r[reason])}
        if (frame[name] == "—").all() and why:
            notes.ref(f"{name.split(' (')[0]}: n/a, {'; '.join(sorted(why))}")
    frame["status"] = [r["status"] + "".join(f" {notes.ref(p)}" for p in r["problems"]) for r in rows]
    empty = [c for c in COLUMNS
             if (frame[c] == "—").all() or (c == "status" and frame[c].str.match(r"ok \d+$").all())]
    return Grid(frame.drop(columns=empty))


def table_section(table: Table, figures: Figures) -> Section:
    notes = Notes()
    grid = main_grid(table, notes)
    note = [f"Same in every row: {', '.join(table.same)}."] if table.same else []
    if shared := shared_machine(table):
        note.append("These cells shared the machine with other cells running at the same time "
                    f"(env.settings.concurrent_cells > 1), so their timings had less than the whole machine: "
                    f"{'; '.join(shared)}.")
    fair = fairness(table)
    blocks = [("table", grid)] + ([("p", " ".join(note))] if note else []) + [("ul", notes.lines())]
    if fair.shape[1] > 1:
        blocks.append(("details", f"Fairness: {fair.shape[1] - 1} settings differ between these rows", Grid(fair)))
    else:
        blocks.append(("p", "Fairness: every setting is the same in every row beyond the columns above."))
    section_anchor = table.anchor
    blocks += [("img", caption, path) for caption, path in figures.get(section_anchor, [])]
    return Section(table.title, section_anchor, blocks, {"device": table.device, "model": table.model})


# ---------------------------------------------------------------- after the main comparison
def native_ratio(pair: dict) -> str:
    """'0.85 (0.80-0.90)': native's training rate over equal's, with its 95% interval (paired by round)."""
    interval = "" if missing(pair["low"]) else f" ({pair['low']:.2f}-{pair['high']:.2f})"
    return num(pair["native ÷ equal"], "{:.2f}") + interval


def native_section(tables: list[Table]) -> Section | None:
    pairs = native_vs_equal(tables)
    if pairs.empty:
        return None
    frame = pairs.assign(**{"equal samples/s": pairs["equal samples/s"].map(rate),
                            "native samples/s": pairs["native samples/s"].map(rate),
                            "native ÷ equal": [native_ratio(r) for r in pairs.to_dict("records")],
                            "equal accuracy": pairs["equal accuracy"].map(lambda x: num(x, "{:.4f}")),
                            "native accuracy": pairs["native accuracy"].map(lambda x: num(x, "{:.4f}"))})
    frame = frame.drop(columns=["model", "low", "high"])
    return Section("Native against equal profile", "native-against-equal", [
        ("p", "Profile native runs the code each framework's users write (its own init, optimizer defaults, "
              "precision and input pipeline); equal runs the same weights, batch order and maths everywhere. "
              "native ÷ equal below 1: the idiomatic pipeline costs that share of the training rate."),
        ("table", Grid(frame))])


def tax_section(tables: list[Table]) -> Section | None:
    blocks = []
    for t in tables:
        tax = framework_tax(t) if t.device != "cpu" and not t.recipe else pd.DataFrame()
        if tax.empty:
            continue
        frame = tax.assign(**{"host ms/step": tax["host ms/step"].map(lambda x: num(x, "{:.3g}")),
                              "device ms/step": tax["device ms/step"].map(lambda x: num(x, "{:.3g}")),
                              "GPU busy": tax["GPU busy"].map(lambda x: num(x, "{:.0%}"))})
        blocks += [("p", t.title), ("table", Grid(frame))]
    if not blocks:
        return None
    return Section("Framework tax on the GPU", "framework-tax", [
        ("p", "Host ms/step: a steady epoch's wall time per step; device ms/step: the GPU's kernel time per "
              "step (traced epoch). Where host time far exceeds device time, the framework's per-step work, "
              "not the GPU, sets the pace; device-bound from: the smallest batch of a sweep with the GPU busy "
              f"at least {DEVICE_BOUND:.0%} of the time.")] + blocks)


def published(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells run from a seed's recipe, beside the figure that seed published."""
    out = []
    for r in rows[column(rows, "recipe").isin(list(RECIPES))].to_dict("records"):
        recipe = RECIPES[r["recipe"]]
        ours = accuracy(r) if recipe.metric == "test_accuracy" else num(r["val_mean"], "{:.4f}")
        out.append({"recipe": f"{recipe.name} (seed {recipe.seed})", "model": r["model"], "framework, mode": r["label"],
                    "metric": recipe.metric, "ours": ours, "published": num(recipe.published.get(r["model"]), "{:.4f}"),
                    "published by": recipe.published_by, "deviations": recipe.deviations or "—"})
    return pd.DataFrame(out)


def recipes_section(summary: pd.DataFrame, figures: Figures) -> Section | None:
    seeds = published(summary)
    images = [("img", caption, path) for caption, path in figures.get("recipes", [])]
    if seeds.empty and not images:
        return None
    return Section("Seed recipes: ours against the published figure", "recipes",
                   ([("table", Grid(seeds))] if len(seeds) else []) + images)


def benchmarks_section(bench: pd.DataFrame) -> Section | None:
    if bench.empty:
        return None
    shown = [c for c in bench.dropna(axis=1, how="all") if c not in ("source", "file", "status", "machine")
             and not c.startswith("env_")]
    return Section("pytest-benchmark", "pytest-benchmark", [("table", Grid(bench[shown].map(show)))])


def models_section() -> Section | None:
    """The MLP as each framework's users write it, read from the impl files."""
    definitions = model_definitions("mlp")
    if not definitions:
        return None
    return Section("The MLP in each framework", "the-mlp-in-each-framework", [
        ("p", "The same 784-784-16-10 model, written the way each framework's documentation writes it "
              "(read from the impl files as they are now)."), ("code", definitions)])


def about_section(cells: pd.DataFrame) -> Section:
    """Where and on what every number was measured."""
    def distinct(values) -> str:
        return ", ".join(sorted({show(v) for v in values if not missing(v)})) or "—"

    versions = [c for c in cells if c.startswith("env_framework_version_")]
    commits = distinct(f"{show(c)[:10]}{' (dirty)' if d is True else ''}"
                       for c, d in zip(column(cells, "env_commit"), column(cells, "env_dirty")))
    return Section("Where these numbers come from", "about", [("ul", [
        f"Machine: {machine_text(cells)}; hosts {distinct(column(cells, 'env_hostname'))}",
        f"Python {distinct(column(cells, 'env_python'))}; numpy {distinct(column(cells, 'env_numpy'))}",
        "Frameworks: " + distinct(f"{c.removeprefix('env_framework_version_')} {v}"
                                  for c in versions for v in cells[c].dropna()),
        f"Commits: {commits}", f"Result files: {len(cells)}"])])


def report_document(machine: str, cells: pd.DataFrame, bench: pd.DataFrame, tables: list[Table],
                    heads: list[Headline], summary: pd.DataFrame, figures: Figures, analysis: Analysis,
                    noise: Noise = Noise()) -> Document:
    """One machine's report: the summary, a section per table, then the per-mode views and the recipes."""
    main = [table_section(t, figures) for t in tables if not t.recipe]
    later = [native_section(tables), tax_section(tables), noise_section(noise, figures), models_section(),
             recipes_section(summary, figures),
             benchmarks_section(bench), about_section(cells)]
    intro = [f"{len(cells)} result files on {machine} ({machine_text(cells)}). One table per data set, model and "
             "device; one row per framework and mode, its trials (processes) and seeds pooled. Samples/s: the "
             "geometric mean over trials of each trial's median steady epoch (after the first, without the "
             "GPU-traced one), with its 95% interval over trials; trials that other processes contended for are "
             "left out and counted. × slower than fastest compares the geometric means of one table's rows. The "
             "summary speaks in verdicts against a margin declared before the run: the ratio of two rows is "
             "estimated from their per-round ratios where they ran in the same rounds, with its interval over "
             "rounds, corrected for the comparisons of its table and spent over the driver's looks; a row is "
             "faster when the whole interval lies beyond the margin, within the margin when its equivalence "
             "interval (two one-sided tests) lies inside it, and undecided otherwise, with the rounds that would "
             "decide it at 80% power and the smallest difference the run could see. The driver runs two "
             "controls beside the first configuration every round, an A/A twin and a planted slowdown, each "
             "judged by its interval: the summary gives a line for each, or says it is absent. Input / overhead "
             "/ arithmetic: where a steady epoch's seconds go (the input pipeline's clock; the shrunk-model "
             "probe's seconds per step times the steps; the rest)."]
    return Document(f"fwcompare: {machine}", intro, summary_lines(machine, cells, heads, analysis),
                    main + [s for s in later if s is not None])


# ---------------------------------------------------------------- --compare
def compare_grid(rows: pd.DataFrame, varying: list[str], same_machine: bool) -> Grid:
    frame = pd.DataFrame({
        "framework, mode": rows["label"], **{CHOSEN_SETTINGS.get(c, c): rows[c].map(show) for c in varying},
        "A samples/s": rows["sps_a"].map(rate), "B samples/s": rows["sps_b"].map(rate),
        "B ÷ A": rows["B ÷ A"].map(times), "A first epoch s": rows["first_epoch_s_a"].map(num),
        "B first epoch s": rows["first_epoch_s_b"].map(num),
        "A accuracy": rows["acc_mean_a"].map(lambda x: num(x, "{:.4f}")),
        "B accuracy": rows["acc_mean_b"].map(lambda x: num(x, "{:.4f}")),
        "B − A accuracy": (rows["acc_mean_b"] - rows["acc_mean_a"]).map(lambda x: num(x, "{:+.4f}")),
        "verdict": rows["verdict"], "over trials": rows["verdict_text"]})
    return Grid(frame if same_machine or frame["verdict"].ne("").any() else frame.drop(columns="verdict"))


def compare_document(c: comparing.Comparison) -> Document:
    sections = [Section("Settings that differ between A and B", "differences",
                        [("ul", c.differences or ["none besides the results"])])]
    for title, rows, varying in comparing.tables(c):
        sections.append(Section(title, slug(title), [("table", compare_grid(rows, varying, c.same_machine))]))
    intro = [f"A: {c.a}", f"B: {c.b}",
             ("One machine: each run's round effects are taken out first (a configuration's level against the "
              "others of its rounds), the whole machine's drift between the runs is measured apart (the median "
              "of the configurations' B ÷ A), and each configuration is judged on its own B ÷ A after the "
              "others' median, with an interval over its processes' spread and the drift's, training and "
              "inference of every configuration corrected together. A REGRESSION is training or inference "
              "speed slower than A's by more than the margin "
              f"({c.margin:.0%}), the whole interval beyond it, or mean test accuracy more than "
              f"{comparing.ACCURACY_DROP_THRESHOLD} below A's; FAILED: A measured it, B has no finished trial; "
              "with one trial a side there is no verdict."
              if c.same_machine else "Two machines: B ÷ A is how many times B's training rate is A's.")]
    return Document("fwcompare: B against A", intro, comparing.headline(c), sections)
