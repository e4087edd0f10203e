"""The runner: result files follow the schema, are whole or absent, and the matrix goes on."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.measure import results
from harness.plan.frameworks import default_frameworks, frameworks
from harness.plan.plans import PLANS
from tests.conftest import installed
from tests.helpers import ROOT, TINY, ctrl_c_as_a_terminal_sends_it, finished, harness_run
from tests.helpers import results_in as load_all


def run(*args, out: Path, env=None, **kw):
    return harness_run(*args, out=out, env=env, **kw)


def test_result_file_follows_the_schema_and_records_where_it_ran(tmp_path):
    proc = run("--framework", "numpy", *TINY, out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("*.json")
    assert results.read(path).schema_version == results.SCHEMA_VERSION  # reads back as a typed record
    (result,) = load_all(tmp_path).values()
    m = result["metrics"]
    assert result["status"] == "ok" and result["curves"]["epoch"] == [1, 2, 3]
    assert m["epoch_s"]["n"] == 2 and m["first_epoch_s"] > 0  # first epoch apart from the steady ones
    assert 0 <= m["test_accuracy"] <= 1 and len(m["per_class_accuracy"]) == 10
    assert m["latency_b1_ms"]["p99"] >= m["latency_b1_ms"]["p50"] > 0
    # on a CPU the GPU metrics say why they are missing, never zero
    assert m["gpu_busy_s"] == {"available": False, "reason": "no GPU: the cell ran on the CPU"}
    assert result["env"]["commit"] != "" and result["env"]["settings"]["threads"] >= 1
    assert re.fullmatch("[0-9a-f]{64}", result["env"]["source_sha256"])
    assert m["profiled_epoch_s"] == m["gpu_busy_s"]  # no traced epoch on a CPU, for the same reason


def test_diverging_cell_is_recorded_and_the_matrix_goes_on(tmp_path):
    proc = run("--framework", "diverging", "numpy", *TINY, out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cells = load_all(tmp_path)
    assert cells["diverging"]["status"] == "diverged"
    assert "step 3" in cells["diverging"]["message"]
    assert cells["numpy"]["status"] == "ok"


def test_errors_and_out_of_memory_are_recorded_and_the_matrix_goes_on(tmp_path):
    proc = run("--framework", "failing", "oom", "numpy", *TINY, out=tmp_path)
    assert proc.returncode == 1  # an error is a failure of the run, after every cell ran
    cells = load_all(tmp_path)
    assert cells["failing"]["status"] == "error"
    assert "simulated framework failure" in cells["failing"]["message"]
    assert cells["oom"]["status"] == "oom" and cells["numpy"]["status"] == "ok"


def test_rerun_skips_finished_cells_unless_forced(tmp_path):
    run("--framework", "numpy", *TINY, out=tmp_path)
    (path,) = tmp_path.glob("*.json")
    before = path.read_text()
    again = run("--framework", "numpy", *TINY, out=tmp_path)
    assert "1 done before" in again.stdout and path.read_text() == before
    forced = run("--framework", "numpy", *TINY, "--force", out=tmp_path)
    assert "1 ok" in forced.stdout and path.read_text() != before


@pytest.mark.parametrize("flag,bad,valid", [
    ("--framework", "tensorflow", f"valid frameworks: {', '.join(frameworks())}"),
    ("--model", "resnet", "valid models: logistic, mlp, cnn"),
    ("--mode", "turbo", "valid modes:"),
    ("--dataset", "cifar", "valid datasets: mnist, fashion, tiny5x5"),
    ("--precision", "fp8", "valid precisions: float32, tf32, bf16"),
    ("--precision", "tf32", "GPU tensor-core mode; on the CPU run float32 or bf16"),
    ("--plan", "everything", f"valid plans: {', '.join(PLANS)}"),
])
def test_unknown_names_give_one_line_listing_the_valid_ones(tmp_path, flag, bad, valid):
    proc = run(flag, bad, out=tmp_path, env={"FWCOMPARE_IMPLS": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and valid in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.glob("*"))


def test_framework_not_installed_is_skipped_with_its_reason(tmp_path):
    missing = [f for f in default_frameworks() if not installed(f)]
    if not missing:
        pytest.skip("every framework is installed here")
    proc = run("--framework", missing[0], "numpy", *TINY, out=tmp_path)
    assert proc.returncode == 0
    assert f"not installed in its environment (run it in its tox env: tox -e {missing[0]};" in proc.stderr
    assert "2 skipped" in proc.stdout  # its equal and its native cell
    assert list(load_all(tmp_path)) == ["numpy"]


def test_a_write_killed_midway_leaves_no_result_file(tmp_path):
    target = tmp_path / "cell.json"
    code = f"""
import os, signal
from pathlib import Path
from harness.plan.files import write_atomic
def write_half_then_die(f):
    f.write(b'{{"schema_version": 1, "cell": ')
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
write_atomic(Path({str(target)!r}), write_half_then_die)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists() and not finished(target)
    assert not list(tmp_path.glob("*.json"))  # only the hidden temporary, which nothing reads


def test_ctrl_c_leaves_only_complete_result_files(tmp_path):
    # first a quick cell, then a slow one (the float64 MLP on all of MNIST) to interrupt
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.run", "--framework", "numpy", "--model", "logistic", "mlp",
         "--dataset", "tiny5x5", "mnist", "--batch-size", "2", "--epochs", "1", "--out", str(tmp_path),
         "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=ctrl_c_as_a_terminal_sends_it)
    deadline = time.time() + 60
    while len(list(tmp_path.glob("*.json"))) < 1 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # into the slow cell
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    for path in tmp_path.glob("*.json"):
        assert finished(path)  # every file there parses and holds a final status
    assert len(list(tmp_path.glob("*.json"))) < 4


class FakeGpu:
    """Stands in for measure.GpuTimer on a machine with a GPU: CUPTI and NVML both work."""
    reason = None
    nvml_reason = None

    def __init__(self, busy_s: float, energy_step_mj: float):
        self.busy_s, self.energy_step_mj, self.energy, self.started = busy_s, energy_step_mj, 0.0, []

    def energy_mj(self):
        self.energy += self.energy_step_mj
        return self.energy

    def start(self):
        self.started.append(True)
        return 0

    def stop(self, start_ns):
        return self.busy_s


def test_a_gpu_cell_traces_only_its_last_epoch_and_times_without_it():
    from harness import data
    from harness.measure import child
    from harness.measure.protocol import initial_weights, steady_epochs
    from harness.plan import cell
    from harness.plan.frameworks import load_impl
    from harness.plan.spec import Hyper, model_spec

    ds = data.load("tiny5x5")
    model, hyper = model_spec("toy25", ds.input_shape, ds.num_classes), Hyper(optimizer="sgd", batch_size=1, epochs=4)
    impl = load_impl("numpy")
    impl.build(model, hyper, ds, initial_weights(model, 0), "cpu", None)
    gpu = FakeGpu(busy_s=0.001, energy_step_mj=5.0)
    training = child.Training(impl, ds, hyper, gpu, say=lambda _: None)
    impl.run_epochs(hyper.epochs, training.order_for, training)
    curves = training.curves
    assert training.status == "ok" and curves["profiled_epoch"] == 4 and len(gpu.started) == 1
    assert curves["gpu_busy_s"] == [None, None, None, 0.001]
    steady = steady_epochs(curves)
    assert steady == curves["epoch_s"][1:3]  # epochs 2 and 3: not the first, not the traced one
    c = cell.Cell("numpy", None, "toy25", "reference", data.DataSpec("tiny5x5"), hyper, device="cuda")
    m = child.device_metrics(c, impl, gpu, curves, steady)
    assert m["profiled_epoch_s"] == curves["epoch_s"][3]
    assert m["gpu_utilization"] == pytest.approx(0.001 / float(np.median(steady)))
    assert m["energy_j_per_epoch"]["n"] == 2  # untraced steady epochs only

    still = FakeGpu(busy_s=0.001, energy_step_mj=0.0)  # NVML's counter did not move: no reading
    impl.build(model, hyper, ds, initial_weights(model, 0), "cpu", None)
    training = child.Training(impl, ds, hyper, still, say=lambda _: None)
    impl.run_epochs(hyper.epochs, training.order_for, training)
    m = child.device_metrics(c, impl, still, training.curves, steady_epochs(training.curves))
    assert m["energy_j_per_epoch"]["available"] is False and "energy counter" in m["energy_j_per_epoch"]["reason"]
