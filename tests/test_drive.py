"""The driver: rounds of every configuration in a shuffled order, each cell in its framework's
environment, two controls each round (an A/A twin and a planted slowdown), seeds and trials per
round, resumable, within a budget, with a margin declared before the run."""
from __future__ import annotations

import json
from collections import Counter

from harness.drive import rounds
from harness.plan.cell import Cell
from harness.plan.files import REPORT_DIR
from harness.plan.matrix import expand
from harness.plan.plans import MAIN_JOB, PLANS
from harness.run.launch import cell_env
from tests.helpers import TINY, harness_run

TWO = ["--framework", "numpy", "timed", "--dataset", "tiny5x5", "--model", "logistic", "--batch-size", "2",
       "--epochs", "2", "--no-report"]


def rounds_in(out) -> list[dict]:
    docs = [json.loads(p.read_text()) for p in out.glob("*.json")]
    return sorted(docs, key=lambda d: (d["env"]["round"]["number"], d["env"]["round"]["position"]))


def test_each_round_runs_every_configuration_and_both_controls_in_a_recorded_shuffled_order(tmp_path):
    proc = harness_run(*TWO, "--rounds", "3", "--margin", "3%", out=tmp_path, module="harness.drive")
    assert proc.returncode == 0, proc.stderr
    docs = rounds_in(tmp_path)
    per_round = Counter(d["env"]["round"]["number"] for d in docs)
    assert per_round == {1: 4, 2: 4, 3: 4}  # numpy, timed, numpy's A/A twin and its planted slowdown, each round
    for d in docs:
        r, cell = d["env"]["round"], d["cell"]
        assert cell["trial"] == r["number"] - 1 and cell["hyper"]["seed"] == r["number"] - 1  # a seed per round
        assert r["size"] == 4 and 1 <= r["position"] <= 4 and isinstance(r["seed"], int)
        assert r["margin"] == 0.03  # declared before the run, recorded in every trial
    twins = [d for d in docs if d["cell"]["twin"]]
    assert len(twins) == 3 and {d["cell"]["framework"] for d in twins} == {"numpy"}
    planted = [d for d in docs if d["cell"]["planted_slowdown"] != 1]
    assert len(planted) == 3 and {(d["cell"]["framework"], d["cell"]["planted_slowdown"]) for d in planted} == {
        ("numpy", 1.25)}
    for d in planted:  # each epoch slept a quarter of its own time (a sleep never ends early), and counted it
        slept, epochs = d["curves"]["planted_s"], d["curves"]["epoch_s"]
        assert len(slept) == len(epochs) and all(0.25 * (e - s) <= s < e for s, e in zip(slept, epochs))
    assert len({d["env"]["round"]["drive"] for d in docs}) == 1
    assert "round 3 done" in proc.stdout


def test_a_rerun_resumes_and_runs_only_the_rounds_not_done(tmp_path):
    harness_run(*TWO, "--rounds", "2", out=tmp_path, module="harness.drive")
    again = harness_run(*TWO, "--rounds", "3", out=tmp_path, module="harness.drive")
    assert again.returncode == 0, again.stderr
    assert "round 1 done" in again.stdout and "4 done before" in again.stdout  # rounds 1 and 2 kept
    assert Counter(d["env"]["round"]["number"] for d in rounds_in(tmp_path)) == {1: 4, 2: 4, 3: 4}


def test_a_budget_stops_before_a_round_that_would_overrun_it(tmp_path):
    proc = harness_run(*TWO, "--budget", "0.5s", out=tmp_path, module="harness.drive")
    assert proc.returncode == 0, proc.stderr
    assert "stop: round 2 would not end within the budget" in proc.stdout
    assert {d["env"]["round"]["number"] for d in rounds_in(tmp_path)} == {1}


def test_the_driver_makes_its_own_trials_and_names_its_environments(tmp_path):
    proc = harness_run(*TWO, "--trials", "2", out=tmp_path, module="harness.drive")
    assert proc.returncode == 2 and "give --rounds (or --budget), not --trials" in proc.stderr
    assert rounds.parse_budget("30m") == 1800 and rounds.parse_budget("2h") == 7200 and rounds.parse_budget("90") == 90


def test_a_drive_with_its_own_out_folder_writes_its_report_there_not_over_the_default_one(tmp_path):
    default = REPORT_DIR / "REPORT.md"
    before = default.stat().st_mtime_ns if default.exists() else None
    proc = harness_run(*[a for a in TWO if a != "--no-report"], "--rounds", "2", out=tmp_path, module="harness.drive")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "REPORT.md").is_file() and (tmp_path / "report.html").is_file()
    assert (default.stat().st_mtime_ns if default.exists() else None) == before


def test_the_main_job_defaults_to_the_mlp_in_both_profiles_for_half_an_hour():
    assert rounds.parser().parse_args([]).budget == 1800
    cells = expand(MAIN_JOB)
    assert {c.model for c in cells} == {"mlp"} and {c.profile for c in cells} == {"equal", "native"}
    assert {c.hyper.epochs for c in cells} == {3} and PLANS["noise"] == (MAIN_JOB,)


def test_harness_run_trials_are_separate_processes_at_one_seed(tmp_path):
    proc = harness_run("--framework", "numpy", *TINY, "--trials", "3", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cells = [json.loads(p.read_text())["cell"] for p in tmp_path.glob("*.json")]
    assert sorted(c["trial"] for c in cells) == [0, 1, 2] and {c["hyper"]["seed"] for c in cells} == {0}


def test_top_up_rounds_make_up_only_the_trials_that_were_contended(tmp_path):
    from harness.measure.store import Store
    from harness.plan.cell import Cell

    harness_run(*TWO, "--rounds", "2", out=tmp_path, module="harness.drive")
    lost = sorted(tmp_path.glob("*timed*.json"))[0]
    for path in tmp_path.glob("*.json"):  # tiny cells' contention is noise: set it
        doc = json.loads(path.read_text())
        doc["env"]["contention"]["contended"] = path == lost  # as if a build had run beside that one
        path.write_text(json.dumps(doc))
    configurations = list({c.configuration: c.configuration for c in (Cell.fromdict(d["cell"]) for d in rounds_in(tmp_path))
                           if c.control is None})
    assert [c.framework for c in rounds.short_of(configurations, Store(tmp_path), 2)] == ["timed"]
    assert rounds.short_of(configurations, Store(tmp_path), 1) == []  # one uncontended trial each
    again = harness_run(*TWO, "--rounds", "2", "--min-uncontended", "2", out=tmp_path, module="harness.drive")
    assert again.returncode == 0, again.stderr
    assert "top-up round 3: 1 configurations have fewer than 2 uncontended trials" in again.stdout
    topped = [d for d in rounds_in(tmp_path) if d["env"]["round"]["number"] > 2]
    # at new seeds, no twin, the timed configuration only; at most as many top-up rounds as rounds
    # (a tiny cell's own contention reading is noise, so round 4 may make up round 3's)
    assert {(d["cell"]["framework"], d["cell"]["twin"], d["cell"]["planted_slowdown"]) for d in topped} == {
        ("timed", False, 1.0)}
    assert {d["cell"]["hyper"]["seed"] for d in topped} <= {2, 3} and len(topped) <= 2


def test_the_time_to_go_counts_the_cells_run_not_the_rounds():
    """A resumed round that found 34 of 58 cells done ran 24 in 16.6 min: one more round is
    58 cells at that pace, about 40 min, not 17."""
    from harness.drive.rounds import seconds_to_go

    assert round(seconds_to_go([16.6 * 60 / 24], round_size=58, rounds_left=1) / 60) == 40
    assert seconds_to_go([10.0, 20.0], round_size=6, rounds_left=2) == 180.0
    assert seconds_to_go([], round_size=6, rounds_left=2) == 0.0


def test_a_variant_runs_beside_each_configuration_in_the_same_rounds_with_its_environment(tmp_path):
    """A noise experiment's before/after: each configuration and its copy under the variant's
    environment, interleaved in the same rounds, the variant recorded in the cell and seen by the child."""
    proc = harness_run(*TWO, "--rounds", "2", "--no-controls", "--variant", "FWCOMPARE_TEST_VARIANT=on",
                       out=tmp_path, module="harness.drive")
    assert proc.returncode == 0, proc.stderr
    docs = rounds_in(tmp_path)
    variants = [d for d in docs if d["cell"]["env"]]
    assert len(docs) == 8 and len(variants) == 4  # numpy and timed, each with and without, 2 rounds
    assert {tuple(map(tuple, d["cell"]["env"])) for d in variants} == {(("FWCOMPARE_TEST_VARIANT", "on"),)}
    assert Counter(d["env"]["round"]["number"] for d in variants) == {1: 2, 2: 2}
    assert all("-env-" in d["cell"]["id"] for d in variants) and not any("-env-" in d["cell"]["id"]
                                                                         for d in docs if d not in variants)
    cell = Cell.fromdict(next(d["cell"] for d in variants if d["cell"]["framework"] == "numpy"))  # registered here
    assert cell_env(cell)["FWCOMPARE_TEST_VARIANT"] == "on"  # what the cell's process is started with
    bad = harness_run(*TWO, "--variant", "no equals sign", out=tmp_path / "bad", module="harness.drive")
    assert bad.returncode == 2 and "is not VAR=VALUE" in bad.stderr and not (tmp_path / "bad").exists()
