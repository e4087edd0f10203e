"""The report reads every file it can: a result whose values the later stages cannot use (a NaN,
zero or negative time, a string where a number goes, an accuracy outside [0, 1]) is named on
stderr in one line and skipped, and so is a second file of a cell already read; the report of
the rest is written. The good files are the CPU fixtures' MNIST cells (tests/test_report.py)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from harness.measure.results import parse
from harness.measure.store import Store
from harness.report import read
from harness.report.__main__ import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
GOOD = FIXTURES / "cpu" / "mnist"
GOOD_CELLS = len([p for p in GOOD.glob("*.json") if not p.name.startswith(".")])  # a hidden one is not read
TEMPLATE = GOOD / "torch-eager-s0.json"  # torch eager, seed 0, two steady epochs of 1.0 and 1.5 s


def spoiled(seed: int, change) -> dict:
    """The template at another seed (a cell of its own, pooled with the good torch eager rows), changed."""
    doc = json.loads(TEMPLATE.read_text())
    doc["cell"]["seed"] = doc["cell"]["hyper"]["seed"] = seed
    change(doc)
    return doc


def setter(*keys_and_value):
    *keys, value = keys_and_value

    def change(doc):
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value
    return change


# name: (what is changed, words of the one line that skips it)
BAD = {
    "steady-nan": (setter("metrics", "steady_epoch_s", [1.0, float("nan")]),
                   "metrics.steady_epoch_s[1] is nan, not a finite number"),
    "steady-negative": (setter("metrics", "steady_epoch_s", [-1.0, -1.5]),
                        "metrics.steady_epoch_s[0] is -1.0, not a number above zero"),
    "steady-zero": (setter("metrics", "steady_epoch_s", [0.0, 0.0]),
                    "metrics.steady_epoch_s[0] is 0.0, not a number above zero"),
    "steady-string": (setter("metrics", "steady_epoch_s", ["1.0", "1.5"]),
                      "metrics.steady_epoch_s[0] is str '1.0', not a number"),
    "accuracy-nan": (setter("metrics", "test_accuracy", float("nan")),
                     "metrics.test_accuracy is nan, not a finite number"),
    "accuracy-above-one": (setter("metrics", "test_accuracy", 90.0),
                           "metrics.test_accuracy is 90.0, not an accuracy in [0, 1]"),
    "accuracy-string": (setter("metrics", "test_accuracy", "0.9"),
                        "metrics.test_accuracy is str '0.9', not a number"),
    "samples-zero": (setter("metrics", "samples_per_epoch", 0),
                     "metrics.samples_per_epoch is 0, not a number above zero"),
    "inference-negative": (setter("metrics", "infer_samples_per_s", "median", -5.0),
                           "metrics.infer_samples_per_s.median is -5.0, not a number above zero"),
    "seed-string": (setter("cell", "hyper", "seed", "one"), "cell.hyper.seed is str 'one', not a number"),
    "curve-short": (setter("curves", "test_accuracy", [0.9]), "curves.test_accuracy has 1 values for 3 epochs"),
    "concurrent-text": (setter("env", "settings", {"concurrent_cells": "two"}),
                        "env.settings.concurrent_cells is 'two', not a count of cells"),
}


def bad_folder(tmp_path: Path, cases=BAD) -> tuple[Path, dict[str, Path]]:
    """The good MNIST fixtures and one file per bad case, each at a seed of its own."""
    folder = tmp_path / "results"
    shutil.copytree(GOOD, folder)
    paths = {}
    for seed, (name, (change, _)) in enumerate(cases.items(), start=10):
        paths[name] = folder / f"bad-{name}.json"
        paths[name].write_text(json.dumps(spoiled(seed, change)))
    return folder, paths


def report(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", BAD)
def test_each_bad_value_is_found_by_the_one_check(name):
    change, why = BAD[name]
    assert read.unusable(parse(spoiled(10, change))) == why
    assert read.unusable(parse(json.loads(TEMPLATE.read_text()))) is None


def test_every_good_fixture_is_usable():
    for folder in (FIXTURES / "cpu", FIXTURES / "gpu", FIXTURES.parent / "schemas"):
        for path, doc in Store(folder).documents():
            if path.name != "pytest_benchmark.json":
                assert read.unusable(parse(doc)) is None, path


def test_the_report_skips_each_bad_file_in_one_line_and_reports_the_rest(tmp_path):
    folder, paths = bad_folder(tmp_path)
    code, text, err = report(folder, "--out-dir", tmp_path / "out")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == len(BAD) and "Traceback" not in err, err
    for name, path in paths.items():
        (line,) = [line for line in lines if line.startswith(f"skipped {path}:")]
        assert line == f"skipped {path}: {BAD[name][1]}"
    assert f"wrote {tmp_path / 'out' / 'REPORT.md'}" in text
    cells = read.read_results([folder])
    assert len(cells) == GOOD_CELLS  # the good ones, every one of them


def test_two_files_of_one_cell_count_once_and_the_first_is_kept(tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(GOOD, folder)
    copies = [folder / "copy-a" / TEMPLATE.name, folder / "copy-b" / TEMPLATE.name]
    for copy in copies:
        copy.parent.mkdir()
        shutil.copy(TEMPLATE, copy)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        cells = read.read_results([folder])
    kept = sorted(folder.rglob(TEMPLATE.name))[0]  # path order: copy-a/, copy-b/, then the file itself
    assert err.getvalue() == (f"skipped {copies[1]}, {folder / TEMPLATE.name}: the same cell of amd-epyc-2c "
                              f"as {kept}, which is kept\n")
    assert kept == copies[0] and list(cells["file"]).count(str(kept)) == 1
    assert cells["id"].is_unique and len(cells) == GOOD_CELLS


def test_one_cell_on_two_machines_is_two_cells(tmp_path):
    folder = tmp_path / "results"
    for machine in ("box-a", "box-b"):
        doc = json.loads(TEMPLATE.read_text())
        doc["env"]["machine"]["id"] = machine
        (folder / machine).mkdir(parents=True)
        (folder / machine / TEMPLATE.name).write_text(json.dumps(doc))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        cells = read.read_results([folder])
    assert err.getvalue() == "" and sorted(cells["machine"]) == ["box-a", "box-b"]
