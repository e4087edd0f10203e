"""The plain loops' side file (plain-loops.json) as typed, versioned records, and how a pair
reads as a row.

harness.run.plain_loops runs each plain loop (impls/plain/, no harness) beside its suite cell and
adds one Pair per suite cell to <out>/plain-loops.json; the report's README section reads the
same file. Every field is named here once. A file written before the side file had a version
(no schema_version) is version 1 and is lifted to this one on read, in one place (parse), as
harness.measure.results does for a cell's result; reading and writing go through the folder's
Store, one writer at a time.

The rows (pair_figures, table) live beside the record, not in harness.report: the runner (stage
run) prints the same table that the README's section (stage report) shows, and this stage is
one both of them may import.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

from harness.measure.results import FINAL_STATUSES, STATUSES, Machine, SchemaError, build, upgraded
from harness.measure.store import Store
from harness.plan.cell import Cell
from harness.plan.loop_plans import H100_REFERENCE

RESULT_FILE = "plain-loops.json"
SCHEMA_VERSION = 2
LOOP_STATUSES = ("ok", "error")  # the loop printed its JSON line, or why not
ABOUT = ("Plain reference-style loops (impls/plain/, no harness) beside the suite's matching cells "
         "(profile equal at float32; a framework's example loop beside profile native at its default "
         "precision: suite.profile, suite.mode, suite.precision), each pair run in one call of "
         "python -m harness.run.plain_loops; pairs keyed by the suite cell's id; samples/s are medians "
         "over the epochs after the first.")


# ---------------------------------------------------------------- the records
@dataclass(frozen=True)
class LoopRun:
    """The loop's side of a pair: how its process was started, and its JSON line (result) or why none
    (message). result is the loop program's own line (impls/plain/: framework, mode, batch_size,
    epoch_s, train_samples_per_s_median, test_accuracy, versions, ...), kept as it printed it."""
    command: str
    environment: dict[str, str]  # what the cell's environment set differently from the runner's own
    status: str
    message: str | None = None
    result: dict[str, Any] | None = None

    @property
    def samples_per_s(self) -> float | None:
        return (self.result or {}).get("train_samples_per_s_median")

    @property
    def test_accuracy(self) -> float | None:
        return (self.result or {}).get("test_accuracy")

    def to_dict(self) -> dict[str, Any]:
        """As run_loop has always written it: no message when ok, no result when not."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in ("message", "result")}


@dataclass(frozen=True)
class SuiteSide:
    """What the suite's result says about the loop's cell; which cell it is first."""
    cell_id: str
    profile: str
    mode: str | None  # None in records from before the mode was kept
    precision: str | None  # likewise
    status: str
    message: str
    samples_per_epoch: int | None
    steady_epoch_s: list[float] | None
    train_samples_per_s_median: float | None
    test_accuracy: float | None

    @property
    def cell(self) -> str:
        """'native eager': the profile and mode the suite cell ran."""
        return suite_cell(self.profile, self.mode)


@dataclass(frozen=True)
class Pair:
    """One loop beside its suite cell, both run in one call of the runner."""
    label: str  # the loop's: 'keras[jax] fit-jit b32'
    loop: LoopRun
    suite: SuiteSide
    data: str  # the .npz the loop read
    data_sha256: str
    machine: Machine
    seconds: float  # the loop and the cell, together
    timestamp: str

    @property
    def loop_rate(self) -> float | None:
        return self.loop.samples_per_s

    @property
    def suite_rate(self) -> float | None:
        return self.suite.train_samples_per_s_median

    @property
    def done(self) -> bool:
        """The loop printed its figures and the suite cell ended ok or diverged."""
        return self.loop.status == "ok" and self.suite.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "loop": self.loop.to_dict()}


@dataclass(frozen=True)
class LoopsFile:
    """The side file: its version, what it holds, and the pairs by suite cell id."""
    schema_version: int
    about: str
    pairs: dict[str, Pair]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "about": self.about,
                "pairs": {cell_id: pair.to_dict() for cell_id, pair in self.pairs.items()}}


def empty() -> LoopsFile:
    return LoopsFile(SCHEMA_VERSION, ABOUT, {})


# ---------------------------------------------------------------- older versions
def _upgrade_1_to_2(doc: dict) -> dict:
    """Version 1 had no schema_version; its earliest pairs kept no suite profile, mode or precision
    (their cells were all profile equal)."""
    for pair in doc["pairs"].values():
        suite = pair["suite"]
        suite.setdefault("profile", "equal")
        suite.setdefault("mode", None)
        suite.setdefault("precision", None)
    return doc


UPGRADES = {1: _upgrade_1_to_2}  # version -> the function that lifts it by one


def parse(doc: Any) -> LoopsFile:
    """A parsed plain-loops.json as this version's LoopsFile ({} reads as none yet); SchemaError otherwise."""
    if not isinstance(doc, dict):
        raise SchemaError("not a JSON object")
    if not doc:
        return empty()
    version = doc.get("schema_version", 1)  # files from before the version was written are version 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaError(f"schema_version {version!r} is not a plain loops version")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"version {version}, written by a newer fwcompare; this checkout reads versions "
                          f"1-{SCHEMA_VERSION}: update it (git pull), or give the runner another --out")
    doc = upgraded({**doc, "schema_version": version}, UPGRADES, SCHEMA_VERSION, "version")
    loops = build(LoopsFile, doc, "plain-loops")
    for cell_id, pair in loops.pairs.items():
        if pair.loop.status not in LOOP_STATUSES:
            raise SchemaError(f"pair {cell_id}: loop status {pair.loop.status!r} is none of {', '.join(LOOP_STATUSES)}")
        if pair.suite.status not in STATUSES:
            raise SchemaError(f"pair {cell_id}: suite status {pair.suite.status!r} is none of {', '.join(STATUSES)}")
    return loops


def _parse_in(store: Store, doc: Any) -> LoopsFile:
    try:
        return parse(doc)
    except SchemaError as exc:
        raise SchemaError(f"{store.root / RESULT_FILE}: {exc}") from None


def read(store: Store) -> LoopsFile:
    """The folder's plain-loops.json (none yet: no pairs); SchemaError, naming the file, if unreadable."""
    try:
        doc = store.read_json(RESULT_FILE)
    except ValueError as exc:
        raise SchemaError(f"{store.root / RESULT_FILE}: not JSON ({exc})") from None
    return _parse_in(store, doc)


def read_pairs(store: Store) -> dict[str, Pair]:
    """The pairs recorded in the folder's plain-loops.json, by suite cell id."""
    return read(store).pairs


def save(store: Store, cell_id: str, pair: Pair) -> LoopsFile:
    """Add one pair to the folder's plain-loops.json, keeping the others (another call may be adding
    its own); the file is written at this version."""
    def update(old: dict) -> dict:
        return LoopsFile(SCHEMA_VERSION, ABOUT, {**_parse_in(store, old).pairs, cell_id: pair}).to_dict()

    return parse(store.update_json(RESULT_FILE, update))


# ---------------------------------------------------------------- a pair as a row
def suite_cell(profile: str | None, mode: str | None) -> str:
    """'native eager': the profile and mode a suite cell ran."""
    return f"{profile or 'equal'} {mode or ''}".strip()


def number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def pair_figures(pair: Pair) -> list[str]:
    """A pair's suite cell, loop and suite samples/s, suite/loop, loop and suite accuracy, as text
    (the runner's table and the README's section show the same)."""
    loop_rate, suite_rate = pair.loop_rate, pair.suite_rate
    return [pair.suite.cell, number(loop_rate), number(suite_rate),
            number(suite_rate / loop_rate if loop_rate and suite_rate else None, 2),
            number(pair.loop.test_accuracy, 4), number(pair.suite.test_accuracy, 4)]


def table(rows: Iterable[tuple[str, Cell]], pairs: dict[str, Pair], ran: set[str], skipped: dict[str, str],
          on_gpu: bool) -> str:
    """Markdown: per (loop label, suite cell), the suite cell's profile and mode, the loop's samples/s and
    the suite's, suite/loop, both accuracies (and the reference, on a GPU). ran: the cell ids run in this
    call (the others' pairs are an earlier call's); skipped: why a loop was not run, by label."""
    head = ["loop", "suite cell", "loop samples/s", "suite samples/s", "suite/loop", "loop acc", "suite acc"]
    head += [f"reference ({H100_REFERENCE.machine})"] if on_gpu else []
    lines = [head, ["---"] * len(head)]
    for label, cell in rows:
        pair = pairs.get(cell.id)
        if pair is None:
            lines.append([label, suite_cell(cell.profile, cell.mode), skipped.get(label, "not run"),
                          *[""] * (len(head) - 3)])
            continue
        text = label if cell.id in ran else f"{label} (an earlier call)"
        if pair.loop.status != "ok":
            text += f" — loop failed: {(pair.loop.message or '')[:80]}"
        row = [text, *pair_figures(pair)]
        lines.append(row + ([number(H100_REFERENCE.get(label))] if on_gpu else []))
    return "\n".join("| " + " | ".join(row) + " |" for row in lines)
