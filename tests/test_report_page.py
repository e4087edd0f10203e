"""The report's outputs beyond the numbers: compare, malformed and missing input, the CSV, paths,
its stages' imports, the plots and the page (in headless Chromium where it is installed).
The fixtures are tests/test_report.py's."""
from __future__ import annotations

import ast
import html
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.measure import results
from harness.plan.errors import HarnessError
from harness.plan.frameworks import default_frameworks
from harness.report import read
from tests.conftest import FRAMEWORK_LIBRARIES
from tests.report_fixtures import (CELLS, CHROMIUM, CPU, FIXTURES, GPU, MALFORMED, MAX_PAGE_BYTES, MAX_PLOTS_BYTES,
                                   MAX_SIDE_PX, ROOT, md_table, run_report)


# ---------------------------------------------------------------- compare
def test_compare_puts_two_machines_side_by_side_and_names_what_differs(tmp_path):
    code, text, _ = run_report("--compare", FIXTURES / "cpu" / "mnist", FIXTURES / "gpu", "--out-dir", tmp_path)
    assert code == 0  # two machines: ratios, not regressions
    written = (tmp_path / "COMPARE.md").read_text()
    assert f"wrote {tmp_path / 'COMPARE.md'}" in text and len(text.splitlines()) <= 10
    assert "3 configurations in both, 0 FAILED in B, 3 only in A, 2 only in B" in text
    rows = md_table(written, "mnist / logistic", key=3)
    assert rows["torch eager | equal | 100"]["B ÷ A"] == "5.00x" and rows["jax scan | equal | 100"]["B ÷ A"] == "6.25x"
    assert rows["torch eager | equal | 1000"]["verdict"] == "only in B"
    assert {r["verdict"] for r in rows.values()} == {"", "only in A", "only in B"}  # no regression verdicts
    differences = written.split("## Settings that differ between A and B\n\n", 1)[1].split("\n\n")[0]
    assert "- device: cpu → cuda" in differences and "- settings.threads: 2 → 16" in differences
    assert "- hyper.eps: 1e-07, 1e-08 → 1e-08" in differences  # the CPU's jax cells ran with eps 1e-7


def test_compare_matches_devices_where_both_archives_ran_on_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(FIXTURES / "cpu" / "mnist", a)
    shutil.copytree(FIXTURES / "cpu" / "mnist", b)
    doc = json.loads((a / "torch-eager-s0.json").read_text())  # A also ran torch eager on its GPU
    doc["cell"]["device"] = "cuda"
    (a / "torch-eager-cuda-s0.json").write_text(json.dumps(doc))
    run_report("--compare", a, b, "--out-dir", tmp_path)
    written = (tmp_path / "COMPARE.md").read_text()
    assert "only in A" in written  # the GPU row meets no CPU row of B
    assert "device: cpu" not in written.split("## Settings that differ", 1)[-1].split("\n\n")[1]


def test_compare_refuses_a_folder_of_two_machines(tmp_path):
    with pytest.raises(HarnessError, match="holds results of 2 machines"):
        run_report("--compare", FIXTURES, FIXTURES / "gpu", "--out-dir", tmp_path)


# ---------------------------------------------------------------- reading, CSV, errors
def test_malformed_files_are_named_on_stderr_and_skipped(full):
    _, _, err = full
    for path in MALFORMED:
        assert f"skipped {path}" in err
    assert "schema_version 0 is not a result schema" in err and "missing result.data, result.metrics" in err
    assert ".tmp" not in err and ".jax-s3.json" not in err  # hidden files are not even read


def test_csv_has_one_row_per_cell(tmp_path):
    code, _, _ = run_report(FIXTURES, "--csv", tmp_path / "flat.csv")
    flat = pd.read_csv(tmp_path / "flat.csv")
    cells = flat[flat["source"] == "harness"]
    assert code == 0 and len(cells) == len(CELLS) == cells["id"].nunique()
    assert len(flat) == len(CELLS) + 2  # and one per pytest-benchmark benchmark
    assert set(flat["machine"]) == {CPU, GPU}
    jax = cells[cells["id"].str.contains("-jax-step-equal-") & (cells["hyper_seed"] == 0) & (cells["device"] == "cpu")]
    assert jax.iloc[0]["train_samples_per_s_median"] == 120_000 and jax.iloc[0]["hyper_eps"] == 1e-7


def test_relative_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "gpu", tmp_path / "gpu")
    code, text, _ = run_report("gpu", "--out-dir", "out")
    assert code == 0 and f"wrote {tmp_path / 'out' / 'REPORT.md'}" in text


def test_missing_or_empty_results_are_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.report", str(tmp_path / "nowhere")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: results directory")
    assert "does not exist" in proc.stderr and "python -m harness.run" in proc.stderr
    with pytest.raises(HarnessError, match="no result files under .*python -m harness.run"):
        read.read_results([tmp_path])


def test_report_never_imports_a_framework(tmp_path):
    code = ("import sys; from harness.report.__main__ import main; main([sys.argv[1], '--out-dir', sys.argv[2]]); "
            f"print([m for m in {FRAMEWORK_LIBRARIES!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "gpu"), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip().endswith("[]"), proc.stderr


STAGES = ["read", "summary", "headline", "compare", "render", "noise", "document", "readme", "plots", "__main__"]


def test_stages_import_only_earlier_stages():
    assert sorted(STAGES) == sorted(p.stem for p in (ROOT / "harness" / "report").glob("*.py") if p.stem != "__init__")
    for i, stage in enumerate(STAGES):
        tree = ast.parse((ROOT / "harness" / "report" / f"{stage}.py").read_text())
        imported = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module == "harness.report":  # from harness.report import plots
                imported |= {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom) and (n.module or "").startswith("harness.report."):
                imported.add(n.module.rsplit(".", 1)[-1])
        assert imported <= set(STAGES[:i]), f"{stage} imports {imported - set(STAGES[:i])}"


def test_fixtures_read_as_results_and_the_malformed_ones_do_not():
    for path in CELLS:
        assert results.read(path).status in results.STATUSES
    for path in MALFORMED:
        with pytest.raises(results.SchemaError):
            results.read(path)


# ---------------------------------------------------------------- plots and the page
def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_every_plot_is_small_and_linked(full):
    out, _, _ = full
    for machine in (CPU, GPU):
        pngs = sorted((out / machine / "plots").glob("*.png"))
        text = (out / machine / "REPORT.md").read_text()
        assert pngs and sum(p.stat().st_size for p in pngs) < MAX_PLOTS_BYTES
        for png in pngs:
            assert max(png_size(png)) <= MAX_SIDE_PX, png
            assert f"](plots/{png.name})" in text
    names = {p.name for p in (out / CPU / "plots").glob("*.png")}
    assert {"mnist-logistic-on-cpu-throughput.png", "mnist-logistic-on-cpu-equal-curves.png",
            "tiny5x5-logistic-on-cpu-digits.png", "tiny5x5-logistic-on-cpu-weights.png",
            "tiny5x5-logistic-on-cpu-batch.png", "recipes-capacity.png", "recipes-step-losses.png"} <= names
    assert "mnist-logistic-on-cpu-digits.png" not in names  # no result there holds predictions


def test_a_rerun_removes_plots_it_no_longer_draws(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "old.png").write_bytes(b"")
    run_report(FIXTURES / "gpu", "--out-dir", tmp_path)
    assert not (tmp_path / "plots" / "old.png").exists()


def test_page_is_small_self_contained_and_has_contents_and_filters(full):
    out, _, _ = full
    page = (out / CPU / "report.html")
    text = page.read_text()
    assert page.stat().st_size < MAX_PAGE_BYTES
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # nothing fetched from outside
    assert '<nav><a href="#mnist-logistic-on-cpu">' in text and '<section id="mnist-logistic-on-cpu"' in text
    assert 'data-device="cpu" data-model="logistic"' in text and "<select id=\"dev\">" in text


def test_page_shows_the_mlp_as_each_framework_writes_it_read_from_the_impl_files(full):
    out, _, _ = full
    text = (out / CPU / "report.html").read_text()
    section = text.split('<section id="the-mlp-in-each-framework"', 1)[1].split("</section>", 1)[0]
    for name in default_frameworks():
        source = (ROOT / "impls" / f"{name}_impl.py").read_text()
        definition = source.split("# mlp: begin\n", 1)[1].split("# mlp: end", 1)[0].rstrip()
        assert html.escape(definition) in section  # the file's lines, not a copy kept elsewhere
    assert section.count("<pre>") == len(default_frameworks())


def chromium(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run", f"--user-data-dir={cwd / 'profile'}", *args],
                          capture_output=True, text=True, timeout=90)


# Run in the page after load: where the summary ends, whether every image decoded, and how
# many table rows stay visible once "scan" is typed into the filter box.
PROBE = """<script>addEventListener('load', () => {
const box = document.getElementById('summary').getBoundingClientRect();
const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
const q = document.getElementById('q'); q.value = 'scan'; q.dispatchEvent(new Event('input'));
const shown = [...document.querySelectorAll('table.rows tbody tr')].filter(r => !r.hidden).length;
document.body.dataset.probe = JSON.stringify({summaryBottom: box.bottom, width: innerWidth,
                                              images: document.images.length, broken, shown});});</script>"""


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install -y chromium)")
@pytest.mark.parametrize("machine", [CPU, GPU])
def test_page_in_headless_chromium_shows_the_summary_on_the_first_screen(full, tmp_path, machine):
    out, _, _ = full
    probed = tmp_path / "probed.html"
    probed.write_text((out / machine / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium("--window-size=1400,900", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
                   cwd=tmp_path).stdout
    probe = json.loads(re.search(r'data-probe="([^"]+)"', dom).group(1).replace("&quot;", '"'))
    assert probe["width"] == 1400 and probe["summaryBottom"] <= 900
    assert probe["images"] == len(list((out / machine / "plots").glob("*.png"))) and probe["broken"] == 0
    assert probe["shown"] == {CPU: 1, GPU: 2}[machine]  # jax scan's row of each table that has one
    shot = tmp_path / "shot.png"
    chromium("--window-size=1400,900", f"--screenshot={shot}", (out / machine / "report.html").as_uri(), cwd=tmp_path)
    assert png_size(shot) == (1400, 900)
