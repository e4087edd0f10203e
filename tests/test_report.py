"""The report: tables hold the right numbers, bad files are skipped by name, every plot and page is made.

Fixtures (tests/fixtures/results): mnist/ holds handcrafted cells with known epoch times, 60,000
samples an epoch: torch eager on the CPU (seeds 0 and 1, steady epochs 1.0 s and 1.5 s), on
CUDA (seed 0, 0.25 s), jax step (seeds 0 and 1, 0.5 s, Adam eps 1e-7) and a diverged Keras cell.
tiny5x5/ holds real numpy-reference runs at batch sizes 2 and 5, one with predictions and a
weights file; malformed/ three broken files; pytest_benchmark.json two benchmarks.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import report, report_plots, results
from harness.measure import spread
from harness.spec import HarnessError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "results"
MALFORMED = sorted((FIXTURES / "malformed").glob("*.json"))
CELLS = sorted(p for p in FIXTURES.rglob("*.json") if p.parent.name != "malformed" and p.parent != FIXTURES
               and not p.name.startswith("."))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def run_report(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = report.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The whole report of every fixture, with the HTML page: (out dir, markdown, stderr)."""
    out = tmp_path_factory.mktemp("report")
    code, text, err = run_report(FIXTURES, "--out-dir", out, "--html")
    assert code == 0, err
    return out, text, err


def table(markdown: str, heading: str) -> dict[str, dict[str, str]]:
    """The markdown table under `## heading`, as {run: {column: cell}}."""
    lines = markdown.split(f"## {heading}\n", 1)[1].strip().split("\n\n")[0].splitlines()
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    columns = split[0]
    return {row[0]: dict(zip(columns, row)) for row in split[2:]}


def test_table_pools_seeds_into_median_iqr_ratio_and_sd(full):
    _, text, _ = full
    rows = table(text, "mnist / logistic")
    torch, cuda, jax = rows["torch eager device=cpu"], rows["torch eager device=cuda"], rows["jax step device=cpu"]
    # torch's steady epochs 1.0, 1.5, 1.0, 1.5 s: 60k, 40k, 60k, 40k samples/s
    assert torch["train samples/s (median ± IQR)"] == "50,000 ± 20,000"
    assert torch["steady epoch s"] == "1.25" and torch["first epoch s"] == "4"  # median of 3 s and 5 s
    assert torch["test accuracy (mean ± sd, n seeds)"] == "0.9100 ± 0.0141 (n=2)"  # 0.90, 0.92: sd 0.01414
    assert jax["test accuracy (mean ± sd, n seeds)"] == "0.9100 ± 0.0283 (n=2)"  # 0.89, 0.93
    assert cuda["test accuracy (mean ± sd, n seeds)"] == "0.9100 ± — (n=1)"  # one seed has no sd
    assert [r["× slower than fastest"] for r in (cuda, jax, torch)] == ["1.00", "2.00", "4.80"]
    assert cuda["GPU busy s (util)"] == "0.1 (40%)" and cuda["peak device MB"] == "123"
    assert rows["keras[jax] fit device=cpu"]["status"].startswith("diverged 1 [")


def test_summary_numbers_match_numpy(full):
    summary = report.summarise(report.read_results([FIXTURES / "mnist"])).set_index("label")
    torch = summary.loc["torch eager device=cpu"]
    assert torch["acc_sd"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    assert (torch["sps_median"], torch["sps_iqr"]) == (50_000, 20_000)
    assert summary.loc["jax step device=cpu", "slowdown"] == pytest.approx(2.0)


def test_missing_gpu_and_device_numbers_say_why_in_a_footnote(full):
    _, text, _ = full
    assert table(text, "mnist / logistic")["jax step device=cpu"]["GPU busy s (util)"] == "n/a [1]"
    assert "- [1] no GPU: the cell ran on the CPU" in text
    assert "seed 0: diverged: loss became nan at epoch 2, step 3" in text
    oom = table(text, "tiny5x5 / logistic")["oom default batch_size=2"]
    assert oom["status"] == "oom 1 [3]" and oom["train samples/s (median ± IQR)"] == "—"
    assert "- [3] seed 0: oom: RuntimeError: CUDA out of memory" in text


def test_header_names_machines_versions_and_commits(full):
    _, text, _ = full
    assert "vm: AMD EPYC, device NVIDIA H100 80GB HBM3" in text
    assert "Python 3.11.7; numpy 2.4.6" in text and "torch 2.13.0" in text and "flax 0.12.0" in text
    assert "0123456789 (dirty)" in text  # the jax cells' checkout was dirty


def test_fairness_lists_every_setting_that_differs(full):
    _, text, _ = full
    fair = text.split("## mnist / logistic", 1)[1].split("### Fairness", 1)[1].split("## ", 1)[0]
    assert "- hyper_eps differs: 1e-07 (jax step device=cpu); 1e-08 (" in fair
    assert "- device differs: cpu (" in fair and "cuda (torch eager device=cuda)" in fair
    assert "precision" not in fair  # float32 everywhere: equal, so not listed


def test_fairness_says_when_all_settings_are_equal():
    cells = report.read_results([FIXTURES / "tiny5x5"])
    cells = cells[cells["batch_size"] == 2]
    (line,) = report.fairness(cells.assign(label=report.labels(cells)))
    assert re.match(r"All \d+ settings are equal", line) and "precision float32, device cpu, batch_size 2" in line


def test_recipe_cells_sit_beside_the_published_figure(full):
    _, text, _ = full
    row = table(text, "Seed recipes: ours against the published figure")["vanangamudi (seed 000)"]
    assert row["ours"] == "0.7000 ± — (n=1) (test_accuracy)" and row["published"] == "1.0000"
    assert row["recipe"] == "vanangamudi (seed 000)"


def test_malformed_files_are_named_on_stderr_and_skipped(full):
    _, text, err = full
    for path in MALFORMED:
        assert f"skipped {path}" in err
    assert "schema_version 0, expected 1" in err and "missing metrics" in err
    assert ".tmp" not in err and ".jax-s3.json" not in err  # hidden files are not even read
    assert f"{len(CELLS)} cells and 2 pytest-benchmark rows" in text


def test_a_seed_run_twice_is_one_seed_for_accuracy_and_two_runs_for_timing(tmp_path):
    """A second folder rerunning torch's seed 0 (0.88, 3.0 s epochs): accuracy over 2 seeds, epochs over 3 runs."""
    shutil.copytree(FIXTURES / "mnist", tmp_path / "a")
    doc = json.loads((FIXTURES / "mnist" / "torch-cpu-s0.json").read_text())
    doc["metrics"]["test_accuracy"] = 0.88
    doc["curves"]["epoch_s"] = [3.0] * len(doc["curves"]["epoch_s"])
    doc["metrics"]["train_samples_per_s"] = spread([20_000.0] * (len(doc["curves"]["epoch_s"]) - 1))
    doc["metrics"]["epoch_s"] = spread([3.0] * (len(doc["curves"]["epoch_s"]) - 1))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "torch-cpu-s0.json").write_text(json.dumps(doc))
    summary = report.summarise(report.read_results([tmp_path])).set_index("label")
    torch = summary.loc["torch eager device=cpu"]
    # seed 0: mean of 0.90 and 0.88 = 0.89; seed 1: 0.92
    assert torch["acc_values"] == pytest.approx([0.89, 0.92])
    assert torch["acc_sd"] == pytest.approx(np.std([0.89, 0.92], ddof=1))
    before = report.summarise(report.read_results([FIXTURES / "mnist"])).set_index("label")
    assert torch["sps_min"] == pytest.approx(20_000)  # the rerun's 3 s epochs are in the pool
    assert before.loc["torch eager device=cpu", "sps_min"] == pytest.approx(40_000)


def test_unknown_extra_fields_are_tolerated(tmp_path):
    doc = json.loads((FIXTURES / "mnist" / "jax-s0.json").read_text())
    doc["new_section"] = {"anything": [1, 2]}
    doc["metrics"]["new_metric"] = 3.5
    doc["cell"]["new_setting"] = "x"
    (tmp_path / "cell.json").write_text(json.dumps(doc))
    (row,) = report.read_results([tmp_path]).to_dict("records")
    assert row["new_metric"] == 3.5 and row["new_setting"] == "x"


def test_every_plot_is_written_and_linked(full):
    out, text, _ = full
    for name in report_plots.PLOTS:
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000, name
        assert f"](plots/{name}.png)" in text


def test_plots_without_their_data_are_skipped_with_a_note(tmp_path):
    code, text, _ = run_report(FIXTURES / "mnist", "--out-dir", tmp_path)
    assert code == 0
    assert "not drawn, no result holds `predictions`" in text
    assert "not drawn, no logistic result names an existing `weights_file`" in text
    assert "Throughput against batch size: not drawn, only one batch size" in text
    assert not (tmp_path / "plots" / "digits.png").exists() and (tmp_path / "plots" / "throughput.png").exists()


def slow_down(path: Path, factor: float) -> None:
    """Make a result file's steady epochs `factor` times slower, consistently."""
    doc = json.loads(path.read_text())
    times = [t * factor for t in doc["curves"]["epoch_s"]]
    samples = doc["metrics"]["train_samples_per_s"]["max"] * doc["metrics"]["epoch_s"]["min"]
    doc["curves"]["epoch_s"] = times
    doc["metrics"].update(epoch_s=spread(times[1:]), train_samples_per_s=spread(samples / t for t in times[1:]))
    path.write_text(json.dumps(doc))


def lower_accuracy(path: Path, by: float) -> None:
    doc = json.loads(path.read_text())
    doc["metrics"]["test_accuracy"] -= by
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("change,verdict_after", [
    pytest.param(lambda p: slow_down(p, 1.25), "REGRESSION", id="20% fewer samples/s"),  # beyond 10%
    pytest.param(lambda p: slow_down(p, 1.05), "ok", id="5% fewer samples/s"),  # noise
    pytest.param(lambda p: lower_accuracy(p, 0.05), "REGRESSION", id="5 points less accurate"),
])
def test_compare_flags_a_regression_beyond_its_threshold(tmp_path, change, verdict_after):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(FIXTURES / "mnist", a)
    shutil.copytree(FIXTURES / "mnist", b)
    for path in b.glob("jax-*.json"):
        change(path)
    code, text, _ = run_report("--compare", a, b, "--out-dir", tmp_path)
    rows = {r.split(" | ")[1]: r.split(" | ")[-1].rstrip(" |") for r in text.splitlines() if r.startswith("| mnist")}
    assert rows["jax step device=cpu"] == verdict_after
    assert rows["torch eager device=cpu"] == "ok"
    assert code == (1 if verdict_after == "REGRESSION" else 0)
    assert (tmp_path / "COMPARE.md").read_text() == text


def test_csv_has_one_row_per_cell(tmp_path):
    code, _, _ = run_report(FIXTURES, "--csv", tmp_path / "flat.csv")
    flat = pd.read_csv(tmp_path / "flat.csv")
    cells = flat[flat["source"] == "harness"]
    assert code == 0 and len(cells) == len(CELLS) == cells["id"].nunique()
    assert len(flat) == len(CELLS) + 2  # and one per pytest-benchmark benchmark
    jax = cells[cells["id"].str.contains("-jax-step-") & (cells["seed"] == 0)].iloc[0]
    assert jax["train_samples_per_s_median"] == 120_000 and jax["hyper_eps"] == 1e-7


def test_html_renders_in_headless_chromium(full, tmp_path):
    if not CHROMIUM:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    out, text, _ = full
    page = out / "report.html"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=60).stdout
    # 3 result tables, 2 mnist-study tables, recipes, pytest-benchmark
    assert dom.count("<table") == text.count("\n| --- |") == 7
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', dom)
    assert [alt for alt, _ in images] == [caption for caption, _ in report_plots.PLOTS.values()]
    assert all(base64.b64decode(data)[:4] == b"\x89PNG" for _, data in images)
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=60)
    assert shot.stat().st_size > 10_000


def test_missing_or_empty_results_are_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.report", str(tmp_path / "nowhere")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: results directory")
    assert "does not exist" in proc.stderr and "python -m harness.run" in proc.stderr
    with pytest.raises(HarnessError, match="no result files under .*python -m harness.run"):
        report.read_results([tmp_path])


def test_report_never_imports_a_framework(tmp_path):
    code = ("import sys; from harness import report; report.main([sys.argv[1], '--csv', sys.argv[2]]); "
            "print([m for m in ('torch', 'jax', 'keras', 'tensorflow', 'flax') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code, str(FIXTURES), str(tmp_path / "x.csv")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip().endswith("[]"), proc.stderr


def test_fixtures_follow_the_result_schema():
    jsonschema = pytest.importorskip("jsonschema")
    for doc in [json.loads(p.read_text()) for p in CELLS]:
        jsonschema.validate(doc, results.SCHEMA)
    for path in MALFORMED:
        with pytest.raises((ValueError, jsonschema.ValidationError)):
            jsonschema.validate(json.loads(path.read_text()), results.SCHEMA)
