"""The plain loops' side file (plain-loops.json) as typed, versioned records (harness.measure.loops):
a file from before the version was written reads as this version with every field, and writes
back unchanged; one of a newer version is refused in one line that says what to do."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.measure import loops
from harness.measure.results import Machine
from harness.measure.store import Store
from harness.plan.errors import HarnessError

ROOT = Path(__file__).resolve().parents[1]
ARCHIVED = ROOT / "results" / "cpu-epyc-2c" / "plain-loops" / loops.RESULT_FILE
CELL_ID = "mnist-mlp-keras-tensorflow-fit-jit-equal-b32-adam-e5-s0-t0-float32-cpu-d43ee20d6-5113eb27"
# A pair as the CPU archive's plain-loops.json holds it (version 1: no schema_version), copied verbatim.
V1_PAIR = {
    "label": "keras[tensorflow] fit-jit b32",
    "loop": {
        "command": "/work/main/.tox/test-keras/bin/python -m impls.plain.keras_mlp /root/.cache/fwcompare/mnist.npz "
                   "--mode fit-jit --batch-size 32 --epochs 5 --device cpu --seed 0 --limit 0",
        "environment": {"CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow", "MKL_NUM_THREADS": "2",
                        "OMP_NUM_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
                        "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "2"},
        "status": "ok",
        "result": {"framework": "keras", "backend": "tensorflow", "mode": "fit-jit", "batch_size": 32,
                   "device": "cpu", "epochs": 5, "limit": 0,
                   "epoch_s": [4.446121204004157, 3.412297139002476, 2.7055346929992083, 2.617424109004787,
                               1.9836345229996368],
                   "samples_per_epoch": 60000, "train_samples_per_s_median": 22550.03155762845,
                   "test_accuracy": 0.9752, "versions": {"keras": "3.15.1", "tensorflow": "2.21.0"}}},
    "suite": {"cell_id": CELL_ID, "profile": "equal", "mode": "fit-jit", "precision": "float32", "status": "ok",
              "message": "", "samples_per_epoch": 60000,
              "steady_epoch_s": [3.1975264870052342, 5.297873229996185, 3.2967072410028777, 2.9569138740043854],
              "train_samples_per_s_median": 18482.24133830669, "test_accuracy": 0.9797},
    "data": "/root/.cache/fwcompare/mnist.npz",
    "data_sha256": "43ee20d6be6d58b01e5870c940b93f16ff49bb02d88f64c29e7d994bee1dc69a",
    "machine": {"id": "amd-epyc-2c", "cpu": "AMD EPYC", "cores": 2, "gpus": [], "driver": None, "cuda": None},
    "seconds": 59.8,
    "timestamp": "2026-12-04T17:48:27Z"}
V1_FILE = {"about": "Plain reference-style loops ... (the archive's words)", "pairs": {CELL_ID: V1_PAIR}}


def test_a_version_1_pair_reads_as_this_version_with_every_field_typed():
    doc = copy.deepcopy(V1_FILE)
    read = loops.parse(doc)
    assert doc == V1_FILE  # the upgrade changes a copy
    assert (read.schema_version, read.about, list(read.pairs)) == (2, V1_FILE["about"], [CELL_ID])
    pair = read.pairs[CELL_ID]
    assert isinstance(pair.loop, loops.LoopRun) and isinstance(pair.suite, loops.SuiteSide)
    assert pair.machine == Machine("amd-epyc-2c", "AMD EPYC", 2, [], None, None)
    assert (pair.label, pair.loop.status, pair.loop.message, pair.loop.environment["KERAS_BACKEND"]) == \
        ("keras[tensorflow] fit-jit b32", "ok", None, "tensorflow")
    assert (pair.loop_rate, pair.loop.test_accuracy, pair.loop.result["versions"]["tensorflow"]) == \
        (22550.03155762845, 0.9752, "2.21.0")
    assert (pair.suite.cell_id, pair.suite.cell, pair.suite.precision, pair.suite_rate, pair.suite.test_accuracy,
            len(pair.suite.steady_epoch_s)) == (CELL_ID, "equal fit-jit", "float32", 18482.24133830669, 0.9797, 4)
    assert (pair.data_sha256[:9], pair.seconds, pair.timestamp, pair.done) == \
        ("43ee20d6b", 59.8, "2026-12-04T17:48:27Z", True)
    assert loops.pair_figures(pair) == ["equal fit-jit", "22,550", "18,482", "0.82", "0.9752", "0.9797"]


def test_a_version_1_file_writes_back_as_version_2_keeping_every_field():
    written = loops.parse(V1_FILE).to_dict()
    assert written == {"schema_version": 2, **V1_FILE}
    assert loops.parse(json.loads(json.dumps(written))) == loops.parse(V1_FILE)  # and reads again the same


def test_the_archived_side_file_reads_and_writes_back_unchanged():
    doc = json.loads(ARCHIVED.read_text())
    assert "schema_version" not in doc  # committed before the version was written
    read = loops.read(Store(ARCHIVED.parent))
    assert len(read.pairs) == len(doc["pairs"]) == 8
    assert read.to_dict() == {"schema_version": 2, **doc}


def test_a_pair_from_before_the_suite_profile_was_kept_reads_as_profile_equal():
    old = copy.deepcopy(V1_PAIR)
    for key in ("profile", "mode", "precision"):
        del old["suite"][key]
    suite = loops.parse({"about": "", "pairs": {CELL_ID: old}}).pairs[CELL_ID].suite
    assert (suite.profile, suite.mode, suite.precision, suite.cell) == ("equal", None, None, "equal")


def test_saving_a_pair_into_a_version_1_file_keeps_the_others_and_writes_version_2(tmp_path):
    (tmp_path / loops.RESULT_FILE).write_text(json.dumps(V1_FILE))
    store = Store(tmp_path)
    failed = loops.LoopRun("python -m impls.plain.x", {}, "error", "exit status 1: boom")
    new = loops.Pair("x eager b32", failed, loops.parse(V1_FILE).pairs[CELL_ID].suite, "mnist.npz", "abc",
                     Machine("here", "cpu", 2, [], None, None), 1.5, "now")
    loops.save(store, "another-cell", new)
    doc = json.loads((tmp_path / loops.RESULT_FILE).read_text())
    assert (doc["schema_version"], doc["about"], list(doc["pairs"])) == (2, loops.ABOUT, [CELL_ID, "another-cell"])
    assert doc["pairs"][CELL_ID] == V1_PAIR
    assert doc["pairs"]["another-cell"]["loop"] == {"command": "python -m impls.plain.x", "environment": {},
                                                     "status": "error", "message": "exit status 1: boom"}
    assert loops.read_pairs(store)["another-cell"] == new and not new.done


def test_no_file_yet_reads_as_no_pairs(tmp_path):
    assert loops.read(Store(tmp_path)) == loops.empty()
    assert loops.read_pairs(Store(tmp_path)) == {}


@pytest.mark.parametrize("doc, says", [
    ({"schema_version": 3, "about": "", "pairs": {}},
     "version 3, written by a newer fwcompare; this checkout reads versions 1-2: update it (git pull)"),
    ({"schema_version": "2", "pairs": {}}, "schema_version '2' is not a plain loops version"),
    ({"about": "", "pairs": {CELL_ID: {k: v for k, v in V1_PAIR.items() if k != "loop"}}},
     f"missing plain-loops.pairs.{CELL_ID}.loop"),
    ({"about": "", "pairs": {CELL_ID: {**V1_PAIR, "loop": {**V1_PAIR["loop"], "status": "fine"}}}},
     "loop status 'fine' is none of ok, error"),
    ([], "not a JSON object"),
])
def test_a_file_this_checkout_cannot_read_is_refused_in_one_line_naming_it(tmp_path, doc, says):
    (tmp_path / loops.RESULT_FILE).write_text(json.dumps(doc))
    with pytest.raises(HarnessError) as caught:
        loops.read(Store(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / loops.RESULT_FILE}: ") and says in message
    # and the runner, adding a pair, refuses it the same way rather than writing over it
    with pytest.raises(HarnessError, match="plain-loops.json: "):
        loops.save(Store(tmp_path), "x", loops.parse(V1_FILE).pairs[CELL_ID])
    assert json.loads((tmp_path / loops.RESULT_FILE).read_text()) == doc
