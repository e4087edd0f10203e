"""Faults: bad input is one line before any training, every fault is a recorded failure, the
matrix goes on, nothing is lost, and a plain rerun completes what failed.

Real processes throughout: real SIGKILLs of a cell and of the runner, a real tiny tmpfs for a
full disk, real read-only mounts (root ignores permission bits, not a read-only mount).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import data
from harness.data import formats
from harness.measure.faults import out_of_memory
from harness.plan.files import REPORT_DIR, WORKSPACE
from harness.plan.frameworks import default_frameworks
from harness.run.launch import death_status
from tests.fake_oom_impls import OOM_FAKES
from tests.helpers import FAKES, ROOT, TINY, alive, children, finished, harness_run, one_line, results_in, wait_for


def run(*args, out, cwd=ROOT, env=None, **kw):
    return harness_run(*args, out=out, cwd=cwd, env=env, **kw)


def start(*args, out, env=None):
    return harness_run(*args, out=out, env=env, popen=True)


@pytest.fixture
def mount(tmp_path):
    """mount(options) -> a fresh tmpfs folder with those mount options, unmounted afterwards."""
    mounted = []

    def make(options: str) -> Path:
        folder = tmp_path / f"mnt{len(mounted)}"
        folder.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); needs root")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# ---------------------------------------------------------------- paths
def test_a_run_started_in_another_directory_records_its_cell_where_it_reads_it(tmp_path):
    proc = run("--framework", "numpy", *TINY, out="rel-out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (result,) = results_in(tmp_path / "rel-out").values()
    assert result["status"] == "ok", result["message"]


# ---------------------------------------------------------------- resume
def test_failed_cells_are_rerun_by_a_plain_rerun_and_say_so(tmp_path):
    first = run("--framework", "failing", "numpy", *TINY, out=tmp_path)
    assert first.returncode == 1 and "run the same command again" in first.stderr
    assert results_in(tmp_path)["failing"]["status"] == "error"
    again = run("--framework", "failing", "numpy", *TINY, out=tmp_path)
    assert "rerun tiny5x5-logistic-failing" in again.stderr and "it ended error before" in again.stderr
    assert "1 done before" in again.stdout and "1 error" in again.stdout


def test_a_file_that_is_not_a_valid_result_is_not_finished(tmp_path):
    run("--framework", "numpy", *TINY, out=tmp_path)
    (path,) = tmp_path.glob("*.json")
    path.write_text(json.dumps({"status": "ok"}))  # parses, has a status, is no result
    assert not finished(path)
    again = run("--framework", "numpy", *TINY, out=tmp_path)
    assert "1 ok" in again.stdout and finished(path)


def test_a_killed_runner_leaves_no_orphan_cell_and_no_temp_folder(tmp_path):
    runner = start("--framework", "slow", *TINY, out=tmp_path, env={"FWCOMPARE_TEST_EPOCH_S": "3"})
    (cell_pid,) = wait_for(lambda: children(runner.pid))
    runner.kill()
    runner.communicate(timeout=30)
    wait_for(lambda: not alive(cell_pid), timeout=10)  # the cell died with its runner
    assert not list(tmp_path.glob("*.json"))  # no half-made or "error" result left behind
    rerun = run("--framework", "slow", *TINY, out=tmp_path, env={"FWCOMPARE_TEST_EPOCH_S": "0"})
    assert rerun.returncode == 0 and results_in(tmp_path)["slow"]["status"] == "ok"
    assert not list((tmp_path / ".scratch").iterdir())


def test_a_killed_runner_s_forced_rerun_is_put_back_by_the_next_run(tmp_path):
    run("--framework", "slow", *TINY, out=tmp_path, env={"FWCOMPARE_TEST_EPOCH_S": "0"})
    (path,) = tmp_path.glob("*.json")
    before = path.read_text()
    runner = start("--framework", "slow", *TINY, "--force", out=tmp_path, env={"FWCOMPARE_TEST_EPOCH_S": "3"})
    wait_for(lambda: children(runner.pid))
    runner.kill()
    runner.communicate(timeout=30)
    again = run("--framework", "slow", *TINY, out=tmp_path, env={"FWCOMPARE_TEST_EPOCH_S": "0"})
    assert "1 done before" in again.stdout and path.read_text() == before


# ---------------------------------------------------------------- how a cell ends: its status, and one line for it
ENDINGS = {  # the fake framework: the status its cell ends with, and words of why on its line
    "numpy": ("ok", ""), "diverging": ("diverged", "loss became nan"),
    "failing": ("error", "simulated framework failure"),
    "slow": ("killed", "killed by SIGKILL"),  # SIGKILLed by the test
    "oom": ("oom", "CUDA out of memory"),
    "cpu-alloc": ("oom", "DefaultCPUAllocator: not enough memory"),  # torch's words
    "ulimited": ("oom", "Cannot allocate memory"),  # a real ENOMEM under a `ulimit -v` limit
    "bad-alloc": ("oom", "std::bad_alloc"),  # then SIGABRT: the process dies without writing its result
}


def run_every_ending(out: Path, pid_dir: Path, executor=()) -> tuple[subprocess.Popen, str]:
    """One matrix whose cells end in every way (ENDINGS), the slow one killed by a real SIGKILL:
    the finished runner and its stderr."""
    pid_dir.mkdir()
    env = {"FWCOMPARE_IMPLS": f"{FAKES},{OOM_FAKES}", "FWCOMPARE_TEST_EPOCH_S": "60",
           "FWCOMPARE_TEST_PID_DIR": str(pid_dir)}
    runner = harness_run("--framework", *ENDINGS, *TINY, *executor, out=out, env=env, popen=True)
    (cell,) = wait_for(lambda: [p.name for p in pid_dir.iterdir() if p.name.startswith("cell-")], timeout=120)
    os.kill(int(cell.removeprefix("cell-")), signal.SIGKILL)
    _, err = runner.communicate(timeout=300)
    return runner, err


def assert_every_ending_recorded_and_said_once(out: Path, runner: subprocess.Popen, err: str) -> None:
    assert runner.returncode == 1, err
    results = results_in(out)
    assert {fw: r["status"] for fw, r in results.items()} == {fw: e[0] for fw, e in ENDINGS.items()}, err
    for fw, (status, why) in ENDINGS.items():
        said = [line for line in err.splitlines() if f"-logistic-{fw}-" in line and ": status " in line]
        assert len(said) == 1, (fw, err)  # one line for each cell, however it ended, saying why
        assert f": status {status}" in said[0] and why in said[0] and "last lines" not in said[0], said
    assert "killed by SIGKILL" in results["slow"]["message"]
    assert "Cannot allocate memory" in results["ulimited"]["message"]
    assert "not enough memory" in results["cpu-alloc"]["message"]
    assert "SIGABRT" in results["bad-alloc"]["message"] and "std::bad_alloc" in results["bad-alloc"]["message"]


def test_every_cell_ends_recorded_with_its_status_and_one_line_saying_it(tmp_path):
    runner, err = run_every_ending(tmp_path / "out", tmp_path / "pids")
    assert_every_ending_recorded_and_said_once(tmp_path / "out", runner, err)


@pytest.mark.parametrize("text", [
    "MemoryError", "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 7.45 GiB for an array",
    "terminate called after throwing an instance of 'std::bad_alloc'", "OSError: [Errno 12] Cannot allocate memory",
    "RuntimeError: CUDA out of memory. Tried to allocate 80.00 GiB",
    "ResourceExhaustedError: OOM when allocating tensor with shape[60000,784]",
    "XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating 4000000000 bytes.",
    "RuntimeError: DefaultCPUAllocator: not enough memory: you tried to allocate 8000000000 bytes.",
    "RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED"])
def test_an_allocator_s_own_words_are_out_of_memory(text):
    assert out_of_memory(f"epoch 1/3  loss 0.5\n{text}\n") == text


@pytest.mark.parametrize("text", ["no room left for the cache", "zoom in", "RuntimeError: shapes do not match",
                                  "killed by SIGKILL", "the memory of the cell"])
def test_other_words_are_not(text):
    assert out_of_memory(text) is None


def test_a_death_is_out_of_memory_from_evidence_only():
    assert death_status(-9, 3, 4) == ("oom", "killed by SIGKILL: the kernel's OOM killer (cgroup memory.events "
                                             "oom_kill 3 -> 4)")
    assert death_status(-9, 3, 3) == ("killed", "killed by SIGKILL")  # SIGKILL alone says nothing of memory
    assert death_status(-6, None, None, ["  what():  std::bad_alloc"])[0] == "oom"
    assert death_status(1, None, None, ["MemoryError"]) == ("oom", "the cell's process exited with code 1: "
                                                                   "out of memory (MemoryError)")
    assert death_status(1, None, None, ["ValueError: bad"]) == ("error", "the cell's process exited with code 1")


# ---------------------------------------------------------------- the output folder
def test_a_full_disk_is_a_recorded_failure_and_the_matrix_goes_on(mount):
    out = mount("size=4k")  # one page: room for the lock and probe files, not for a result
    proc = run("--framework", "numpy", *TINY, "--seed", "0", "1", out=out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("could not be written") == 2  # both cells tried: the matrix went on
    assert "2 write failed" in proc.stdout


@pytest.mark.parametrize("kind", ["read-only", "a file"])
def test_an_out_folder_that_cannot_hold_results_is_refused_before_training(tmp_path, mount, kind):
    if kind == "read-only":
        out, expected = mount("ro,size=64k"), "is not writable"
    else:
        out, expected = tmp_path / "results.json", "is a file"
        out.write_text("{}")
    proc = run("--framework", "numpy", *TINY, out=out)
    assert proc.returncode == 2 and expected in one_line(proc)


def test_two_runs_on_one_folder_never_train_the_same_cell_at_once(tmp_path):
    trained = tmp_path / "trained-by"
    trained.mkdir()
    env = {"FWCOMPARE_TEST_EPOCH_S": "1", "FWCOMPARE_TEST_PID_DIR": str(trained)}
    first = start("--framework", "slow", *TINY, out=tmp_path / "out", env=env)
    wait_for(lambda: children(first.pid))
    second = run("--framework", "slow", *TINY, out=tmp_path / "out", env=env, timeout=120)
    first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "another run on" in second.stderr and "another run finished it" in second.stderr
    assert "1 done elsewhere" in second.stdout
    assert [p.name for p in trained.iterdir() if p.name.isdigit()] == [str(first.pid)]  # by the first run only


# ---------------------------------------------------------------- bad options
@pytest.mark.parametrize("option", [
    ["--lr", "nan"], ["--lr", "inf"], ["--lr", "0"], ["--eps", "-1"], ["--eps", "0"], ["--seed", "-1"],
    ["--threads", "-3"], ["--batch-size", "0"], ["--epochs", "0"]])
def test_meaningless_numbers_are_refused_in_one_line(tmp_path, option):
    proc = run("--framework", "numpy", *TINY, *option, out=tmp_path)
    assert proc.returncode == 2 and option[0] in one_line(proc)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize("argv,expected", [
    (["--recipe", "force-of-mlp", "--model", "cnn"], "drop --model"),
    (["--recipe", "vanangamudi", "--lr", "0.1", "--optimizer", "adam"], "drop --optimizer, --lr"),
    (["--plan", "gpu-quick", "--epochs", "1"], "drop --epochs"),
    (["--framework", "numpy", "jax", "--mode", "reference"], "jax has none of the modes reference"),
])
def test_options_that_would_be_ignored_are_refused_in_one_line(tmp_path, argv, expected):
    proc = run(*argv, out=tmp_path)
    assert proc.returncode == 2 and expected in one_line(proc)


def test_a_run_whose_every_cell_is_skipped_fails(tmp_path):
    from tests.conftest import installed

    absent = [f for f in default_frameworks() if not installed(f)]
    if not absent:
        pytest.skip("every framework is installed here")
    proc = run("--framework", absent[0], *TINY, out=tmp_path)
    assert proc.returncode == 1 and "nothing ran" in proc.stderr


# ---------------------------------------------------------------- data
def mnist_like(tmp_path: Path, **override) -> Path:
    """MNIST's real arrays with some replaced, as a Keras-format npz."""
    raw = data.load_raw("mnist")
    arrays = {k: getattr(raw, k) for k in formats.IDX_NAMES} | override
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("case,expected", [
    ("100 images, 60000 labels", "100 train images but 60000 train labels"),
    ("one-hot labels", "expected (N,) class numbers"),
    ("label 10", "labels must be 0-9"),
])
def test_data_that_does_not_fit_together_is_refused_in_one_line(tmp_path, case, expected):
    raw = data.load_raw("mnist")
    override = {"100 images, 60000 labels": {"x_train": raw.x_train[:100]},
                "one-hot labels": {"y_train": np.eye(10, dtype=np.uint8)[raw.y_train]},
                "label 10": {"y_test": np.where(raw.y_test == 9, 10, raw.y_test).astype(np.uint8)}}[case]
    path = mnist_like(tmp_path, **override)
    proc = run("--framework", "numpy", "--model", "logistic", "--epochs", "1", out=tmp_path / "out",
               env={"FWCOMPARE_MNIST": str(path)})
    assert proc.returncode == 2 and expected in one_line(proc)
    assert not list((tmp_path / "out").glob("*.json"))


def test_every_result_names_its_data_and_machine_and_the_cell_id_the_data(tmp_path):
    run("--framework", "numpy", *TINY, out=tmp_path)
    (result,) = results_in(tmp_path).values()
    digest = data.load_raw("tiny5x5").sha256
    assert result["data"]["sha256"] == digest and result["cell"]["data_sha256"] == digest
    assert f"-d{digest[:8]}-" in result["cell"]["id"] and result["data"]["source"]
    machine = result["env"]["machine"]
    assert machine["id"] and machine["cores"] == os.cpu_count() and machine["cpu"]


def test_a_cache_that_cannot_be_written_warns_and_the_data_still_load(mount, monkeypatch, capsys):
    monkeypatch.setenv(data.CACHE_ENV, str(mount("ro,size=64k")))
    raw = data.load_raw("tiny5x5")
    assert data.write_cache("mnist", raw) is None
    assert "cannot write the mnist cache" in capsys.readouterr().err


# ---------------------------------------------------------------- the parity env
def test_the_parity_env_alone_says_in_one_line_which_envs_make_its_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_accuracy_parity.py", "-q",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "FWCOMPARE_PARITY_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "run `tox -e test-torch,test-keras,test-jax` first" in proc.stdout
    assert "Traceback" not in proc.stdout and "assert" not in proc.stdout


# ---------------------------------------------------------------- the report's output
def test_the_report_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    run("--framework", "numpy", *TINY, out=tmp_path / "runs")
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "REPORT.md").symlink_to(target)
    proc = subprocess.run([sys.executable, "-m", "harness.report", "runs", "--out-dir", "out"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert target.read_text() == "keep me"
    assert not (tmp_path / "out" / "REPORT.md").is_symlink() and f"wrote {tmp_path / 'out'}" in proc.stdout


def test_by_default_runs_and_reports_go_to_git_ignored_folders_of_the_checkout():
    from harness.report.__main__ import parser as report_parser
    from harness.run.__main__ import parser as run_parser

    out, report = run_parser().parse_args([]).out, report_parser().parse_args([]).out_dir
    assert out == WORKSPACE and report == REPORT_DIR and out.is_absolute()
    probes = [str(p.relative_to(ROOT) / "x.json") for p in (out, report)]
    ignored = subprocess.run(["git", "check-ignore", *probes], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == probes
