"""The report's plots: each draw(plt, ok_cells, summary) returns a figure, or why it drew none."""
from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report import TABLE_KEY, column, labels


def panels(plt, frame: pd.DataFrame, ncols: int = 1, width: float = 7.0, height: float | None = None):
    """A figure with one row of axes per table of frame: (figure, [(axes row, title, rows)])."""
    groups = list(frame.groupby(TABLE_KEY))
    height = height or 0.6 * max(t["label"].nunique() for _, t in groups) + 1.5
    fig, axes = plt.subplots(len(groups), ncols, figsize=(width * ncols, height * len(groups)), squeeze=False)
    return fig, [(ax, f"{ds} / {model}", t) for ax, ((ds, model), t) in zip(axes, groups)]


def by_label(ax, t: pd.DataFrame, title: str, xlabel: str) -> None:
    ax.set(yticks=range(len(t)), yticklabels=t["label"], title=title, xlabel=xlabel)
    ax.invert_yaxis()  # top to bottom in the tables' order


def iqr_bars(t: pd.DataFrame) -> np.ndarray:
    """Error bars from the median down to Q1 and up to Q3, shape (2, rows)."""
    return np.array([t["sps_median"] - t["sps_q1"], t["sps_q3"] - t["sps_median"]], np.float64)


def plot_throughput(plt, ok, summary):
    fig, rows = panels(plt, summary)
    for (ax, *_), title, t in rows:
        y = np.arange(len(t))
        ax.barh(y, t["sps_median"], xerr=iqr_bars(t), capsize=4)
        ax.plot(t["sps_min"], y, "k|", t["sps_max"], y, "k|", markersize=12)
        by_label(ax, t, title, "training samples/s: median, IQR bar, | min and max")
    return fig


def plot_accuracy(plt, ok, summary):
    fig, rows = panels(plt, summary)
    for (ax, *_), title, t in rows:
        for y, r in enumerate(t.to_dict("records")):
            ax.plot(r["acc_values"], [y] * len(r["acc_values"]), "o", color="tab:gray", alpha=0.6)
            ax.errorbar(r["acc_mean"], y, xerr=np.nan_to_num(r["acc_sd"]), fmt="D", color="tab:red", capsize=4)
        by_label(ax, t, title, "test accuracy: each seed (grey), mean ± sd (red)")
    return fig


def plot_learning_curves(plt, ok, summary):
    """Seed 002's two plots, loss and accuracy by epoch, with every framework on the same axes."""
    fig, rows = panels(plt, ok, ncols=2, width=5, height=3.2)
    for (ax_loss, ax_acc), title, t in rows:
        for i, (label, g) in enumerate(t.groupby("label")):
            for ax, key, style in ((ax_loss, "train_loss", "-"), (ax_loss, "test_loss", "--"),
                                   (ax_acc, "test_accuracy", "-")):
                runs = [np.asarray(c[key], np.float64) for c in g["curves"]]
                stack = np.stack([r[:min(map(len, runs))] for r in runs])
                epochs = np.arange(1, stack.shape[1] + 1)
                ax.plot(epochs, stack.mean(0), style, color=f"C{i}", label=f"{label} {key.replace('_', ' ')}")
                if len(runs) > 1:  # the band is the seeds' spread
                    ax.fill_between(epochs, stack.min(0), stack.max(0), color=f"C{i}", alpha=0.2)
        for ax, what in ((ax_loss, "loss"), (ax_acc, "test accuracy")):
            ax.set(title=f"{title}: {what}", xlabel="epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(fontsize=7)
    return fig


def plot_step_losses(plt, ok, summary):
    """Training loss per iteration, as seed 004 draws it, for the seeds' recipes."""
    have = ok[ok["curves"].map(lambda c: bool(c.get("step_loss"))) & column(ok, "recipe").notna()]
    if have.empty:
        return "no recipe cell recorded `curves.step_loss` (python -m harness.run --recipe small-subset)"
    fig, rows = panels(plt, have, height=3.2)
    for (ax, *_), title, t in rows:
        for i, (label, g) in enumerate(t.groupby("label")):
            c = g["curves"].iloc[0]  # the first seed: iterations of different seeds do not align
            steps = np.arange(len(c["step_loss"])) * c["steps_per_point"]
            ax.plot(steps, np.asarray(c["step_loss"], np.float64), color=f"C{i}", label=label, lw=1)
        ax.set(title=f"{title}: training loss per iteration", xlabel="iteration", ylabel="loss", yscale="log")
        ax.legend(fontsize=7)
    return fig


def plot_capacity(plt, ok, summary):
    """Seed 001's question: test accuracy against the number of parameters, per framework."""
    from harness.spec import model_spec

    study = summary[summary["table"].str.startswith("mnist-study")] if len(summary) else summary
    if study.empty:
        return "no mnist-study results (python -m harness.run --recipe mnist-study)"
    fig, ax = plt.subplots(figsize=(7, 4))
    series = study.assign(params=study["model"].map(lambda m: model_spec(m).param_count()),
                          series=labels(study, ignore=("model",)))
    for i, (label, g) in enumerate(series.sort_values("params").groupby("series")):
        ax.plot(g["params"], g["acc_mean"], "o-", color=f"C{i}", label=label, alpha=0.7)
    ax.set(xscale="log", xlabel="parameters", ylabel="test accuracy", title="mnist-study: accuracy against capacity")
    ax.legend(fontsize=7)
    return fig


def plot_batch_sizes(plt, ok, summary):
    series = summary.assign(series=labels(summary, ignore=("batch_size",)))
    groups = [(k, g.sort_values("batch_size")) for k, g in series.groupby(TABLE_KEY + ["series"])
              if g["batch_size"].nunique() > 1]
    if not groups:
        return "only one batch size per configuration; `python -m harness.run --batch-size 32 256` draws it"
    fig, ax = plt.subplots(figsize=(7, 4))
    for (ds, model, label), g in groups:
        ax.errorbar(g["batch_size"], g["sps_median"], iqr_bars(g), marker="o", capsize=4,
                    label=f"{ds} / {model}: {label}")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="training samples/s (median, IQR)")
    sizes = sorted({b for _, g in groups for b in g["batch_size"]})
    ax.set_xticks(sizes, [str(b) for b in sizes])  # the batch sizes run, not powers of 10
    ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax.legend(fontsize=7)
    return fig


def plot_per_class(plt, ok, summary):
    fig, rows = panels(plt, ok, width=8)
    for (ax, *_), title, t in rows:
        means = t.groupby("label")["per_class_accuracy"].apply(
            lambda s: np.nanmean(np.array(s.tolist(), np.float64), axis=0))  # None: a class not in the test set
        grid = np.stack(means.tolist())
        image = ax.imshow(grid, vmin=0, vmax=1, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        ax.set(xticks=range(grid.shape[1]), yticks=range(len(means)), yticklabels=means.index, xlabel="class",
               title=f"{title}: test accuracy per class, mean over seeds")
        fig.colorbar(image, ax=ax)
    return fig


def image_rows(plt, ok: pd.DataFrame, field: str, images, draw):
    """A row of images(record) images for the first seed of each configuration holding field, or None."""
    have = ok[column(ok, field).notna()].groupby(TABLE_KEY + ["label"]).head(1)
    if have.empty:
        return None
    ncols = max(images(r) for r in have.to_dict("records"))
    fig, axes = plt.subplots(len(have), ncols, figsize=(0.9 * ncols + 1.5, 1.3 * len(have)), squeeze=False)
    for ax_row, r in zip(axes, have.to_dict("records")):
        for ax in ax_row:
            ax.axis("off")
        draw(ax_row, r)
        ax_row[0].text(-0.2, 0.5, f"{r['dataset_name']} / {r['model']}\n{r['label']}", fontsize=7,
                       transform=ax_row[0].transAxes, ha="right", va="center")
    return fig


def draw_digits(ax_row, r) -> None:
    """Seed 002's grid: predicted (true) above each test image, wrong ones in red."""
    p = r["predictions"]
    images = np.frombuffer(base64.b64decode(p["images_b64"]), np.uint8).reshape(p["shape"])
    for ax, image, pred, true in zip(ax_row, images, p["predicted"], p["true"]):
        ax.imshow(image, cmap="gray")
        ax.set_title(f"{pred} ({true})", fontsize=8, color="green" if pred == true else "red")


def draw_weights(ax_row, r) -> None:
    """Each digit's column of the logistic kernel as an image: red pushes towards the digit, blue away."""
    with np.load(r["weights_file"]) as npz:
        kernel = npz["dense1.kernel"]  # canonical (in, out)
    side, limit = math.isqrt(kernel.shape[0]), np.abs(kernel).max()
    for k, ax in enumerate(ax_row):
        if k >= kernel.shape[1]:  # fewer classes than the row has axes (3 vs 7: two)
            ax.axis("off")
            continue
        ax.imshow(kernel[:, k].reshape(side, side), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(str(k), fontsize=8)


def plot_digits(plt, ok, summary):
    return (image_rows(plt, ok, "predictions", lambda r: len(r["predictions"]["true"]), draw_digits)
            or "no result holds `predictions` (test images with their predicted and true labels)")


def plot_logistic_weights(plt, ok, summary):
    has_file = column(ok, "weights_file").map(lambda f: isinstance(f, str) and Path(f).is_file())
    return (image_rows(plt, ok[(ok["model"] == "logistic") & has_file], "weights_file", lambda r: 10, draw_weights)
            or "no logistic result names an existing `weights_file` (.npz of its final canonical weights)")


PLOTS = {  # file name: (caption, draw); a draw returns a figure, or why it drew none
    "throughput": ("Training throughput", plot_throughput),
    "accuracy": ("Test accuracy over seeds", plot_accuracy),
    "learning_curves": ("Learning curves", plot_learning_curves),
    "step_losses": ("Training loss per iteration", plot_step_losses),
    "capacity": ("Accuracy against capacity (mnist-study)", plot_capacity),
    "throughput_vs_batch": ("Throughput against batch size", plot_batch_sizes),
    "per_class_accuracy": ("Test accuracy per class", plot_per_class),
    "digits": ("Test digits, predicted (true)", plot_digits),
    "logistic_weights": ("Learned logistic weights", plot_logistic_weights),
}


def plot_blocks(ok: pd.DataFrame, summary: pd.DataFrame, plot_dir: Path) -> list[tuple]:
    """Each plot as a PNG under plot_dir, or a line saying why it was not drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only, on machines without a display
    from matplotlib import pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    blocks = [("h2", "Plots")]
    for name, (caption, draw) in PLOTS.items():
        fig = draw(plt, ok, summary)
        if isinstance(fig, str):
            blocks.append(("p", f"{caption}: not drawn, {fig}."))
            continue
        fig.tight_layout()
        fig.savefig(plot_dir / f"{name}.png", dpi=90)
        plt.close(fig)
        blocks.append(("img", (caption, plot_dir / f"{name}.png")))
    return blocks
