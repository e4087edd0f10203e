"""How far apart identical processes land (harness.analysis.noise): a table of each configuration's
spread between processes and between the epochs of one process, and a strip plot of every
process's steady epochs, so that a bimodal level or a slow epoch shows at a glance."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.analysis.noise import SLOW_EPOCH, TARGET_CV, Noise, SlowEpoch, Spread
from harness.report.render import Grid, Section

MIN_PROCESSES = 3  # fewer processes say nothing of a configuration's spread
NOISE_ANCHOR = "noise"


def cv_text(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def noise_grid(spreads: list[Spread]) -> Grid:
    return Grid(pd.DataFrame({
        "configuration": [f"{s.configuration.cell.model} {s.configuration.label} {s.configuration.cell.profile}"
                          for s in spreads],
        "processes": [str(s.processes) for s in spreads],
        "samples/s": [f"{s.configuration.speed:,.0f}" for s in spreads],
        "between processes (CV)": [cv_text(s.between) for s in spreads],
        "within a process (CV, median)": [cv_text(s.within) for s in spreads],
        f"slow epochs (> {SLOW_EPOCH}x)": [f"{s.slow_epochs} of {s.epochs}" for s in spreads],
        f"at or under {TARGET_CV}": ["yes" if s.met else "no" for s in spreads]}))


def times(value: float) -> str:
    return "—" if math.isnan(value) else "∞" if math.isinf(value) else f"{value:.2f}"


def pair_text(pair: tuple[float, float], number: str = "{:.2f}") -> str:
    epoch, typical = pair
    return "—" if math.isnan(epoch) else f"{number.format(epoch)} ({number.format(typical)})"


def threads_text(threads) -> str:
    return "; ".join(f"{t.name} {t.cpu[0]:.1f} ({t.cpu[1]:.1f})" for t in threads) or "—"


SLOW_ROWS = 30  # the slow epochs listed, the slowest first


def slow_grid(slow: list[SlowEpoch]) -> Grid:
    """The slowest epochs, a row each; a column no result recorded (older results lack the machine's
    and the threads' records) is left out."""
    slow = sorted(slow, key=lambda s: -s.wall)[:SLOW_ROWS]
    frame = pd.DataFrame({
        "configuration": [s.label for s in slow], "epoch": [str(s.epoch) for s in slow],
        "wall": [times(s.wall) for s in slow], "CPU (user + sys)": [times(s.cpu) for s in slow],
        "sys": [times(s.sys) for s in slow], "minor faults": [times(s.faults) for s in slow],
        "involuntary switches": [times(s.involuntary) for s in slow],
        "voluntary switches": [times(s.voluntary) for s in slow],
        "threads' moves between cores": [times(s.migrations) for s in slow],
        **{f"{name} cores (process median)": [pair_text(getattr(s, key)) for s in slow]
           for key, name in (("idle", "idle"), ("others", "others'"), ("steal", "stolen"),
                             ("wait", "queued"))},
        "Python GC s (process median)": [pair_text(s.gc, "{:.3f}") for s in slow],
        "busiest threads: CPU s (process median)": [threads_text(s.threads) for s in slow]})
    return Grid(frame[[column for column in frame if (frame[column] != "—").any()]])


def noise_section(noise: Noise, figures: dict) -> Section | None:
    shown = [s for s in noise.spreads if s.processes >= MIN_PROCESSES]
    if not shown:
        return None
    met = sum(s.met for s in shown)
    slow = [("p", f"Where the slow epochs' time went ({len(noise.slow)} epochs over {SLOW_EPOCH}x their "
                  "process's median; the slowest listed): each figure as a multiple of the same process's median "
                  "steady epoch, from getrusage over all its threads. CPU near the wall's multiple: the epoch did "
                  "more work; CPU near 1 with more switches: it waited (involuntary: the scheduler gave the core "
                  "to another; voluntary: a thread blocked); and how often the scheduler moved its threads "
                  "between cores. Then the whole machine over the epoch, in cores, beside the process's median "
                  "epoch: idle (nobody used them: the process's threads slept with the machine free), others' "
                  "(other processes ran), stolen (the hypervisor ran something else) and queued (the process's "
                  "threads were ready to run but waited for a core). Then the seconds Python's "
                  "garbage collector ran. Last, the CPU seconds of the process's busiest threads in that epoch, "
                  "each beside the same thread's median: which threads did less, or more."),
            ("table", slow_grid(list(noise.slow)))] \
        if noise.slow else []
    return Section("How far apart identical processes land", NOISE_ANCHOR, [
        ("p", "Each configuration's processes ran the same code. Between processes: the coefficient of "
              "variation of their steady-epoch medians, which is what a verdict's rounds must average away "
              "(the rounds needed grow with its square). Within a process: the median over processes of the "
              f"CV of each one's steady epochs. A slow epoch took over {SLOW_EPOCH}x its own process's median. "
              f"{met} of {len(shown)} configurations are at or under the target of {TARGET_CV}."),
        ("table", noise_grid(shown)),
        *[("img", caption, path) for caption, path in figures.get(NOISE_ANCHOR, [])], *slow])


def strip_plot(plt, spreads: list[Spread]):
    """One row per configuration; each process a thin band of its own within the row, its steady
    epochs as dots at their time over the configuration's median."""
    shown = [s for s in spreads if s.processes >= MIN_PROCESSES]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(shown) + 1.2), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, s in enumerate(shown):
        trials = s.configuration.trials
        centre = float(pd.Series([t.epoch_s for t in trials]).median())
        for k, t in enumerate(trials):
            y = row + (k - (len(trials) - 1) / 2) * 0.7 / max(len(trials), 1)
            ax.scatter([e / centre for e in t.steady], [y] * len(t.steady), s=9, color=colours[k % len(colours)])
    ax.axvline(1.0, color="0.6", lw=0.8)
    ax.set_xscale("log")  # a process twice as slow and one twice as fast sit as far from the median
    ticks = [0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0]
    ax.set_xticks(ticks, [f"{v:g}x" for v in ticks], minor=False)
    ax.minorticks_off()
    ax.set_yticks(range(len(shown)), [f"{s.configuration.cell.model} {s.configuration.label} "
                                      f"{s.configuration.cell.profile} (CV {cv_text(s.between)})" for s in shown])
    ax.invert_yaxis()
    ax.set_xlabel("steady epoch seconds / the configuration's median process")
    fig.suptitle("Every process's steady epochs (one colour, one band per process)")
    return fig


def draw(plt, noise: Noise, plot_dir: Path, save) -> dict[str, list[tuple[str, Path]]]:
    fig = strip_plot(plt, list(noise.spreads))
    if fig is None:
        return {}
    path = plot_dir / "noise-strip.png"
    save(plt, fig, path)
    return {NOISE_ANCHOR: [("every process's steady epochs", path)]}
