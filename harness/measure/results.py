"""A cell's result as a typed record: the child writes one, the report reads it; each field is
named here once. Files of older schemas are read through a chain of upgraders (1 -> 2 -> 3),
in one place, so a new field never needs the archives rewritten.

Dataclasses, not a schema library: the record must load in every framework's environment
(torch, TensorFlow and jax each pin their own dependencies), and the standard library is the
one thing they all share; the few checks a result needs (required fields, the status, the
version) are below.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from harness.plan.cell import Cell
from harness.plan.errors import HarnessError

SCHEMA_VERSION = 3
# How a cell ended. Only FINAL ones are kept by a rerun: an error, an out-of-memory or a
# killed process may go another way next time, so a plain rerun tries it again.
STATUSES = ("ok", "diverged", "oom", "killed", "error")
FINAL_STATUSES = ("ok", "diverged")


class SchemaError(HarnessError):
    """A file that is not a result this checkout can read; the message says why in one line."""


# ---------------------------------------------------------------- the record
@dataclass
class Spread:
    median: float
    iqr: float
    min: float
    max: float
    n: int


@dataclass
class NotAvailable:
    """A measurement this machine could not take, and why: never recorded as zero."""
    reason: str
    available: bool = False


@dataclass
class Latency:
    p50: float
    p99: float
    n: int


@dataclass
class TimeSplit:
    """Where a steady epoch's seconds go (harness.measure.split): input pipeline, overhead, arithmetic."""
    epoch_s: float  # the steady epoch split (median over steady epochs)
    input_s: float | None  # obtaining batches; None where the framework's loop is out of reach
    overhead_s: float | None  # steps x the shrunk model's seconds per step: framework and Python
    arithmetic_s: float | None  # the rest: arithmetic and memory traffic
    probe_step_s: float | None  # the shrunk model's seconds per step, its input time excluded
    probe_steps: int
    probe_params: int
    input_how: str  # what the input clock timed, or why it could not
    note: str = ""


@dataclass
class Metrics:
    samples_per_epoch: int | None
    steps_per_epoch: int | None
    first_epoch_s: float | None
    steady_epoch_s: list[float]
    epoch_s: Spread | None
    train_samples_per_s: Spread | None
    test_accuracy: float | None
    test_loss: float | None
    per_class_accuracy: list[float | None] | None
    infer_samples_per_s: Spread | None
    latency_b1_ms: Latency | None
    peak_rss_mb: float | None
    peak_device_mb: float | NotAvailable | None
    gpu_busy_s: Spread | NotAvailable | None
    gpu_utilization: float | NotAvailable | None
    energy_j_per_epoch: Spread | NotAvailable | None
    harness_overhead_s: Spread | None
    harness_overhead_fraction: float | None
    build_s: float | None = None
    val_accuracy: float | None = None
    profiled_epoch_s: float | NotAvailable | None = None
    split: TimeSplit | None = None


@dataclass
class ThreadEpoch:
    """One thread's share of an epoch (harness.measure.machine.thread_times): what it ran and how
    long it was ready to run but waited for a core."""
    tid: int
    name: str
    cpu_s: float
    wait_s: float
    migrations: int = 0


@dataclass
class Curves:
    epoch: list[int]
    train_loss: list[float | None]
    test_loss: list[float | None]
    test_accuracy: list[float | None]
    epoch_s: list[float]
    val_accuracy: list[float | None] = field(default_factory=list)
    gpu_busy_s: list[float | None] = field(default_factory=list)
    energy_j: list[float | None] = field(default_factory=list)
    step_loss: list[float | None] = field(default_factory=list)  # means of steps_per_point steps
    steps_per_point: int = 1
    profiled_epoch: int | None = None  # the CUPTI-traced epoch, left out of the timings
    input_s: list[float | None] = field(default_factory=list)  # each epoch's input-pipeline seconds
    loss_every: int = 1  # the impl's loop recorded every k-th step's loss (0: the epoch's mean)
    planted_s: list[float] = field(default_factory=list)  # the positive control's sleep in each epoch (in epoch_s)
    # each epoch's getrusage deltas (harness.measure.child.USAGE): where a slow epoch's time went
    epoch_user_s: list[float] = field(default_factory=list)
    epoch_sys_s: list[float] = field(default_factory=list)
    epoch_minflt: list[int] = field(default_factory=list)
    epoch_nvcsw: list[int] = field(default_factory=list)
    epoch_nivcsw: list[int] = field(default_factory=list)
    epoch_machine_busy_s: list[float] = field(default_factory=list)  # the whole machine's, over all cores
    epoch_machine_idle_s: list[float] = field(default_factory=list)
    epoch_machine_steal_s: list[float] = field(default_factory=list)
    epoch_run_wait_s: list[float] = field(default_factory=list)  # the threads' run-queue waits, summed
    epoch_migrations: list[int] = field(default_factory=list)  # the threads' moves between cores, summed
    epoch_threads: list[list[ThreadEpoch]] = field(default_factory=list)  # the busiest threads of each epoch
    epoch_gc_s: list[float] = field(default_factory=list)  # Python's garbage collector's seconds


@dataclass
class Data:
    name: str
    source: str | None
    sha256: str | None
    train: int | None
    val: int | None
    test: int | None


@dataclass
class Machine:
    id: str
    cpu: str
    cores: int
    gpus: list[str]
    driver: str | None
    cuda: str | None


@dataclass
class Contention:
    """What other processes took from the machine while the cell trained (harness.measure.machine)."""
    other_cores: float  # their CPU seconds per wall second
    steal_cores: float  # the hypervisor's steal time per wall second
    other_cpu_s: float
    own_cpu_s: float
    wall_s: float
    load_avg: list[float]  # 1, 5 and 15 minutes, at the end of training
    gpu_processes: list[str]  # other processes on the GPU
    threshold: float
    contended: bool


@dataclass
class Round:
    """Where a trial ran in the interleaving driver's schedule (harness.drive)."""
    drive: str  # the driver's run id
    number: int  # rounds start at 1
    position: int  # this cell's place in the round's shuffled order, from 1
    size: int  # cells in the round
    seed: int  # the seed of the round's shuffle
    margin: float | None = None  # the practical margin the driver declared before the run
    planned: int | None = None  # the rounds the budget held when this one ran; None: a count fixed in advance


@dataclass
class Env:
    python: str
    numpy: str
    cpu: str
    hostname: str
    platform: str
    commit: str
    dirty: bool
    timestamp: str
    machine: Machine
    framework_version: dict[str, str]
    keras_backend: str | None
    device_name: str | None
    settings: dict[str, Any]
    cpu_count: int | None = None
    source_sha256: str | None = None
    contention: Contention | None = None
    round: Round | None = None
    ray: dict[str, Any] | None = None  # the Ray node that ran it (--executor ray)
    migrated: str | None = None  # how an older file was upgraded, where that lost something


@dataclass
class Predictions:
    """A few test images with their labels and predictions (the report's digit grid)."""
    index: list[int]
    true: list[int]
    predicted: list[int]
    shape: list[int]
    images_b64: str


@dataclass
class Result:
    schema_version: int
    cell: Cell
    status: str
    message: str
    data: Data
    metrics: Metrics
    curves: Curves
    env: Env
    predictions: Predictions | None = None
    weights_file: str | None = None  # a logistic model's final weights, relative to the result's folder

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cell"] = {"id": self.cell.id, **out["cell"]}  # for a person reading the file
        return out


# ---------------------------------------------------------------- building records from JSON
def _build(kind: Any, value: Any, where: str) -> Any:
    """value (parsed JSON) as an instance of the annotated type `kind`; SchemaError naming `where`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if value is None:
        return None
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise SchemaError(f"{where} is not an object")
        hints = typing.get_type_hints(kind)
        fields = {f.name: f for f in dataclasses.fields(kind)}
        absent = [name for name, f in fields.items() if name not in value
                  and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if absent:
            raise SchemaError(f"missing {', '.join(f'{where}.{name}' for name in absent)}")
        return kind(**{name: _build(hints[name], value[name], f"{where}.{name}") for name in fields if name in value})
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        records = [o for o in options if dataclasses.is_dataclass(o)]
        plain = [o for o in options if o not in records and (typing.get_origin(o) is dict) == isinstance(value, dict)]
        for option in records if isinstance(value, dict) else []:  # the first record whose fields are all there
            try:
                return _build(option, value, where)
            except SchemaError:
                continue
        if plain:
            return _build(plain[0], value, where)
        raise SchemaError(f"{where} is none of {', '.join(getattr(o, '__name__', str(o)) for o in options)}")
    if origin in (list, tuple):
        items = [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        return {k: _build(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


# ---------------------------------------------------------------- older schemas
def _upgrade_1_to_2(doc: dict) -> dict:
    """Schema 1 recorded no data source or SHA-256, no machine, no profile and no steady epochs."""
    cell, metrics, env, curves = doc["cell"], doc["metrics"], doc["env"], doc["curves"]
    cell.setdefault("profile", "equal")
    cell.setdefault("data_sha256", "")
    doc["data"] = {"name": cell["dataset"]["name"], "source": "not recorded (schema 1)", "sha256": None,
                   "train": None, "val": None, "test": None}
    steady = [s for e, s in zip(curves["epoch"], curves["epoch_s"]) if e > 1]
    rate = (metrics.get("train_samples_per_s") or {}).get("median")
    samples = round(rate * (metrics.get("epoch_s") or {}).get("median", 0)) if rate else None
    metrics.setdefault("steady_epoch_s", steady)
    metrics.setdefault("samples_per_epoch", samples and samples // cell["batch_size"] * cell["batch_size"])
    metrics.setdefault("steps_per_epoch", samples and samples // cell["batch_size"])
    gpus = [env["device_name"]] if cell["device"] == "cuda" and env.get("device_name") else []
    env.setdefault("machine", {"id": "unknown (schema 1)", "cpu": env.get("cpu"), "cores": env.get("cpu_count"),
                               "gpus": gpus, "driver": None, "cuda": None})
    env.setdefault("migrated", "read from schema 1: no data source or SHA-256 was recorded; samples per epoch "
                               "are the median rate times the median epoch; the machine is unknown")
    return doc


def _upgrade_2_to_3(doc: dict) -> dict:
    """Schema 3's cell is harness.plan.cell.Cell as it is (trials, A/A twins); contention, the round
    and the time split were not recorded before."""
    flat = doc["cell"]
    doc["cell"] = {"framework": flat["framework"], "backend": flat["backend"], "model": flat["model"],
                   "mode": flat["mode"], "data": flat["dataset"], "hyper": flat["hyper"],
                   "precision": flat["precision"], "device": flat["device"], "threads": flat["threads"],
                   "recipe": flat.get("recipe"), "profile": flat.get("profile", "equal"),
                   "data_sha256": flat.get("data_sha256") or ""}
    return doc


UPGRADES = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}  # version -> the function that lifts it by one


def upgraded(doc: dict, upgrades: dict, current: int, what: str) -> dict:
    """A copy of doc brought from its schema_version to current, one upgrader a version (the one
    chain of every versioned file); SchemaError where a file lacks what its version had."""
    version, doc = doc["schema_version"], json.loads(json.dumps(doc))
    try:
        while doc["schema_version"] < current:
            doc = upgrades[doc["schema_version"]](doc)
            doc["schema_version"] += 1
    except (KeyError, TypeError, AttributeError) as exc:
        raise SchemaError(f"{what} {version} file lacks {exc}") from None
    return doc


def parse(doc: Any) -> Result:
    """A parsed result file as a Result of this schema, upgraded from an older one; SchemaError otherwise."""
    if not isinstance(doc, dict):
        raise SchemaError("not a JSON object")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise SchemaError(f"schema_version {version!r} is not a result schema")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"written by a newer fwcompare (schema {version}); this checkout reads schemas "
                          f"1-{SCHEMA_VERSION}: update it (git pull)")
    result = _build(Result, upgraded(doc, UPGRADES, SCHEMA_VERSION, "schema"), "result")
    if result.status not in STATUSES:
        raise SchemaError(f"status {result.status!r} is none of {', '.join(STATUSES)}")
    return result


def read(path: Path) -> Result:
    """The result file at path; SchemaError (one line) if it is not one this checkout can read."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SchemaError(f"cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise SchemaError(f"not JSON ({exc})") from None
    return parse(doc)


def build(kind: type, value: Any, where: str = "record") -> Any:
    """A record of `kind` from plain values (a dict the child assembled); SchemaError if incomplete."""
    return _build(kind, value, where)
