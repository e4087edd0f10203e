"""python -m harness.report: the answer first, then tables, plots and a page, from result files.

    python -m harness.report                          results/runs: the summary here, the report in results/report/
    python -m harness.report results/gpu-h100 --html  also report.html, one page that works offline
    python -m harness.report A B --out-dir D          several machines: one report each in D/<machine>/
    python -m harness.report --csv [PATH | -]         the flat table, one row per cell (default OUT_DIR/report.csv)
    python -m harness.report --compare A B            B against A per framework and mode (COMPARE.md);
                                                      on one machine, exit 1 on a regression
    python -m harness.report ARCHIVE --readme         the README's section drawn from an archive
                                                      (harness.archive's folder, e.g. results/cpu-xeon-2c)

Reads result files (any schema this checkout knows, harness.measure.results) and pytest-benchmark
files recursively; a file that is neither, or a result it cannot use, is named on stderr in
one line and skipped. An interrupted report leaves the previous one whole: the plots are
drawn aside and swapped in with the pages. The terminal gets the summary and the paths
written; the tables are in REPORT.md. Never imports a framework.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from harness.analysis import stats
from harness.analysis.noise import noise as noise_of
from harness.analysis.tables import Analysis, analyse
from harness.plan.errors import HarnessError, cli_main
from harness.plan.files import REPORT_DIR, WORKSPACE, write_atomic
from harness.plan.options import check_out, margin_fraction
from harness.report import compare as comparing
from harness.report import noise, plots
from harness.report.document import compare_document, report_document
from harness.report.headline import headlines
from harness.report.read import read_results
from harness.report.readme import archive_parts, readme_section
from harness.report.render import markdown, page
from harness.report.summary import summarise, tables


def write_text(path: Path, text: str) -> Path:
    write_atomic(path, lambda f: f.write(text.encode()))
    return path


def kilobytes(paths) -> str:
    return f"{sum(p.stat().st_size for p in paths) / 1024:,.0f} KB"


def declared_margin(cells: pd.DataFrame, given: float | None) -> float:
    """--margin where given, else the one the driver declared in the results (rounds record it), else 5%."""
    if given is not None:
        return given
    declared = {r.env.round.margin for r in cells["result"] if r.env.round and r.env.round.margin is not None}
    return declared.pop() if len(declared) == 1 else stats.MARGIN


def analysis_of(cells: pd.DataFrame, margin: float | None) -> Analysis:
    return analyse(list(cells["result"]), declared_margin(cells, margin))


def machine_report(machine: str, df: pd.DataFrame, out_dir: Path, with_html: bool,
                   margin: float | None = None) -> list[str]:
    """One machine's REPORT.md, plots/ and report.html in out_dir: its summary lines, then what was written."""
    mine = df[df["machine"] == machine]
    cells, bench = mine[mine["source"] == "harness"], mine[mine["source"] == "pytest-benchmark"]
    summary = summarise(cells)
    all_tables = tables(summary, cells)
    analysis = analysis_of(cells, margin)
    heads = headlines(all_tables, analysis)
    noise_seen = noise_of(list(cells["result"]))
    plot_dir, aside = out_dir / "plots", out_dir / f".plots-{os.getpid()}.tmp"
    try:  # everything is made aside first: an interrupted report leaves the previous one whole
        figures = plots.draw(heads, cells[cells["status"] == "ok"], summary, aside)
        figures |= noise.draw(plots.pyplot(), noise_seen, aside, plots.save)
        html = page(report_document(machine, cells, bench, all_tables, heads, summary, figures, analysis, noise_seen)) \
            if with_html else None
        figures = {k: [(caption, plot_dir / path.name) for caption, path in shown] for k, shown in figures.items()}
        doc = report_document(machine, cells, bench, all_tables, heads, summary, figures, analysis, noise_seen)
        text = markdown(doc, out_dir)
        swap_in(aside, plot_dir)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    drawn = [path for shown in figures.values() for _, path in shown]
    written = [write_text(out_dir / "REPORT.md", text)]
    if html is not None:
        written.append(write_text(out_dir / "report.html", html))
    lines = doc.summary + [f"wrote {p} ({kilobytes([p])})" for p in written]
    if drawn:
        lines.append(f"wrote {plot_dir}/ ({len(drawn)} PNG, {kilobytes(drawn)})")
    return lines


def swap_in(new: Path, folder: Path) -> None:
    """Replace folder by new in two renames (the old one is removed after)."""
    new.mkdir(parents=True, exist_ok=True)
    old = folder.with_name(f".{folder.name}-old-{os.getpid()}.tmp")
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def report(dirs: list[Path], out_dir: Path, with_html: bool, margin: float | None = None) -> list[str]:
    """A report per machine: in out_dir itself for one machine, else in out_dir/<machine>/."""
    df = read_results(dirs)
    machines = sorted(df.loc[df["source"] == "harness", "machine"].unique())
    if not machines:
        raise HarnessError(f"only pytest-benchmark files under {', '.join(map(str, dirs))}: no cells to report")
    lonely = set(df["machine"]) - set(machines)
    if lonely:
        print(f"pytest-benchmark files of {', '.join(sorted(lonely))} have no cells of that machine: "
              "in --csv only", file=sys.stderr)
    if len(machines) == 1:
        return machine_report(machines[0], df, out_dir, with_html, margin)
    lines = [f"{len(machines)} machines: one report each in {out_dir}/<machine>/"]
    for machine in machines:
        lines += [""] + machine_report(machine, df, out_dir / machine, with_html, margin)
    return lines


def compare(a: Path, b: Path, out_dir: Path, with_html: bool, margin: float | None = None) -> tuple[list[str], bool]:
    """B against A: COMPARE.md (and compare.html); the summary lines and whether B regressed."""
    def side(folder: Path):
        df = read_results([folder])
        cells = df[df["source"] == "harness"]
        if cells.empty:
            raise HarnessError(f"no result files of cells under {folder}")
        return str(folder), summarise(cells), cells

    if Path(a).resolve() == Path(b).resolve():
        raise HarnessError(f"--compare {a} {b}: a folder against itself compares nothing; give two runs' folders, "
                           "A then B")
    sides = side(a), side(b)
    result = comparing.compare(*sides, margin=declared_margin(pd.concat([sides[0][2], sides[1][2]]), margin))
    doc = compare_document(result)
    written = [write_text(out_dir / "COMPARE.md", markdown(doc, out_dir))]
    if with_html:
        written.append(write_text(out_dir / "compare.html", page(doc)))
    return doc.summary + [f"wrote {p}" for p in written], result.regressed


def readme_text(archive: Path, margin: float | None = None) -> str:
    """The README's section for one machine's archive (harness.archive's folder)."""
    folders, loops, spread = archive_parts(archive)
    df = read_results(folders)
    cells = df[df["source"] == "harness"]
    machines = sorted(cells["machine"].unique())
    if len(machines) != 1:
        raise HarnessError(f"--readme takes one machine's archive, {archive} holds {len(machines)}: "
                           f"{', '.join(machines)}")
    summary = summarise(cells)
    all_tables = tables(summary, cells)
    analysis = analysis_of(cells, margin)
    return readme_section(machines[0], headlines(all_tables, analysis), all_tables, analysis, loops, spread, summary)


def write_csv(dirs: list[Path], target: str, out_dir: Path) -> None:
    """The flat table, one row per cell or benchmark; lists as JSON text, the curves left out."""
    flat = read_results(dirs).drop(columns=["curves", "predictions", "cell_fields"], errors="ignore")
    flat = flat.map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    if target == "-":
        flat.to_csv(sys.stdout, index=False)
        return
    path = Path(target).absolute() if target else out_dir / "report.csv"
    write_atomic(path, lambda f: f.write(flat.to_csv(index=False).encode()))
    print(f"wrote {path} ({len(flat)} rows)")


def parser() -> argparse.ArgumentParser:
    absolute = lambda p: Path(p).absolute()  # noqa: E731 - a relative path is the user's current directory's
    p = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="*", type=absolute, default=[WORKSPACE],
                   help=f"result folders, read recursively (default {WORKSPACE})")
    p.add_argument("--out-dir", type=absolute, default=REPORT_DIR,
                   help=f"for REPORT.md, plots/, report.html, report.csv, COMPARE.md (default {REPORT_DIR})")
    p.add_argument("--html", action="store_true", help="also write report.html: summary, tables and plots inlined")
    p.add_argument("--csv", nargs="?", const="", metavar="PATH",
                   help="write only the flat table (default OUT_DIR/report.csv; - for stdout); folders go before it")
    p.add_argument("--compare", nargs=2, type=absolute, metavar=("A", "B"),
                   help="B against A per framework and mode, to OUT_DIR/COMPARE.md")
    p.add_argument("--margin", type=margin_fraction, metavar="FRACTION",
                   help="the practical margin of the verdicts (default: the one the driver declared in the "
                        f"results, else {stats.MARGIN:g})")
    p.add_argument("--readme", action="store_true",
                   help="print the README's archive section (tables, verdicts, time split) and write nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.readme and args.csv != "-":  # the folder the report writes: one line if it cannot
        args.out_dir = check_out(args.out_dir, "--out-dir", "the report")
    if args.csv is not None:
        write_csv(args.dirs, args.csv, args.out_dir)
        return 0
    if args.readme:
        if len(args.dirs) != 1:
            raise HarnessError("--readme takes one archive folder, e.g. results/cpu-xeon-2c")
        print(readme_text(args.dirs[0], args.margin))
        return 0
    if args.compare:
        lines, regressed = compare(*args.compare, args.out_dir, args.html, args.margin)
    else:
        lines, regressed = report(args.dirs, args.out_dir, args.html, args.margin), False
    print("\n".join(lines))
    return 1 if regressed else 0


if __name__ == "__main__":
    cli_main(main)
