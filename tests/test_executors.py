"""Every executor is one interface (harness.run.executor.Executor) and ends a cell through the
same store, so they behave the same by construction: the same matrix writes the same results
through the local executor, through Ray and through a toy third executor defined here; a forced
rerun that dies or fails keeps the earlier good result, and a killed cell is recorded and rerun.
Ray's cases run where it is installed (tox -e test-ray)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from harness.run import executors
from harness.run.__main__ import main as run_main
from harness.run.executor import Executor
from harness.run.launch import run_cell_process
from tests.helpers import TINY, harness_run, results_in, wait_for

EXECUTORS = ["local", pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture(params=EXECUTORS)
def executor(request) -> list[str]:
    """The options that pick the executor (Ray: joining the tests' local Ray instance)."""
    if request.param == "local":
        return []
    return ["--executor", "ray", "--address", request.getfixturevalue("ray_address")]


class BackwardsExecutor(Executor):
    """A toy third executor: every claimed cell at once, run last first, each through launch."""

    claim_at_once = None
    ran: list[int] = []  # the seeds it ran, in its order

    def run_claimed(self, claimed, store, quiet, bar, say, done) -> None:
        for cell, lock in reversed(list(claimed.items())):
            try:
                outcome = run_cell_process(cell, store.begin(cell))
            finally:
                lock.release()
            BackwardsExecutor.ran.append(cell.hyper.seed)
            done(cell, outcome)


MATRIX = ["--framework", "numpy", *TINY, "--seed", "0", "1", "2"]


@pytest.fixture(scope="module")
def local_matrix(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("local")
    proc = harness_run(*MATRIX, out=out)
    assert proc.returncode == 0, proc.stderr
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}


def through(name: str, out: Path, request) -> int:
    """The matrix through an executor chosen by name: the toy in this process (it is registered
    here), the others as a user runs them."""
    if name == "backwards":
        executors.register("backwards", BackwardsExecutor)
        return run_main([*MATRIX, "--executor", "backwards", "--out", str(out), "--quiet"])
    address = ["--address", request.getfixturevalue("ray_address")] if name == "ray" else []
    proc = harness_run(*MATRIX, "--executor", name, *address, out=out)
    assert proc.returncode == 0, proc.stderr
    return proc.returncode


@pytest.mark.parametrize("name", ["local", "backwards", pytest.param("ray", marks=pytest.mark.ray)])
def test_the_same_matrix_through_each_executor_writes_the_same_results(name, local_matrix, tmp_path, request,
                                                                         capsys):
    BackwardsExecutor.ran.clear()
    assert through(name, tmp_path, request) == 0
    got = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(got) == set(local_matrix) and len(got) == 3
    for file, result in got.items():
        assert result["status"] == "ok"
        assert result["metrics"]["test_accuracy"] == local_matrix[file]["metrics"]["test_accuracy"]
        assert result["curves"]["train_loss"] == local_matrix[file]["curves"]["train_loss"]
    if name == "backwards":
        assert BackwardsExecutor.ran == [2, 1, 0]  # its own order: the interface left that to it
        assert through(name, tmp_path, request) == 0  # and the skipping came with the interface
        assert BackwardsExecutor.ran == [2, 1, 0] and "3 done before" in capsys.readouterr().out


def test_an_unknown_executor_is_one_line_naming_the_known_ones(tmp_path):
    proc = harness_run(*MATRIX, "--executor", "slurm", out=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: unknown executor 'slurm'; executors: local, ray")
    assert not list(tmp_path.glob("*.json"))


def cell_pid(pid_dir: Path) -> int:
    """The slow cell's own process, from the file it drops."""
    (name,) = wait_for(lambda: [p.name for p in pid_dir.iterdir() if p.name.startswith("cell-")])
    return int(name.removeprefix("cell-"))


@pytest.mark.parametrize("how", ["killed", "failed"])
def test_a_forced_rerun_that_ends_badly_keeps_the_result_from_before(tmp_path, executor, how):
    out, pid_dir = tmp_path / "out", tmp_path / "pids"
    pid_dir.mkdir()
    first = harness_run("--framework", "slow", *TINY, *executor, out=out, env={"FWCOMPARE_TEST_EPOCH_S": "0"})
    assert first.returncode == 0, first.stderr
    (path,) = out.glob("*.json")
    before = path.read_bytes()
    env = {"FWCOMPARE_TEST_EPOCH_S": "2" if how == "killed" else "0", "FWCOMPARE_TEST_PID_DIR": str(pid_dir),
           **({"FWCOMPARE_TEST_FAIL": "1"} if how == "failed" else {})}
    rerun = harness_run("--framework", "slow", *TINY, "--force", *executor, out=out, env=env, popen=True)
    if how == "killed":
        os.kill(cell_pid(pid_dir), signal.SIGKILL)  # a real SIGKILL of the cell's process
    _, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 1, err
    assert "the result from before (ok) is kept" in err
    assert path.read_bytes() == before and [p.name for p in out.glob("*.json")] == [path.name]


def test_a_killed_cell_is_recorded_as_killed_and_a_rerun_completes_it(tmp_path, executor):
    out, pid_dir = tmp_path / "out", tmp_path / "pids"
    pid_dir.mkdir()
    env = {"FWCOMPARE_TEST_EPOCH_S": "2", "FWCOMPARE_TEST_PID_DIR": str(pid_dir)}
    runner = harness_run("--framework", "slow", *TINY, *executor, out=out, env=env, popen=True)
    os.kill(cell_pid(pid_dir), signal.SIGKILL)
    _, err = runner.communicate(timeout=180)
    assert runner.returncode == 1, err
    assert results_in(out)["slow"]["status"] == "killed" and "SIGKILL" in results_in(out)["slow"]["message"]
    rerun = harness_run("--framework", "slow", *TINY, *executor, out=out, env={"FWCOMPARE_TEST_EPOCH_S": "0"})
    assert rerun.returncode == 0 and results_in(out)["slow"]["status"] == "ok", rerun.stderr
