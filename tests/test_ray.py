"""The Ray executor: the same result files as the local one, a killed worker retried then
recorded, nothing submitted twice, Ctrl-C cancels. On a local Ray instance (2 CPUs) that
the tests start; each matrix runs in a driver process that joins it with --address."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.run.ray_cluster import SCRATCH_PREFIX, _running, processes_using
from tests.helpers import FAKES, ROOT, TINY, harness_run, results_in, wait_for
from tests.test_faults import assert_every_ending_recorded_and_said_once, run_every_ending


def results_by_name(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}


@pytest.fixture(scope="module")
def ray_matrix(ray_address, tmp_path_factory):
    """The tiny matrix over three seeds, run once on Ray: (its folder, the driver's output)."""
    out = tmp_path_factory.mktemp("on-ray")
    proc = harness_run("--framework", "numpy", *TINY, "--seed", "0", "1", "2",
                       "--executor", "ray", "--address", ray_address, out=out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_ray_writes_the_same_result_files_as_the_local_executor(ray_matrix, tmp_path):
    out, _ = ray_matrix
    local = harness_run("--framework", "numpy", *TINY, "--seed", "0", "1", "2", out=tmp_path)
    assert local.returncode == 0, local.stderr
    on_ray, here = results_by_name(out), results_by_name(tmp_path)
    assert len(on_ray) == 3 and set(on_ray) == set(here)
    assert {p.relative_to(out) for p in out.rglob("*.npz")} == {p.relative_to(tmp_path) for p in tmp_path.rglob("*.npz")}
    for name, result in on_ray.items():
        assert result["status"] == "ok"
        assert result["metrics"]["test_accuracy"] == here[name]["metrics"]["test_accuracy"]
        assert result["curves"]["train_loss"] == here[name]["curves"]["train_loss"]


def test_each_ray_result_names_its_node_and_how_it_shared_it(ray_matrix):
    out, _ = ray_matrix
    for result in results_by_name(out).values():
        env = result["env"]
        assert len(env["ray"]["node_id"]) == 56 and env["ray"]["node_ip"]  # Ray's hex node id
        assert env["ray"]["gpu_ids"] == []  # a CPU cell is given no GPU
        assert env["machine"]["id"]  # taken on the worker, so an archive splits by machine
        assert len(env["settings"]["cpu_affinity"]) == 1  # 0 threads: one CPU reserved, one core
        assert env["settings"]["concurrent_cells"] in (1, 2)  # two CPUs: at most two cells at once


def test_a_second_submission_submits_nothing(ray_matrix, ray_address):
    out, _ = ray_matrix
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = harness_run("--framework", "numpy", *TINY, "--seed", "0", "1", "2",
                        "--executor", "ray", "--address", ray_address, out=out)
    assert again.returncode == 0, again.stderr
    assert "3 done before" in again.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def kill_ray_workers(pid_dir: Path, kills: int, driver: subprocess.Popen) -> list[int]:
    """SIGKILL the Ray worker of each of the slow cell's first `kills` attempts; returns every attempt's worker pid."""
    seen: list[int] = []
    deadline = time.time() + 120
    while driver.poll() is None and time.time() < deadline:
        for pid in sorted(int(p.name) for p in pid_dir.iterdir() if p.name.isdigit()):
            if pid in seen:
                continue
            seen.append(pid)
            if len(seen) <= kills:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                assert b"ray::" in cmdline, cmdline  # the cell process's parent is the Ray worker
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return seen


@pytest.mark.parametrize("kills,status", [(1, "ok"), (2, "killed")])
def test_a_killed_worker_is_retried_once_then_recorded(ray_address, tmp_path, kills, status):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    driver = harness_run("--framework", "slow", "numpy", *TINY, "--executor", "ray", "--address", ray_address,
                         out=tmp_path / "out", popen=True,
                         env={"FWCOMPARE_TEST_PID_DIR": str(pid_dir), "FWCOMPARE_TEST_EPOCH_S": "1"})
    workers = kill_ray_workers(pid_dir, kills, driver)
    _, err = driver.communicate(timeout=60)
    assert len(workers) == 2 and workers[0] != workers[1]  # one retry, in another worker process
    results = results_in(tmp_path / "out")
    assert results["numpy"]["status"] == "ok"  # the cell beside it is not disturbed
    slow = results["slow"]
    assert slow["status"] == status, slow["message"]
    if status == "killed":
        assert "died 2 times" in slow["message"]
        assert driver.returncode == 1 and "1 cells failed" in err  # recorded as a failure, retried by a rerun
    else:
        assert driver.returncode == 0, err
        # the cell's process ran on the cores recorded for it
        settings = slow["env"]["settings"]
        assert settings["process_affinity"] == settings["cpu_affinity"]


def test_ctrl_c_cancels_the_outstanding_cells_and_keeps_the_finished_ones(ray_address, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    driver = harness_run("--framework", "numpy", "slow", *TINY, "--executor", "ray", "--address", ray_address,
                         out=tmp_path / "out", popen=True,
                         env={"FWCOMPARE_TEST_PID_DIR": str(pid_dir), "FWCOMPARE_TEST_EPOCH_S": "30"})
    deadline = time.time() + 60
    while not (list((tmp_path / "out").glob("*.json")) and list(pid_dir.iterdir())) and time.time() < deadline:
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert list(results_in(tmp_path / "out")) == ["numpy"]  # the finished cell's result stays
    (worker,) = (int(p.name) for p in pid_dir.iterdir() if p.name.isdigit())
    deadline = time.time() + 30
    while Path(f"/proc/{worker}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{worker}").exists()  # the slow cell's worker was cancelled, not left running


def test_without_ray_one_line_says_how_to_install_it(tmp_path):
    # ray made unimportable in the driver, as where it is not installed
    code = ("import runpy, sys; sys.modules['ray'] = None; "
            "sys.argv = ['harness.run', *sys.argv[1:]]; runpy.run_module('harness.run', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, "--framework", "numpy", *TINY, "--executor", "ray",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "FWCOMPARE_IMPLS": FAKES})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install -e '.[ray]'" in proc.stderr
    assert not list(tmp_path.glob("*.json"))


def test_every_cell_ends_recorded_with_its_status_and_one_line_saying_it(ray_address, tmp_path):
    executor = ["--executor", "ray", "--address", ray_address]
    runner, err = run_every_ending(tmp_path / "out", tmp_path / "pids", executor)
    assert_every_ending_recorded_and_said_once(tmp_path / "out", runner, err)


# ---------------------------------------------------------------- what the harness started, it stops
def scratch_folders() -> set[Path]:
    """This harness's Ray scratch folders in the temp dir."""
    return set(Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"))


def running_in(folder: Path) -> dict[int, str]:
    """The processes still running that use the folder (zombies are not running)."""
    return {pid: name for pid, name in processes_using(folder).items() if _running(pid)}


def test_a_killed_driver_s_ray_is_stopped_and_cleared_by_the_next_run(tmp_path):
    """The driver starts a Ray instance of its own (no --address), is killed by SIGKILL mid-cell, and
    leaves Ray's agents running under pid 1 with its scratch folder; the next run clears both, and
    leaves nothing of its own behind when it ends."""
    pytest.importorskip("ray")
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    before = scratch_folders()
    driver = harness_run("--framework", "slow", *TINY, "--executor", "ray", out=tmp_path / "out", popen=True,
                         env={"FWCOMPARE_TEST_PID_DIR": str(pid_dir), "FWCOMPARE_TEST_EPOCH_S": "60"})
    wait_for(lambda: any(p.name.startswith("cell-") for p in pid_dir.iterdir()), timeout=120)
    (scratch,) = [f for f in scratch_folders() - before if f.name.startswith(f"{SCRATCH_PREFIX}{driver.pid}-")]
    driver.kill()
    driver.communicate(timeout=30)
    orphans = wait_for(lambda: {pid: name for pid, name in running_in(scratch).items()
                                if name.startswith("ray::") and "Agent" in name}, timeout=30)
    assert set(orphans.values()) >= {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}  # what SIGKILL leaves
    again = harness_run("--framework", "slow", *TINY, "--executor", "ray", out=tmp_path / "out",
                        env={"FWCOMPARE_TEST_EPOCH_S": "0"})
    assert again.returncode == 0, again.stderr
    (line,) = [line for line in again.stderr.splitlines() if line.startswith("cleared what a killed Ray run left")]
    assert scratch.name in line and "ray::DashboardAgent" in line and "ray::RuntimeEnvAgent" in line
    assert not scratch.exists() and not running_in(scratch)
    assert not any(_running(pid) for pid in orphans)
    assert scratch_folders() <= before  # the second run's own folder went with it
    assert results_in(tmp_path / "out")["slow"]["status"] == "ok"
