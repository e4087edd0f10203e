"""The report: the summary's numbers, one report per machine, tables, fairness, compare, plots and the page.

Fixtures (tests/fixtures/results, schema v2), two machines, MNIST logistic, 60,000 samples an epoch:
cpu/ (amd-epyc-2c): torch eager seeds 0 and 1 (first epochs 3 and 5 s, steady 1.0 and 1.5 s),
jax step seeds 0 and 1 (10 and 12 s, then 0.5 s; Adam eps 1e-7), jax scan seed 0 (20 s, then
0.25 s; run beside another cell), a diverged Keras cell, torch eager and jax step in profile
native (2.0 and 0.6 s epochs); tiny5x5/ real numpy-reference runs at batch 2 and 5, one with
predictions and a weights file, and an out-of-memory cell; recipes/ three recipe cells, one
with per-iteration losses;
pytest_benchmark.json two benchmarks. gpu/ (nvidia-h100-80gb-hbm3): torch eager (2 s, then
0.25 s), torch eager at batch 1000, torch cudagraph (3 s, then 0.05 s), jax step (4 s, then
0.2 s), jax scan (5 s, then 0.04 s); epoch 3 of each is the GPU-traced one. malformed/: three
broken files.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from harness.analysis.parity import TOLERANCE
from harness.measure import results
from harness.plan.errors import HarnessError
from harness.report import headline, read, summary
from harness.report.__main__ import archive_parts, main, read_results, summarise, tables
from tests.helpers import CPU_ARCHIVE
from tests.report_fixtures import CPU, FIXTURES, GPU, head, md_table


# ---------------------------------------------------------------- the summary's numbers
def test_headline_names_the_fastest_mode_and_its_lead_over_each_idiomatic_mode(cpu_tables, gpu_tables):
    cpu = head(cpu_tables["mnist / logistic on cpu"])
    # profile equal at its most common settings (float32); the native rows are a comparison of their own
    assert set(cpu.compared["profile"]) == {"equal"} and cpu.settings[:2] == ["batch 100", "precision float32"]
    assert cpu.fastest["label"] == "jax scan" and cpu.fastest["sps"] == pytest.approx(240_000)
    # a trial's rate is its median steady epoch's: torch's epochs of 1.0 and 1.5 s give 48,000
    assert {k: v and v["sps"] for k, v in cpu.idiomatic.items()} == pytest.approx(
        {"jax step": 120_000, "torch eager": 48_000, "keras[jax] fit": np.nan}, nan_ok=True)
    # one or two trials a row: too few for any verdict
    assert [v.kind for v in cpu.verdicts] == ["too few", "too few"]
    native = head(cpu_tables["mnist / logistic on cpu"], "native")
    assert native.fastest["label"] == "jax step" and native.fastest["sps"] == pytest.approx(100_000)
    gpu = head(gpu_tables["mnist / logistic on cuda"])
    assert set(gpu.compared["hyper_batch_size"]) == {100}  # the batch-1000 row is not compared
    assert gpu.fastest["label"] == "jax scan" and gpu.fastest["sps"] == pytest.approx(1_500_000)


def test_headline_measures_accuracy_against_the_parity_tolerance(cpu_tables, gpu_tables):
    cpu = head(cpu_tables["mnist / logistic on cpu"])
    # seed 0: torch 0.90, jax step 0.89, jax scan 0.90; seed 1: torch 0.92, jax 0.93
    assert cpu.accuracy_spread == pytest.approx(0.01) and cpu.tolerance == TOLERANCE["logistic"]
    gpu = head(gpu_tables["mnist / logistic on cuda"])
    assert gpu.accuracy_spread == pytest.approx(0.002)  # 0.910 against 0.908


def test_headline_finds_when_the_compile_cost_is_paid_back(cpu_tables, gpu_tables):
    # jax scan 20 s + 0.25 s/epoch against jax step 11 s + 0.5 (37 epochs) and torch 4 s + 1.25 (17)
    assert head(cpu_tables["mnist / logistic on cpu"]).break_even == 37
    # 5 s + 0.04 against torch cudagraph's 3 s + 0.05: 2 s back at 0.01 s an epoch
    assert head(gpu_tables["mnist / logistic on cuda"]).break_even == 201


def test_break_even_epoch_edge_cases():
    fast = {"first_epoch_s": 2.0, "epoch_s": 1.0}
    assert headline.break_even_epoch(fast, [{"first_epoch_s": 3.0, "epoch_s": 2.0}]) == 1  # ahead at once
    assert headline.break_even_epoch(fast, [{"first_epoch_s": 1.0, "epoch_s": 1.0}]) is None  # never
    assert headline.break_even_epoch(fast, [{"first_epoch_s": 1.0, "epoch_s": 1.5}]) == 3  # 2 + 2 <= 1 + 3


def test_time_to_target_counts_training_seconds_and_the_traced_epoch_at_steady_speed():
    cell = {"steady_epoch_s": [1.0, 1.0], "curves": {
        "epoch": [1, 2, 3, 4], "epoch_s": [5.0, 1.0, 1.0, 9.0], "profiled_epoch": 4,
        "test_accuracy": [0.95, 0.96, 0.965, 0.975]}}
    assert summary.time_to_target(cell) == 8.0  # 5 + 1 + 1 + 1 (not 9: the traced epoch)
    cell["curves"]["test_accuracy"][-1] = 0.969
    assert np.isnan(summary.time_to_target(cell))


def test_summary_goes_first_to_the_terminal_the_markdown_and_the_page(full):
    out, text, _ = full
    page = (out / CPU / "report.html").read_text()
    markdown = (out / CPU / "REPORT.md").read_text()
    lines = text.split(f"\n{CPU}:", 1)[1].split("\nwrote", 1)[0].splitlines()
    assert lines[1].startswith("margin 5%: a difference within it is a tie")
    assert lines[2].startswith("no A/A twin among these results") and lines[3].startswith("no planted slowdown")
    lines = lines[2:]
    assert lines[2] == "mnist / logistic on cpu, batch 100, precision float32, profile equal (1-2 trials each):"
    assert lines[3] == "  fastest jax scan, 240,000 samples/s"
    # one or two processes a row: the summary makes no speed claim
    assert lines[4] == ("  jax scan against jax step: 1 and 2 trials, no verdict (3 needed); "
                        "jax scan against torch eager: 1 and 2 trials, no verdict (3 needed)")
    assert lines[5] == "  not measured: keras[jax] fit diverged"
    assert lines[6] == ("  test accuracy 0.9000-0.9100 (means over 2 seeds), 0.0100 apart at one seed: "
                        f"BEYOND the parity tolerance {TOLERANCE['logistic']:.4f}")
    assert lines[7].endswith("ahead of every mode in total time from epoch 37")
    assert markdown.index(lines[4]) < markdown.index("## mnist / logistic on cpu")
    assert page.index(lines[4].replace("'", "&#x27;")) < page.index("<table")


def test_terminal_gets_the_summary_and_the_paths_not_the_report(full):
    out, text, _ = full
    assert len(text.splitlines()) <= 40 and "| ---" not in text
    assert f"2 machines: one report each in {out}/<machine>/" in text
    for machine in (CPU, GPU):
        for name in ("REPORT.md", "report.html"):
            assert f"wrote {out / machine / name} (" in text
        assert f"wrote {out / machine / 'plots'}/ (" in text


# ---------------------------------------------------------------- tables
def test_one_report_per_machine_with_ratios_within_one_device(full):
    out, _, _ = full
    cpu, gpu = (out / CPU / "REPORT.md").read_text(), (out / GPU / "REPORT.md").read_text()
    assert "## mnist / logistic on cpu" in cpu and "on cuda" not in cpu
    assert "## mnist / logistic on cuda" in gpu and "on cpu" not in gpu
    rows = md_table(gpu, "mnist / logistic on cuda")
    assert rows["jax scan | 100"]["× slower than fastest"] == "1.00"
    assert rows["torch eager | 100"]["× slower than fastest"] == "6.25"


def test_table_pools_seeds_into_median_iqr_and_sd(full):
    out, _, _ = full
    rows = md_table((out / CPU / "REPORT.md").read_text(), "mnist / logistic on cpu")
    torch, jax = rows["torch eager | equal"], rows["jax step | equal"]
    # each trial's steady epochs 1.0 and 1.5 s: a median of 1.25 s, 48,000 samples/s; two trials
    # are too few for an interval
    assert (torch["samples/s (95% interval)"], torch["trials"], torch["× slower than fastest"]) == (
        "48,000", "2", "5.00")
    assert torch["steady epoch s"] == "1.25" and torch["first epoch s"] == "4"  # median of 3 s and 5 s
    assert torch["test acc ± sd (seeds)"] == "0.9100 ± 0.0141 (2)"  # 0.90, 0.92: sd 0.01414
    assert jax["test acc ± sd (seeds)"] == "0.9100 ± 0.0283 (2)"  # 0.89, 0.93
    assert rows["keras[jax] fit | equal"]["status"].startswith("diverged 1 [")


def test_rows_are_framework_and_mode_and_a_setting_is_a_column_only_where_it_varies(cpu_tables, gpu_tables, full):
    cpu, gpu = cpu_tables["mnist / logistic on cpu"], gpu_tables["mnist / logistic on cuda"]
    assert cpu.varying == ["profile", "precision"] and gpu.varying == ["hyper_batch_size"]
    assert set(cpu.rows["label"]) == {"torch eager", "jax step", "jax scan", "keras[jax] fit"}
    out, _, _ = full
    text = (out / CPU / "REPORT.md").read_text()
    header = text.split("## mnist / logistic on cpu\n\n", 1)[1].splitlines()[0]
    assert header.startswith("| framework, mode | profile | precision | test acc") and "| batch |" not in header
    assert "Same in every row: batch 100, epochs 3, optimizer adam, lr 0.001, threads all." in text
    assert "GPU busy" not in header and "[1] GPU busy s: n/a, no GPU: the cell ran on the CPU" in text


def test_numbers_are_right_aligned(full):
    out, _, _ = full
    text = (out / CPU / "REPORT.md").read_text()
    assert "| --- | --- | --- | ---: | ---: |" in text.split("## mnist / logistic on cpu", 1)[1]
    page = (out / CPU / "report.html").read_text()
    assert "<td class=n>240,000</td>" in page and "<td>jax scan</td>" in page


def test_fairness_is_a_folded_table_of_the_settings_that_differ(cpu_tables, full):
    fair = summary.fairness(cpu_tables["mnist / logistic on cpu"]).set_index("row")
    assert list(fair.columns) == ["hyper.eps", "hyper.init", "settings.deviations_batch_order"]
    assert fair.loc["jax step, profile equal, precision float32", "hyper.eps"] == "1e-07"
    assert fair.loc["torch eager, profile equal, precision float32", "hyper.eps"] == "1e-08"
    assert fair.loc["torch eager, profile native, precision default", "hyper.init"] == "native"
    out, _, _ = full
    page = (out / CPU / "report.html").read_text()
    assert "<details><summary>Fairness: 3 settings differ between these rows</summary><table" in page
    assert "Fairness" not in page.split("<details>", 1)[0].split("mnist / logistic on cpu</h2>", 1)[1]


def test_fairness_says_when_every_setting_is_equal(gpu_tables, full):
    assert list(summary.fairness(gpu_tables["mnist / logistic on cuda"]).columns) == ["row"]
    out, _, _ = full
    assert "Fairness: every setting is the same in every row" in (out / GPU / "REPORT.md").read_text()


def test_cells_that_shared_the_machine_are_named(cpu_tables, full):
    assert summary.shared_machine(cpu_tables["mnist / logistic on cpu"]) == [
        "jax scan, profile equal, precision float32"]
    out, _, _ = full
    text = (out / CPU / "REPORT.md").read_text()
    assert "(env.settings.concurrent_cells > 1)" in text and "concurrent_cells > 1" not in (
        out / GPU / "REPORT.md").read_text()


def test_native_profile_against_equal(cpu_tables, full):
    pairs = headline.native_vs_equal(list(cpu_tables.values())).set_index("row")
    assert pairs.loc["torch eager", "native ÷ equal"] == pytest.approx(30_000 / 48_000)
    assert pairs.loc["jax step", "native ÷ equal"] == pytest.approx(100_000 / 120_000)
    assert (pairs.loc["torch eager", "equal accuracy"], pairs.loc["torch eager", "native accuracy"]) == (0.91, 0.91)
    out, _, _ = full
    rows = md_table((out / CPU / "REPORT.md").read_text(), "Native against equal profile")
    assert rows["mnist / logistic on cpu | jax step"]["native ÷ equal"] == "0.83"


def test_native_against_equal_is_the_paired_ratio_its_interval_is_centred_on():
    """Paired over the rounds both ran in, the ratio is the one its interval was made from; the ratio
    of the two geometric means over every trial sat at an interval's edge where one round was not shared."""
    cells = read_results(archive_parts(CPU_ARCHIVE)[0]).query("source == 'harness'")
    pairs = headline.native_vs_equal([t for t in tables(summarise(cells), cells) if t.device == "cpu"])
    assert len(pairs) > 20 and pairs["low"].notna().all()
    assert np.allclose(pairs["native ÷ equal"], np.sqrt(pairs["low"] * pairs["high"]))  # a t interval on the logs


def test_framework_tax_on_the_gpu(gpu_tables, full):
    tax = headline.framework_tax(gpu_tables["mnist / logistic on cuda"]).set_index("row")
    eager = tax.loc["torch eager, batch 100"]
    assert eager["host ms/step"] == pytest.approx(1000 * 0.25 / 600)  # steady epoch / 600 steps
    assert eager["device ms/step"] == pytest.approx(1000 * 0.1 / 600)  # GPU busy / steps
    assert eager["device-bound from"] == "batch 1000"  # utilisation 0.4 at 100, 0.9 at 1000
    assert tax.loc["jax scan, batch 100", "device-bound from"] == "—"  # no sweep
    out, _, _ = full
    assert "## Framework tax on the GPU" in (out / GPU / "REPORT.md").read_text()


def test_recipes_come_after_the_main_comparison_beside_the_published_figure(full):
    out, _, _ = full
    text = (out / CPU / "REPORT.md").read_text()
    assert text.index("## Seed recipes") > text.index("## tiny5x5 / logistic on cpu")
    row = md_table(text, "Seed recipes: ours against the published figure")["vanangamudi (seed 000) | toy25"]
    assert row["ours"] == "0.7000 ± — (1)" and row["published"] == "1.0000"


def test_a_seed_run_twice_is_one_seed_for_accuracy_and_two_runs_for_timing(tmp_path):
    """A second folder rerunning torch's seed 0 as trial 1 (0.88, 3.0 s epochs): accuracy over 2 seeds,
    timing over 3 trials. (The same trial twice is one cell: read.read_results keeps one file of it.)"""
    shutil.copytree(FIXTURES / "cpu" / "mnist", tmp_path / "a")
    doc = json.loads((FIXTURES / "cpu" / "mnist" / "torch-eager-s0.json").read_text())
    doc["metrics"]["test_accuracy"] = 0.88
    doc["metrics"]["steady_epoch_s"] = [3.0, 3.0]
    rerun = results.parse(doc)
    rerun.cell = dataclasses.replace(rerun.cell, trial=1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "torch-eager-s0.json").write_text(json.dumps(rerun.to_dict()))
    cells = read.read_results([tmp_path])
    torch = summary.summarise(cells).query("label == 'torch eager' and profile == 'equal'").iloc[0]
    assert torch["acc_values"] == pytest.approx([0.89, 0.92])  # seed 0: mean of 0.90 and 0.88
    assert torch["n_trials"] == 3 and max(torch["times"]) == pytest.approx(1 / 20_000)  # 3 s over 60,000 samples


def test_unknown_extra_fields_are_tolerated_and_the_known_ones_read(tmp_path):
    doc = json.loads((FIXTURES / "cpu" / "mnist" / "jax-step-s0.json").read_text())
    doc["new_section"] = {"anything": [1, 2]}
    doc["metrics"]["new_metric"] = 3.5
    doc["cell"]["new_setting"] = "x"
    (tmp_path / "cell.json").write_text(json.dumps(doc))
    (row,) = read.read_results([tmp_path]).to_dict("records")
    assert row["test_accuracy"] == doc["metrics"]["test_accuracy"] and "new_metric" not in row


def test_benchmarks_join_the_report_of_their_machine(full):
    out, _, _ = full
    assert "## pytest-benchmark" in (out / CPU / "REPORT.md").read_text()
    assert "pytest-benchmark" not in (out / GPU / "REPORT.md").read_text()



def test_accuracy_spread_compares_runs_of_one_seed_not_means():
    rows = pd.DataFrame({"acc_by_seed": [{0: 0.90, 1: 0.92}, {0: 0.92, 1: 0.90}, {2: 0.5}]})
    assert headline.accuracy_spread(rows) == pytest.approx(0.02)  # equal means, 0.02 apart at each seed


def test_ratios_stay_within_one_device_of_one_machine(tmp_path):
    shutil.copytree(FIXTURES / "gpu", tmp_path / "gpu")
    doc = json.loads((tmp_path / "gpu" / "jax-step-s0.json").read_text())
    doc["cell"]["device"] = "cpu"  # a CPU cell on the GPU machine: 300,000 samples/s
    (tmp_path / "gpu" / "jax-step-s0.json").write_text(json.dumps(doc))
    rows = summary.summarise(read.read_results([tmp_path]))
    assert rows.query("device == 'cpu'")["slowdown"].tolist() == [1.0]
    assert rows.query("device == 'cuda' and label == 'torch eager' and hyper_batch_size == 100")["slowdown"].tolist() == [
        pytest.approx(1_500_000 / 240_000)]


def test_the_readme_section_takes_an_archive_and_says_what_one_is(tmp_path):
    with pytest.raises(HarnessError, match="is not an archive .* it has no matrix/"):
        main([str(tmp_path), "--readme"])
    with pytest.raises(HarnessError, match="one archive folder"):
        main([str(tmp_path), str(tmp_path), "--readme"])
