"""The report's verdicts, controls and --compare on trials of known truth, written as result files.

Each trial is a result file of a fixture's cell whose steady epochs all take the given
seconds; where rounds are given, trial i ran in the interleaving driver's round i + 1, so that
two configurations' trials pair by round.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from harness.measure import results
from harness.plan.errors import HarnessError
from harness.report import read, summary
from harness.report.__main__ import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
# A 15% spread of process-to-process noise around a steady epoch of 1 s (a fixed draw).
NOISE = [1.0, 1.12, 0.91, 1.05, 0.96]


def run_report(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def write_trials(folder: Path, fixture: str, epoch_s, rounds: bool = True, drive: str = "d1", **change) -> None:
    """One result file per trial: the fixture's cell as trial i at seed i, in round i + 1 of one
    drive (rounds=False: no round recorded), its steady epochs all epoch_s[i] seconds; change sets
    other cell fields (twin=True, planted_slowdown=1.25) or, with `contended`, the contention
    record of the trials it lists, or with `status`, every trial's status."""
    contended = change.pop("contended", ())
    status = change.pop("status", "ok")
    base = results.read(FIXTURES / "cpu" / "mnist" / fixture).to_dict()
    folder.mkdir(parents=True, exist_ok=True)
    for i, seconds in enumerate(epoch_s):
        doc = json.loads(json.dumps(base))
        doc["cell"].update(trial=i, **change)
        doc["cell"]["hyper"]["seed"] = i
        doc["status"] = status
        doc["metrics"]["steady_epoch_s"] = [seconds, seconds] if status == "ok" else []
        doc["env"]["contention"] = {"other_cores": 1.0 if i in contended else 0.01, "steal_cores": 0.0,
                                    "other_cpu_s": 1.0, "own_cpu_s": 2.0, "wall_s": 2.0, "load_avg": [1, 1, 1],
                                    "gpu_processes": [], "threshold": 0.2, "contended": i in contended}
        doc["env"]["round"] = ({"drive": drive, "number": i + 1, "position": 1, "size": 4, "seed": 0}
                               if rounds else None)
        control = "-twin" if change.get("twin") else "-planted" if change.get("planted_slowdown") else ""
        (folder / f"{fixture.removesuffix('.json')}{control}-t{i}.json").write_text(json.dumps(doc))


def compare_rows(folder: Path) -> dict[str, dict[str, str]]:
    """COMPARE.md's rows, by their framework and mode."""
    text = (folder / "COMPARE.md").read_text().split("## mnist / logistic\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return {row[0]: dict(zip(cells[0], row)) for row in cells[2:]}


# ---------------------------------------------------------------- one run's verdicts and controls
def test_a_difference_beyond_the_margin_is_named_and_both_controls_get_a_line(tmp_path):
    write_trials(tmp_path, "torch-eager-s0.json", [2 * t for t in NOISE[::-1]])  # torch: 2 s epochs
    write_trials(tmp_path, "jax-step-s0.json", NOISE)  # jax: 1 s, 2x faster
    write_trials(tmp_path, "jax-step-s0.json", [t * 1.01 for t in NOISE], twin=True)  # the A/A twin
    write_trials(tmp_path, "jax-step-s0.json", [t * 1.25 for t in NOISE], planted_slowdown=1.25)
    code, text, _ = run_report(tmp_path, "--out-dir", tmp_path / "out")
    assert code == 0
    assert re.search(r"jax step is 2\.\dx faster than torch eager \(\d\.\d-\d\.\d, 5 rounds\)", text), text
    assert "negative control (A/A): jax step's logistic ran 1.01x as fast as its twin (1.01-1.01, 5 rounds): " \
           "within 5%" in text
    assert "positive control: planted 1.25x slower in jax step's logistic: found 1.25x (1.25-1.25, 5 rounds)" in text
    assert "(A/A twin)" not in text and "(planted" not in text.split("positive control", 1)[1]  # never rows


def test_a_control_that_fails_says_what_it_means(tmp_path):
    write_trials(tmp_path, "jax-step-s0.json", NOISE)
    write_trials(tmp_path, "jax-step-s0.json", [t * 1.3 for t in NOISE[::-1]], twin=True)  # the machine moved
    write_trials(tmp_path, "jax-step-s0.json", [1.3, 0.9, 1.6, 1.0], planted_slowdown=1.25)  # lost in the noise
    _, text, _ = run_report(tmp_path, "--out-dir", tmp_path / "out")
    assert re.search(r"negative control \(A/A\): jax step's logistic ran 1.30x as fast as its twin \(1.22-1.39, 5 "
                     r"rounds\): the twin differs beyond 5%: this machine moved more than 5% between identical "
                     r"processes; read verdicts near the margin with care", text)
    assert re.search(r"positive control: planted 1.25x slower in jax step's logistic: not found \(.*4 rounds\): this "
                     r"run's rounds could not see a difference of 1.25x, so \"undecided\" means too few rounds, not a "
                     r"tie", text)


def test_a_twin_whose_estimate_strays_but_whose_interval_does_not_clear_the_margin_passes(tmp_path):
    write_trials(tmp_path, "jax-step-s0.json", NOISE)
    write_trials(tmp_path, "jax-step-s0.json", [t * 1.08 for t in NOISE[::-1]], twin=True)  # 1.08x, in the noise
    _, text, _ = run_report(tmp_path, "--out-dir", tmp_path / "out")
    assert re.search(r"negative control \(A/A\): jax step's logistic ran 1.08x as fast as its twin \(1.0\d-1.1\d, 5 "
                     r"rounds\): no difference beyond 5% found", text), text


def test_a_measured_tie_is_worded_apart_from_an_undecided_pair(tmp_path):
    tight = [1.0, 1.01, 0.99, 1.0, 1.005]
    write_trials(tmp_path / "tie", "torch-eager-s0.json", tight)
    write_trials(tmp_path / "tie", "jax-step-s0.json", [t * 1.01 for t in tight[::-1]])
    _, text, _ = run_report(tmp_path / "tie", "--out-dir", tmp_path / "out")
    assert re.search(r"torch eager and jax step within 5% \(\d\.\d\d-\d\.\d\d, 5 rounds\)", text), text
    write_trials(tmp_path / "open", "torch-eager-s0.json", [1.1 * t for t in NOISE])
    write_trials(tmp_path / "open", "jax-step-s0.json", NOISE[::-1])
    _, text, _ = run_report(tmp_path / "open", "--out-dir", tmp_path / "out")
    assert re.search(r"jax step against torch eager undecided \(\d\.\d\d-\d\.\d\d, 5 rounds\): about \d+ more rounds "
                     r"would decide it", text), text


def test_without_rounds_the_ratio_is_unpaired_and_says_so(tmp_path):
    write_trials(tmp_path, "torch-eager-s0.json", [2 * t for t in NOISE], rounds=False)
    write_trials(tmp_path, "jax-step-s0.json", NOISE[::-1], rounds=False)
    _, text, _ = run_report(tmp_path, "--out-dir", tmp_path / "out")
    assert re.search(r"jax step is 2\.\dx faster than torch eager \(\d\.\d-\d\.\d, unpaired, 5 and 5 trials\)",
                     text), text


def test_the_margin_declared_by_the_driver_is_the_one_used(tmp_path):
    write_trials(tmp_path, "torch-eager-s0.json", [1.3 * t for t in NOISE])
    write_trials(tmp_path, "jax-step-s0.json", NOISE)  # 1.3x in every round
    for path in tmp_path.glob("*.json"):
        doc = json.loads(path.read_text())
        doc["env"]["round"]["margin"] = 0.5
        path.write_text(json.dumps(doc))
    _, text, _ = run_report(tmp_path, "--out-dir", tmp_path / "out")
    assert "margin 50%" in text and "jax step and torch eager within 50%" in text
    _, text, _ = run_report(tmp_path, "--out-dir", tmp_path / "out", "--margin", "5%")
    assert "margin 5%" in text and "jax step is 1.30x faster than torch eager (1.30-1.30, 5 rounds)" in text


def test_contended_trials_are_left_out_and_counted(tmp_path):
    write_trials(tmp_path, "torch-eager-s0.json", [1.0, 1.0, 1.0, 9.0, 9.0], contended=(3, 4))
    torch = summary.summarise(read.read_results([tmp_path])).iloc[0]
    assert torch["n_trials"] == 3 and torch["n_contended"] == 2 and torch["sps"] == pytest.approx(60_000)
    code, text, _ = run_report(tmp_path, "--out-dir", tmp_path / "out")
    assert "2 trials left out: other processes used the machine" in text
    assert "3 trials each, 2 contended left out" in text


# ---------------------------------------------------------------- --compare
CONFIGURATIONS = ["torch-eager-s0.json", "jax-step-s0.json", "jax-scan-s0.json", "torch-eager-native-s0.json",
                  "jax-step-native-s0.json"]


def two_runs(tmp_path: Path, drift: float = 1.0, slower: dict[str, float] | None = None, **b_change) -> None:
    """A and B of the same configurations, B on a machine `drift` times slower and the named
    configurations `slower` times slower beyond it; each with its A/A twin."""
    for i, fixture in enumerate(CONFIGURATIONS):
        draw = NOISE[i:] + NOISE[:i]
        write_trials(tmp_path / "a", fixture, draw, drive="a")
        factor = drift * (slower or {}).get(fixture, 1.0)
        write_trials(tmp_path / "b", fixture, [factor * t for t in draw[::-1]], drive="b",
                     **(b_change if fixture == CONFIGURATIONS[0] else {}))
    write_trials(tmp_path / "a", CONFIGURATIONS[0], NOISE, drive="a", twin=True)
    write_trials(tmp_path / "b", CONFIGURATIONS[0], [drift * t for t in NOISE], drive="b", twin=True)


def test_compare_of_a_folder_with_itself_is_refused_in_one_line(tmp_path):
    write_trials(tmp_path / "a", "jax-step-s0.json", NOISE)
    with pytest.raises(HarnessError, match="a folder against itself compares nothing"):  # exit 2, one line
        run_report("--compare", tmp_path / "a", tmp_path / "a" / ".", "--out-dir", tmp_path / "out")
    assert not (tmp_path / "out" / "COMPARE.md").exists()


def test_compare_of_unchanged_code_on_a_drifting_machine_prints_the_drift_and_no_regression(tmp_path):
    two_runs(tmp_path, drift=1 / 0.77)
    code, text, _ = run_report("--compare", tmp_path / "a", tmp_path / "b", "--out-dir", tmp_path)
    assert code == 0, text
    assert re.search(r"B's machine ran 0\.7\dx \(0\.\d\d-0\.\d\d\) of A's, the median over 5 configurations", text), text
    assert "0 regressions" in text and "| REGRESSION |" not in (tmp_path / "COMPARE.md").read_text()
    rows = compare_rows(tmp_path)
    assert rows["torch eager (A/A twin)"]["verdict"] == "control"  # matched to its own twin, one to one


def test_compare_finds_a_regression_apart_from_the_drift(tmp_path):
    two_runs(tmp_path, drift=1 / 0.77, slower={"jax-step-s0.json": 1.5})
    code, text, _ = run_report("--compare", tmp_path / "a", tmp_path / "b", "--out-dir", tmp_path)
    assert code == 1
    assert re.search(r"REGRESSION mnist / logistic jax step: B 1\.\d\dx slower than A after the drift", text), text
    assert "1 regressions" in text


def test_a_configuration_that_failed_in_b_is_failed_and_counted(tmp_path):
    two_runs(tmp_path, status="error")
    code, text, _ = run_report("--compare", tmp_path / "a", tmp_path / "b", "--out-dir", tmp_path)
    assert code == 1
    assert "1 FAILED in B" in text and "FAILED mnist / logistic torch eager: measured in A, no finished trial in B" in text


def test_compare_with_one_trial_a_side_gives_no_verdict(tmp_path):
    write_trials(tmp_path / "a", "jax-step-s0.json", [1.0])
    write_trials(tmp_path / "b", "jax-step-s0.json", [2.0])  # twice as slow, but one process each
    code, _, _ = run_report("--compare", tmp_path / "a", tmp_path / "b", "--out-dir", tmp_path)
    (row,) = compare_rows(tmp_path).values()
    assert (row["verdict"], row["over trials"], code) == ("no verdict", "one trial: no verdict", 0)


def test_compare_flags_an_accuracy_drop(tmp_path):
    write_trials(tmp_path / "a", "jax-step-s0.json", NOISE)
    write_trials(tmp_path / "b", "jax-step-s0.json", NOISE)
    for path in (tmp_path / "b").glob("*.json"):
        doc = json.loads(path.read_text())
        doc["metrics"]["test_accuracy"] -= 0.05
        path.write_text(json.dumps(doc))
    code, _, _ = run_report("--compare", tmp_path / "a", tmp_path / "b", "--out-dir", tmp_path)
    (row,) = compare_rows(tmp_path).values()
    assert row["verdict"] == "REGRESSION" and "accuracy" in row["over trials"] and code == 1
