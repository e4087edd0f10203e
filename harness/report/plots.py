"""Plotting: a few small figures per table, and the seeds' recipe plots; matplotlib (Agg) loaded on use.

Every figure is at most MAX_INCHES * DPI pixels a side, keeps its legend outside the data
(constrained layout: nothing clipped), and is saved as a palette PNG of a few tens of KB.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.plan.files import write_atomic
from harness.plan.spec import model_spec
from harness.report.headline import Headline
from harness.report.summary import (ACCURACY_TARGET, Table, column, framework_label, mode_rank, row_label, setting,
                                    show, training_clock)

DPI = 100
MAX_INCHES = 19  # no side over 1900 px
WIDTH = 11.0  # inches: a figure fills a 1100 px column
GRID_ROWS = 8  # image grids show at most this many configurations ...
DIGITS = 12  # ... and this many test digits each
COLOURS = 64  # palette size of the saved PNG: plots use few colours, and it quarters the file


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, on machines without a display
    from matplotlib import pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8, "figure.dpi": DPI})
    return plt


def save(plt, fig, path: Path) -> None:
    """The figure as a palette PNG, written atomically."""
    from PIL import Image  # matplotlib's own dependency

    w, h = fig.get_size_inches()
    fig.set_size_inches(min(w, MAX_INCHES), min(h, MAX_INCHES))
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=DPI)
    plt.close(fig)
    small = io.BytesIO()
    Image.open(raw).convert("RGB").quantize(COLOURS).save(small, format="png", optimize=True)
    write_atomic(path, lambda f: f.write(small.getvalue()))


def compared_cells(table: Table, head: Headline) -> pd.DataFrame:
    """The ok cells of the headline's rows (the table's most common settings), labelled."""
    cells = table.cells[table.cells["status"] == "ok"]
    for c in table.varying:
        cells = cells[cells[c].map(show) == show(head.compared[c].iloc[0])]
    return cells.assign(label=cells.apply(row_label, axis=1) if len(cells) else [])


def palette(labels) -> dict[str, tuple]:
    """One colour per row label, the same in every panel of a figure (tab20 beyond ten labels)."""
    from matplotlib import colormaps

    labels = list(dict.fromkeys(labels))
    colours = colormaps["tab10" if len(labels) <= 10 else "tab20"].colors
    return {label: colours[i % len(colours)] for i, label in enumerate(labels)}


def legend_outside(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper")


# ---------------------------------------------------------------- per table
def throughput(plt, table: Table, head: Headline, cells: pd.DataFrame):
    """Training samples/s of every row of the table, coloured by framework."""
    rows = table.rows[table.rows["sps"].notna()]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH * 0.75, 1.0 + 0.24 * len(rows)), layout="constrained")
    y = np.arange(len(rows))
    # the 95% interval over trials, where a row has enough of them
    spread = np.nan_to_num(np.array([rows["sps"] - rows["sps_low"], rows["sps_high"] - rows["sps"]]))
    colour = palette(rows.apply(framework_label, axis=1))
    ax.barh(y, rows["sps"], xerr=spread, capsize=2, height=0.7,
            color=[colour[framework_label(r)] for r in rows.to_dict("records")])
    ax.set(yticks=y, yticklabels=table.row_names(rows),
           xlabel="training samples/s (geometric mean over trials; bar: 95% interval)")
    ax.invert_yaxis()  # the table's order, top to bottom
    if rows["sps"].max() > 50 * rows["sps"].min():
        ax.set_xscale("log")
    else:  # 1,500,000 rather than 1.5 and a "1e6" in the corner
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:,.0f}")
    return fig


def learning_curves(plt, table: Table, head: Headline, cells: pd.DataFrame):
    """Seed 002's plots, loss and accuracy by epoch, and test accuracy against training time."""
    if cells.empty:
        return None
    fig, (loss, acc, clock) = plt.subplots(1, 3, figsize=(WIDTH * 1.2, 3.4), layout="constrained")
    colour = palette(cells["label"])
    for label, g in cells.groupby("label", sort=False):
        for i, r in enumerate(g.to_dict("records")):  # every seed, one legend entry
            c = r["curves"]
            loss.plot(c["epoch"], c["train_loss"], "-", color=colour[label], label=None if i else label)
            loss.plot(c["epoch"], c["test_loss"], "--", color=colour[label])
            acc.plot(c["epoch"], c["test_accuracy"], "o-", ms=3, color=colour[label])
            clock.plot(training_clock(r), c["test_accuracy"], "o-", ms=3, color=colour[label])
    loss.set(title="loss (solid: training, dashed: test)", xlabel="epoch", yscale="log")
    acc.set(title="test accuracy", xlabel="epoch")
    clock.set(title="test accuracy against time", xlabel="training seconds, first epoch included")
    if max(max(filter(None, c["test_accuracy"]), default=0) for c in cells["curves"]) >= ACCURACY_TARGET - 0.01:
        clock.axhline(ACCURACY_TARGET, color="grey", lw=0.8, ls=":")  # "time to 97%"
    for ax in (loss, acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
    legend_outside(fig, loss)
    return fig


SPLIT_COLOURS = {"split_input_s": ("input pipeline", "#4c78a8"), "split_overhead_s": ("overhead", "#f58518"),
                 "split_arithmetic_s": ("arithmetic", "#54a24b")}


def time_split(plt, table: Table, head: Headline, cells: pd.DataFrame):
    """Where a steady epoch's seconds go, one stacked bar per row: input pipeline, overhead, arithmetic."""
    rows = table.rows[table.rows["split_overhead_s"].notna()] if "split_overhead_s" in table.rows else []
    if len(rows) == 0:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH * 0.75, 1.2 + 0.24 * len(rows)), layout="constrained")
    y, left = np.arange(len(rows)), np.zeros(len(rows))
    for column_name, (name, colour) in SPLIT_COLOURS.items():
        width = rows[column_name].fillna(0).to_numpy()
        ax.barh(y, width, left=left, height=0.7, color=colour, label=name)
        left += width
    ax.set(yticks=y, yticklabels=table.row_names(rows), xlabel="seconds of a steady epoch (medians over trials)")
    ax.invert_yaxis()
    legend_outside(fig, ax)
    return fig


def batch_sweep(plt, table: Table, head: Headline, cells: pd.DataFrame):
    """The crossover: training samples/s and the overhead's share of a step against batch size,
    one line per framework and mode (and other varying setting)."""
    if "hyper_batch_size" not in table.varying:
        return None
    others = [c for c in table.varying if c != "hyper_batch_size"]
    rows = table.rows[table.rows["sps"].notna()].sort_values("hyper_batch_size")
    rows = rows.assign(overhead_share=rows["split_overhead_s"] / rows["epoch_s"] if "split_overhead_s" in rows
                       else np.nan)
    fig, (rate, share) = plt.subplots(1, 2, figsize=(WIDTH * 1.1, 3.8), layout="constrained")
    for key, g in rows.groupby(["label"] + others, sort=False):
        if g["hyper_batch_size"].nunique() > 1:
            name = ", ".join([key[0]] + [setting(c, v) for c, v in zip(others, key[1:])])
            line, = rate.plot(g["hyper_batch_size"], g["sps"], "o-", label=name)
            share.plot(g["hyper_batch_size"], g["overhead_share"], "o-", color=line.get_color())
    sizes = sorted(rows["hyper_batch_size"].unique())
    rate.set(yscale="log", ylabel="training samples/s (geometric mean over trials)",
             title="throughput against batch size")
    share.set(ylabel="overhead / steady epoch", ylim=(0, 1.05),
              title="overhead's share of a step (shrunk-model probe)")
    for ax in (rate, share):
        ax.set(xscale="log", xlabel="batch size")
        ax.set_xticks(sizes, [str(int(b)) for b in sizes])  # the batch sizes run, not powers of 10
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    if not rate.lines:  # batch sizes vary, but no configuration ran more than one
        plt.close(fig)
        return None
    legend_outside(fig, rate)
    return fig


def first_seeds(cells: pd.DataFrame, field: str) -> list[dict]:
    """One cell per framework that holds field, its idiomatic mode's where it has one (at most GRID_ROWS)."""
    have = cells[column(cells, field).map(lambda v: isinstance(v, (dict, str)))]
    have = have.assign(rank=mode_rank(have) if len(have) else []).sort_values(["rank", "hyper_seed"], kind="stable")
    return have.drop_duplicates(["framework", "backend"]).head(GRID_ROWS).to_dict("records")


def digits(plt, table: Table, head: Headline, cells: pd.DataFrame):
    """Seed 002's grid: test digits with each row's prediction above, wrong ones in red."""
    rows = first_seeds(cells, "predictions")
    if not rows:
        return None
    columns = min(DIGITS, max(len(r["predictions"]["true"]) for r in rows))
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 + 0.75 * columns, 0.3 + 0.9 * len(rows)),
                             squeeze=False, layout="constrained")
    for ax_row, r in zip(axes, rows):
        p = r["predictions"]  # each cell keeps its own sample: the first test digits and some it got wrong
        images = np.frombuffer(base64.b64decode(p["images_b64"]), np.uint8).reshape(p["shape"])
        wrong = [i for i, (pred, true) in enumerate(zip(p["predicted"], p["true"])) if pred != true]
        right = [i for i in range(len(p["true"])) if i not in wrong]
        shown = sorted(wrong[:columns // 2] + right)[:columns] if wrong else right[:columns]
        for ax in ax_row:
            ax.axis("off")
        for ax, i in zip(ax_row, shown):
            ax.axis("on")
            ok = p["predicted"][i] == p["true"][i]
            ax.imshow(images[i], cmap="gray_r")
            ax.set_title(f"{p['predicted'][i]}" + ("" if ok else f" ({p['true'][i]})"), fontsize=8,
                         color="black" if ok else "red")
            ax.set_xticks([]), ax.set_yticks([])
            if not ok:
                for spine in ax.spines.values():
                    spine.set(color="red", linewidth=2)
        ax_row[0].set_ylabel(r["label"], rotation=0, ha="right", va="center", fontsize=8)
    return fig


def weights(plt, table: Table, head: Headline, cells: pd.DataFrame):
    """Each digit's column of a logistic model's kernel as an image: red pushes towards the digit, blue away."""
    rows = [r for r in first_seeds(cells, "weights_file") if Path(r["weights_file"]).is_file()]
    if table.model != "logistic" or not rows:
        return None
    kernels = []
    for r in rows:
        with np.load(r["weights_file"]) as npz:
            kernels.append(npz["dense1.kernel"])  # canonical (in, out)
    classes = max(k.shape[1] for k in kernels)
    fig, axes = plt.subplots(len(rows), classes, figsize=(1.6 + 0.8 * classes, 0.3 + 0.9 * len(rows)),
                             squeeze=False, layout="constrained")
    for ax_row, r, kernel in zip(axes, rows, kernels):
        side, limit = math.isqrt(kernel.shape[0]), np.abs(kernel).max()
        for k, ax in enumerate(ax_row):
            ax.set_xticks([]), ax.set_yticks([])
            if k < kernel.shape[1]:  # fewer classes than the row has axes (3 vs 7: two)
                ax.imshow(kernel[:, k].reshape(side, side), cmap="RdBu_r", vmin=-limit, vmax=limit)
                ax.set_title(str(k), fontsize=8)
        ax_row[0].set_ylabel(r["label"], rotation=0, ha="right", va="center", fontsize=8)
    return fig


TABLE_PLOTS = {  # file suffix: (caption, draw): once per table
    "throughput": ("training samples/s of every row", throughput),
    "split": ("where a steady epoch's time goes: input pipeline, overhead, arithmetic", time_split),
    "batch": ("the batch-size crossover: samples/s and the overhead's share against batch size", batch_sweep),
}
COMPARISON_PLOTS = {  # once per comparison (profile) of a table
    "curves": ("learning curves and test accuracy against training time", learning_curves),
    "digits": ("test digits: each row's prediction, wrong ones in red with the true label", digits),
    "weights": ("learned weights of the logistic model, one image per digit", weights),
}


# ---------------------------------------------------------------- the seeds' recipes
def step_losses(plt, cells: pd.DataFrame):
    """Training loss per iteration, as seed 004 draws it, one panel per recipe table."""
    have = cells[cells["curves"].map(lambda c: bool(c.get("step_loss"))) & column(cells, "recipe").notna()]
    if have.empty:
        return None
    groups = list(have.groupby(["table", "model"], sort=True))
    fig, axes = plt.subplots(len(groups), 1, figsize=(WIDTH * 0.8, 0.6 + 2.4 * len(groups)), squeeze=False,
                             layout="constrained")
    for ax, ((data, model), g) in zip(axes[:, 0], groups):
        # seed 004 trains one model under two optimizers: each is a line of its own
        labels = g.apply(row_label, axis=1)
        if g["hyper_optimizer"].nunique() > 1:
            labels += ", " + g["hyper_optimizer"]
        for label, runs in g.groupby(labels, sort=False):
            c = runs["curves"].iloc[0]  # the first seed: iterations of different seeds do not align
            ax.plot(np.arange(len(c["step_loss"])) * c["steps_per_point"], c["step_loss"], lw=1, label=label)
        ax.set(title=f"{data} / {model}: training loss per iteration", xlabel="iteration", yscale="log")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def capacity(plt, summary: pd.DataFrame):
    """Seed 001's question: test accuracy against the number of parameters, per framework and mode."""
    study = summary[column(summary, "recipe") == "mnist-study"]
    if study.empty:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH * 0.7, 3.6), layout="constrained")
    study = study.assign(params=study["model"].map(lambda m: model_spec(m).param_count()))
    for label, g in study.sort_values("params").groupby("label", sort=False):
        ax.plot(g["params"], g["acc_mean"], "o-", label=label, alpha=0.8)
    ax.set(xscale="log", xlabel="parameters", ylabel="test accuracy", title="mnist-study: accuracy against capacity")
    legend_outside(fig, ax)
    return fig


def draw(heads: list[Headline], recipe_cells: pd.DataFrame, summary: pd.DataFrame,
         plot_dir: Path) -> dict[str, list[tuple[str, Path]]]:
    """Every figure as plot_dir/<table>-<kind>.png: {section anchor: [(caption, path)]}."""
    plt = pyplot()
    figures: dict[str, list[tuple[str, Path]]] = {}

    def drawn(table: Table, name: str, caption: str, fig) -> None:
        if fig is not None:
            path = plot_dir / f"{table.anchor}-{name}.png"
            save(plt, fig, path)
            figures.setdefault(table.anchor, []).append((f"{table.title}: {caption}", path))

    per_table: dict[str, list[Headline]] = {}
    for head in heads:
        per_table.setdefault(head.table.anchor, []).append(head)
    for group in per_table.values():
        table = group[0].table
        for kind, (caption, draw_one) in TABLE_PLOTS.items():
            drawn(table, kind, caption, draw_one(plt, table, group[0], table.cells))
        for head in group:  # the users' code and the equalised code learn apart: a set of plots each
            profile = head.compared["profile"].iloc[0] if len(group) > 1 else ""
            cells = compared_cells(table, head)
            for kind, (caption, draw_one) in COMPARISON_PLOTS.items():
                drawn(table, f"{profile}-{kind}".strip("-"), f"{caption}{f', profile {profile}' if profile else ''}",
                      draw_one(plt, table, head, cells))
    for name, fig in (("step-losses", step_losses(plt, recipe_cells)), ("capacity", capacity(plt, summary))):
        if fig is not None:
            save(plt, fig, plot_dir / f"recipes-{name}.png")
            figures.setdefault("recipes", []).append((name.replace("-", " "), plot_dir / f"recipes-{name}.png"))
    return figures
