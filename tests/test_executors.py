"""Both executors end a cell through the same store, so they behave the same by construction:
a forced rerun that dies or fails keeps the earlier good result, and a killed cell is
recorded and rerun. Each case runs under the local executor, and under Ray where it is
installed (tox -e test-ray)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import TINY, harness_run, results_in, wait_for

EXECUTORS = ["local", pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture(params=EXECUTORS)
def executor(request) -> list[str]:
    """The options that pick the executor (Ray: joining the tests' local Ray instance)."""
    if request.param == "local":
        return []
    return ["--executor", "ray", "--address", request.getfixturevalue("ray_address")]


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
