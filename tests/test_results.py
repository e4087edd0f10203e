"""Result files are typed records: written and read back field for field, older schemas read
through the chain of upgraders, a newer one refused in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.measure import results
from harness.measure.store import Store, failure_record
from harness.plan.cell import Cell
from harness.plan.spec import DataSpec, Hyper

SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "schemas"


def test_a_schema_1_file_reads_through_the_chain_as_this_schema():
    r = results.read(SCHEMAS / "schema-1.json")
    assert r.schema_version == results.SCHEMA_VERSION
    assert (r.cell.framework, r.cell.mode, r.cell.profile, r.cell.hyper.batch_size) == ("jax", "scan", "equal", 32)
    assert r.metrics.samples_per_epoch == 60_000 and r.metrics.steps_per_epoch == 1875
    assert len(r.metrics.steady_epoch_s) == 4 and r.data.source == "not recorded (schema 1)"
    assert r.env.contention is None and "schema 1" in r.env.migrated  # what it never recorded says so


def test_a_schema_2_file_reads_through_the_chain_as_this_schema():
    doc = json.loads((SCHEMAS / "schema-2.json").read_text())
    r = results.read(SCHEMAS / "schema-2.json")
    assert r.schema_version == results.SCHEMA_VERSION and doc["schema_version"] == 2
    assert r.cell.data.name == doc["cell"]["dataset"]["name"] and r.cell.profile == "native"
    assert r.cell.hyper.seed == doc["cell"]["seed"] and r.cell.trial == 0
    assert r.metrics.latency_b1_ms.p50 == doc["metrics"]["latency_b1_ms"]["p50"]
    assert isinstance(r.metrics.gpu_busy_s, results.NotAvailable)
    assert r.env.machine.id == "amd-epyc-2c" and r.env.round is None and r.metrics.split is None


def test_a_result_written_reads_back_the_same(tmp_path):
    cell = Cell("numpy", None, "logistic", "reference", DataSpec("tiny5x5"), Hyper(), trial=2, twin=True)
    record = failure_record(cell, "error", "why")
    Store(tmp_path).write(cell, record)
    back = Store(tmp_path).read(cell)
    assert back == record and back.cell.id == cell.id and "-t2-twin-" in cell.id


@pytest.mark.parametrize("doc,why", [
    ({"schema_version": results.SCHEMA_VERSION + 1}, "written by a newer fwcompare"),
    ({"schema_version": "2"}, "is not a result schema"),
    ([], "not a JSON object"),
])
def test_a_file_no_upgrader_can_read_is_one_line(doc, why):
    with pytest.raises(results.SchemaError, match=why):
        results.parse(doc)


def test_the_report_names_a_future_file_in_one_line_not_a_traceback(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    future = json.loads((SCHEMAS / "schema-2.json").read_text()) | {"schema_version": 99}
    (runs / "future.json").write_text(json.dumps(future))
    (runs / "old.json").write_text((SCHEMAS / "schema-2.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "harness.report", str(runs), "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "future.json" in line]
    assert "newer fwcompare (schema 99)" in line
