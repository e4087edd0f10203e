"""What the report's tests share: the fixtures' folders (tests/fixtures/results: see
tests/test_report.py's docstring for what each holds), the report run in-process, and the tables."""
from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from harness.analysis.tables import analyse
from harness.report import headline, read, summary
from harness.report.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "results"
CPU, GPU = "amd-epyc-2c", "nvidia-h100-80gb-hbm3"
MALFORMED = sorted((FIXTURES / "malformed").glob("*.json"))
CELLS = sorted(p for p in FIXTURES.rglob("*.json") if p.parent.name != "malformed"
               and p.name != "pytest_benchmark.json" and not p.name.startswith("."))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAX_SIDE_PX, MAX_PLOTS_BYTES, MAX_PAGE_BYTES = 2000, 2_000_000, 2_000_000


def run_report(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Every fixture reported with the HTML page: (out dir, terminal output, stderr)."""
    out = tmp_path_factory.mktemp("report")
    code, text, err = run_report(FIXTURES, "--out-dir", out, "--html")
    assert code == 0, err
    return out, text, err


def tables_of(folder: Path) -> dict[str, summary.Table]:
    cells = read.read_results([folder])
    cells = cells[cells["source"] == "harness"]
    return {t.title: t for t in summary.tables(summary.summarise(cells), cells)}


@pytest.fixture(scope="module")
def cpu_tables():
    return tables_of(FIXTURES / "cpu")


@pytest.fixture(scope="module")
def gpu_tables():
    return tables_of(FIXTURES / "gpu")


def head(table: summary.Table, profile: str = "equal") -> headline.Headline:
    """The headline of one profile's comparison in a table."""
    (h,) = [h for h in headline.headlines([table], analyse(list(table.cells["result"])))
            if h.compared["profile"].iloc[0] == profile]
    return h


def md_table(markdown: str, heading: str, key: int = 2) -> dict[str, dict[str, str]]:
    """The first Markdown table under `## heading`, as {its first `key` cells joined by ' | ': {column: cell}}."""
    blocks = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].strip().split("\n\n")
    lines = next(b for b in blocks if b.startswith("|")).splitlines()
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return {" | ".join(row[:key]): dict(zip(split[0], row)) for row in split[2:]}
