"""The plain reference-style loops (impls/plain/) and their runner (harness.run.plain_loops), on the CPU.

Each loop trains 2 epochs on the first 2000 MNIST rows (the median samples/s needs an epoch
after the first); loops of a framework not installed here are skipped, so each framework's
tox env runs its own. The runner's refusals, its pairing of loops with suite cells and its
table need no framework and run in test-core.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import data
from harness.measure import loops as loop_records
from harness.plan.errors import HarnessError
from harness.plan.frameworks import framework
from harness.plan.loop_plans import H100_REFERENCE, PLANS
from harness.run import plain_loops

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 2000
# (framework, mode) of every loop mode a CPU runs
CPU_LOOPS = [(name, mode) for name, modes in plain_loops.suite_modes().items() for mode in modes
             if not (name == "torch" and mode == "graph")]


def runs_here(name: str) -> bool:
    """Whether this env has the framework's packages, and Keras's its backend's (KERAS_BACKEND, else tensorflow)."""
    import importlib.util

    backend = os.environ.get("KERAS_BACKEND", "tensorflow") if name == "keras" else None
    return all(importlib.util.find_spec(p) for p in framework(name).needs(backend))


def needs(name: str):
    what = f"keras on {os.environ.get('KERAS_BACKEND', 'tensorflow')}" if name == "keras" else name
    return pytest.mark.skipif(not runs_here(name), reason=f"{what} not installed here")


@pytest.fixture(scope="module")
def mnist_npz() -> Path:
    """The .npz the suite's MNIST comes from, as the runner gives it to the loops."""
    return plain_loops.loops_data(None, data.load_raw("mnist").sha256)


def run_loop(name: str, npz: Path, *options: str, mode: str = "eager") -> subprocess.CompletedProcess:
    """The program of the framework's loop mode (impls.plain.<name>_mlp or _example) with these options."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    program = plain_loops.Loop(name, None, mode, 32).program
    return subprocess.run([sys.executable, "-m", program, str(npz), *options],
                          env=env, text=True, capture_output=True, timeout=600)


@pytest.mark.framework
@pytest.mark.parametrize("name, mode", [pytest.param(n, m, marks=needs(n), id=f"{n}-{m}") for n, m in CPU_LOOPS])
def test_loop_prints_one_json_line_with_a_sensible_accuracy(name, mode, mnist_npz):
    proc = run_loop(name, mnist_npz, "--mode", mode, "--epochs", "2", "--limit", str(LIMIT), mode=mode)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    assert (result["framework"], result["mode"], result["batch_size"], result["device"], result["epochs"]) == \
        (name, mode, 32, "cpu", 2)
    assert len(result["epoch_s"]) == 2 and all(s > 0 for s in result["epoch_s"])
    # whole batches, or (Keras's fit, torch's example DataLoader) every row
    assert result["samples_per_epoch"] in (LIMIT // 32 * 32, LIMIT)
    assert result["train_samples_per_s_median"] == pytest.approx(result["samples_per_epoch"] / result["epoch_s"][1])
    assert 0.75 < result["test_accuracy"] <= 1  # 2 epochs on 2000 rows: ~0.85; chance is 0.1
    assert name in result["versions"]


@pytest.mark.framework
@pytest.mark.parametrize("name", [pytest.param(n, marks=needs(n)) for n in ("torch", "jax", "keras")])
def test_example_program_refuses_any_other_mode(name, mnist_npz):
    proc = run_loop(name, mnist_npz, "--mode", "eager", mode="example")
    assert proc.returncode == 2
    assert f"python -m impls.plain.{name}_example: error: argument --mode: invalid choice: 'eager'" in proc.stderr


@pytest.mark.framework
@needs("torch")
def test_graph_mode_is_refused_on_a_cpu_in_one_line(mnist_npz):
    proc = run_loop("torch", mnist_npz, "--mode", "graph", "--device", "cpu")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: mode graph captures a CUDA graph: run it with --device cuda on a GPU machine"]


def test_runner_refuses_a_gpu_only_loop_on_a_cpu_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "harness.run.plain_loops", "--loop", "torch:graph:256", "jax:scan:32"],
                          cwd=ROOT, text=True, capture_output=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: torch graph b256: GPU only (a CUDA graph); run it with --device cuda on a GPU machine"]


def test_loop_specs_are_parsed_or_refused_in_one_line(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert plain_loops.parse_loop("keras[jax]:fit-jit:64") == plain_loops.Loop("keras", "jax", "fit-jit", 64)
    assert plain_loops.parse_loop("keras:fit:32").backend == "tensorflow"  # harness.run's default backend
    assert plain_loops.parse_loop("torch:graph:32").suite_mode == "cudagraph"
    for bad in ("torch:graph", "torch[jax]:eager:32", "jax:eager:32", "torch:eager:0", "keras[theano]:fit:32",
                "torch:examples:32", "jax:native:32"):
        with pytest.raises(HarnessError):
            plain_loops.parse_loop(bad)
    with pytest.raises(HarnessError, match="its modes: eager, graph, example"):
        plain_loops.parse_loop("torch:native:32")


def test_an_example_loop_is_paired_with_the_native_cell_the_others_with_equal_ones():
    loops = [plain_loops.parse_loop(spec) for spec in
             ("torch:example:32", "jax:example:32", "keras[jax]:example:32", "torch:eager:32", "jax:scan:32")]
    cells = plain_loops.suite_cells(loops, "cpu", 2, 0, LIMIT)
    assert {loop.label: (loop.program, cell.profile, cell.mode, cell.precision, cell.backend)
            for loop, cell in cells.items()} == {
        "torch example b32": ("impls.plain.torch_example", "native", "eager", "default", None),
        "jax example b32": ("impls.plain.jax_example", "native", "step", "default", None),
        "keras[jax] example b32": ("impls.plain.keras_example", "native", "fit", "default", "jax"),
        "torch eager b32": ("impls.plain.torch_mlp", "equal", "eager", "float32", None),
        "jax scan b32": ("impls.plain.jax_mlp", "equal", "scan", "float32", None)}
    # each the cell harness.run makes for those options (so its result file is that cell's)
    assert all(cell.hyper.epochs == 2 and cell.data.train_rows == LIMIT for cell in cells.values())
    assert cells[loops[0]].id.startswith("mnist-mlp-torch-eager-native-b32-")


def test_every_framework_example_loop_is_in_the_cpu_plans_and_the_archive():
    from harness.plan.plans import PLAIN_LOOPS

    examples = [f"{name}:example:32" for name, modes in plain_loops.suite_modes().items()
                if modes.get("example", (None, None))[1] == "native"]
    assert len(examples) == 3
    assert set(examples) <= set(PLANS["cpu"].loops)
    plan = PLANS["cpu-examples"]
    assert (plan.device, plan.epochs, sorted(plan.loops)) == ("cpu", 5, sorted(examples))
    assert PLAIN_LOOPS["cpu"] == ["--plan", "cpu-archive"]
    assert set(examples) <= set(PLANS["cpu-archive"].loops) and PLANS["cpu-archive"].epochs == 5


def test_every_plan_loop_parses_and_every_reference_names_a_gpu_plan_loop(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    labels = {name: [plain_loops.parse_loop(spec).label for spec in plan.loops] for name, plan in PLANS.items()}
    assert all(len(set(found)) == len(found) for found in labels.values())
    assert set(H100_REFERENCE.samples_per_s) <= set(labels["gpu"])
    assert H100_REFERENCE.get("jax scan b32") == 845_000 and H100_REFERENCE.get("torch eager b32") is None


def pair(cell, loop_rate, suite_rate, loop_status="ok") -> loop_records.Pair:
    """A pair of figures for the cell, as the runner records them (the rest made up)."""
    return loop_records.Pair(
        label="?", loop=loop_records.LoopRun(
            "python -m impls.plain.x", {}, loop_status, None if loop_status == "ok" else "exit status 1: boom",
            {"train_samples_per_s_median": loop_rate, "test_accuracy": 0.9} if loop_status == "ok" else None),
        suite=loop_records.SuiteSide(cell.id, cell.profile, cell.mode, cell.precision, "ok", "", 2000, [1.0],
                                     suite_rate, 0.9),
        data="mnist.npz", data_sha256=cell.data_sha256,
        machine=loop_records.Machine("here", "cpu", 2, [], None, None), seconds=1.0, timestamp="now")


def test_table_names_the_profile_and_mode_of_each_suite_cell():
    specs = ("torch:example:32", "torch:eager:32", "jax:example:32", "jax:step:32")
    loops = [plain_loops.parse_loop(spec) for spec in specs]
    cells = plain_loops.suite_cells(loops, "cpu", 2, 0, LIMIT)
    example, eager, skipped, failed = (cells[loop] for loop in loops)
    # a pair written before the suite's profile and mode were kept reads as profile equal (its upgrade)
    old = pair(eager, 100.0, 50.0).to_dict()
    del old["suite"]["profile"], old["suite"]["mode"], old["suite"]["precision"]
    pairs = loop_records.parse({"about": "v1", "pairs": {example.id: pair(example, 200.0, 300.0).to_dict(), eager.id: old,
                                          failed.id: pair(failed, None, 10.0, "error").to_dict()}}).pairs
    rows = [(loop.label, cells[loop]) for loop in loops]
    table = loop_records.table(rows, pairs, {example.id, eager.id, failed.id},
                               {"jax example b32": "skipped: grain not installed here"}, False)
    rows = [line.split(" | ") for line in table.splitlines()]
    assert rows[0][:3] == ["| loop", "suite cell", "loop samples/s"] and len(rows[0]) == 7
    assert rows[2][:6] == ["| torch example b32", "native eager", "200", "300", "1.50", "0.9000"]
    assert rows[3][:3] == ["| torch eager b32", "equal", "100"]
    assert rows[4][:3] == ["| jax example b32", "native step", "skipped: grain not installed here"]
    assert rows[5][:3] == ["| jax step b32 — loop failed: exit status 1: boom", "equal step", "—"]
    # on a GPU, the reference column, by loop label; a pair from before this call says so
    gpu = loop_records.table([(loops[0].label, example)], pairs, set(), {}, True)
    assert gpu.splitlines()[0].endswith("| reference (H100) |")
    assert gpu.splitlines()[2].startswith("| torch example b32 (an earlier call) |") and gpu.endswith("| — |")


@pytest.mark.framework
@pytest.mark.parametrize("loop", [pytest.param(spec, marks=needs(spec.split(":")[0]), id=spec)
                                  for spec in ("torch:eager:32", "jax:scan:32", "keras:fit-jit:32",
                                               "torch:example:32", "jax:example:32", "keras:example:32")])
def test_runner_sets_loop_beside_suite_cell_in_table_and_json(loop, tmp_path, capsys):
    missing = next((name for name in plain_loops.suite_modes() if not runs_here(name)), None)
    other = {"torch": "torch:eager:32", "jax": "jax:step:32", "keras": "keras:fit:32"}.get(missing)
    argv = ["--loop", loop, *([other] if other else []), "--epochs", "2", "--limit", str(LIMIT),
            "--out", str(tmp_path), "--quiet"]
    assert plain_loops.main(argv) == 0
    out, err = capsys.readouterr()
    label = plain_loops.parse_loop(loop).label
    written = json.loads((tmp_path / plain_loops.RESULT_FILE).read_text())
    assert written["schema_version"] == loop_records.SCHEMA_VERSION
    pairs = written["pairs"]
    assert len(pairs) == 1
    (cell_id, pair), = pairs.items()
    assert (tmp_path / f"{cell_id}.json").is_file()  # the suite's own result file, same --out
    assert pair["loop"]["status"] == "ok" and pair["suite"]["status"] == "ok"
    loop_rate = pair["loop"]["result"]["train_samples_per_s_median"]
    suite_rate = pair["suite"]["train_samples_per_s_median"]
    row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
    profile = "native" if loop.split(":")[1] == "example" else "equal"
    assert (pair["suite"]["profile"], pair["suite"]["precision"]) == \
        (profile, "default" if profile == "native" else "float32")
    assert row.split(" | ")[1:5] == [f"{profile} {pair['suite']['mode']}", f"{loop_rate:,.0f}", f"{suite_rate:,.0f}",
                                     f"{suite_rate / loop_rate:,.2f}"]
    if profile == "native":  # the example's own seed, init, order and maths: the cell's model, to the image
        assert pair["loop"]["result"]["test_accuracy"] == pytest.approx(pair["suite"]["test_accuracy"], abs=1e-6)
    assert pair["loop"]["environment"]["CUDA_VISIBLE_DEVICES"] == ""  # the cell's environment
    if other:  # a framework missing here is skipped with the env that has it
        assert f"skip {plain_loops.parse_loop(other).label}: " in err and "into the same --out" in err
    # the same command again resumes: the pair recorded before is not run again
    assert plain_loops.main(argv) == 0
    assert f"skip {label}: recorded before" in capsys.readouterr().err
