"""Each committed CPU archive is what `python -m harness.archive cpu` promises: one commit's
results, every main configuration with enough uncontended trials, Keras native on every
backend, the time split in (nearly) every cell. A partial or patched archive fails here."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.measure.results import Result
from harness.measure.store import Store
from tests.helpers import CPU_ARCHIVES

MIN_TRIALS = 3  # the floor; the archive asks harness.drive for 4
SPLIT_SHARE = 0.9


def results_under(folder: Path) -> list[Result]:
    found = [r for path, r in Store(folder).results() if path.name != "plain-loops.json"]  # the loops' side file
    bad = [r for r in found if not isinstance(r, Result)]
    assert not bad, f"unreadable files in {folder}: {bad[:3]}"
    return found


@pytest.fixture(scope="module", params=CPU_ARCHIVES, ids=lambda folder: folder.name)
def archive(request) -> Path:
    return request.param


@pytest.fixture(scope="module")
def matrix(archive) -> list[Result]:
    return results_under(archive / "matrix")


def test_every_result_of_the_archive_comes_from_one_commit_of_clean_code(archive):
    commit = json.loads((archive / "remake.json").read_text())["commit"]
    results = [r for step in ("matrix", "plain-loops", "seed-spread", "recipes") for r in results_under(archive / step)]
    assert len(results) > 300
    assert Counter(r.env.commit for r in results) == Counter({commit: len(results)})
    assert not any(r.env.dirty for r in results)
    folders = sorted(p.name for p in archive.iterdir() if p.is_dir())
    assert folders == ["matrix", "plain-loops", "plots", "recipes", "seed-spread"], "a folder from elsewhere"


def test_each_configuration_has_enough_uncontended_trials(matrix):
    from harness import data
    from harness.plan.matrix import plan_cells

    trials = Counter(r.cell.configuration.id for r in matrix
                     if r.status == "ok" and not r.cell.twin and not r.env.contention.contended)
    planned = {c.configuration.id: c.label for c in data.checked(plan_cells("cpu-archive", 0))}
    short = {label: trials[cid] for cid, label in planned.items() if trials[cid] < MIN_TRIALS}
    assert not short, f"configurations with fewer than {MIN_TRIALS} uncontended trials: {short}"
    assert sum(r.cell.twin for r in matrix) >= 4  # the A/A pair: one twin a round


def test_keras_native_ran_on_all_three_backends(matrix):
    backends = {r.cell.backend for r in matrix if r.cell.framework == "keras" and r.cell.profile == "native"
                and r.status == "ok"}
    assert backends == {"tensorflow", "jax", "torch"}


def test_nearly_every_cell_carries_the_time_split(matrix):
    ok = [r for r in matrix if r.status == "ok"]
    with_split = [r for r in ok if r.metrics.split is not None]
    assert len(with_split) >= SPLIT_SHARE * len(ok), (
        f"{len(ok) - len(with_split)} of {len(ok)} cells lack the time split: "
        + ", ".join(r.cell.label for r in ok if r.metrics.split is None)[:300])


def test_the_remake_log_keeps_each_line_as_it_is_printed(tmp_path):
    """A remake is killed at a session's end: what it printed must already be in the log."""
    import io

    from harness.plan.files import Tee

    with open(tmp_path / "remake.log", "w") as log:
        Tee(io.StringIO(), log).write("cell: status ok\n")
        assert (tmp_path / "remake.log").read_text() == "cell: status ok\n"  # before any flush or close


def test_a_dry_run_lists_the_steps_and_leaves_the_archive_alone(tmp_path, capsys):
    from harness.archive.remake import main

    archive = tmp_path / "archive"
    assert main(["cpu", str(archive), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("== step ") == 5 and "--plan cpu-archive" in out
    assert not archive.exists()  # no folder, so no remake.log written into a committed archive


def test_the_archive_refuses_before_anything_runs_where_a_framework_environment_lacks_its_packages(
        tmp_path, monkeypatch, capsys):
    """A missing tox env (keras-torch here: a real interpreter without site-packages) would make
    every round skip that framework's cells: the archive says so in one line and touches nothing."""
    import sys

    from harness.archive import remake
    from harness.drive import rounds
    from harness.plan.errors import HarnessError

    bare = tmp_path / "python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    found = rounds.env_pythons
    monkeypatch.setattr(rounds, "env_pythons",
                        lambda cells, given: {**found(cells, given), ("keras", "torch"): str(bare)})
    archive = tmp_path / "archive"
    kept = archive / "matrix" / "a-cell.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    assert remake.main(["cpu", str(archive), "--dry-run"]) == 0
    assert "not ready: " in capsys.readouterr().out
    with pytest.raises(HarnessError, match=r"keras\[torch\] lacks keras.*`tox -e [a-z,-]*keras-torch[a-z,-]* --notest`"):
        remake.main(["cpu", str(archive), "--fresh"])
    assert kept.read_text() == "{}" and not (archive / "remake.json").exists()  # --fresh removed nothing


def test_a_resume_keeps_the_commit_and_when_the_remake_started_and_another_commit_must_start_afresh(
        tmp_path, monkeypatch):
    from harness.archive import remake
    from harness.plan.errors import HarnessError

    archive = tmp_path / "archive"
    (archive / "matrix").mkdir(parents=True)
    (archive / "matrix" / "a-cell.json").write_text("{}")
    monkeypatch.setattr(remake, "git_info", lambda: ("a" * 40, False))
    remake.check_commit(archive, fresh=False)
    started = json.loads((archive / "remake.json").read_text())
    remake.check_commit(archive, fresh=False)  # resumed at the same commit
    resumed = json.loads((archive / "remake.json").read_text())
    assert resumed["commit"] == "a" * 40 and resumed["started"] == started["started"] and len(resumed["resumed"]) == 1
    assert (archive / "matrix" / "a-cell.json").exists()
    monkeypatch.setattr(remake, "git_info", lambda: ("b" * 40, False))
    with pytest.raises(HarnessError, match="remake it whole with --fresh"):
        remake.check_commit(archive, fresh=False)
    remake.check_commit(archive, fresh=True)
    assert json.loads((archive / "remake.json").read_text())["commit"] == "b" * 40
    assert not (archive / "matrix").exists()
    monkeypatch.setattr(remake, "git_info", lambda: ("b" * 40, True))
    with pytest.raises(HarnessError, match="uncommitted changes"):
        remake.check_commit(archive, fresh=False)
