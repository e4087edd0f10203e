"""A cell of the matrix: what one process trains and measures, and its result file's name.

A cell is (framework, Keras backend, model, mode, profile, batch size, seed, dataset and its
SHA-256, precision, device, threads, recipe, trial, whether it is a control: the A/A twin or the
planted slowdown, harness.analysis's negative and positive controls, and any environment variables
a noise experiment sets for its process). The
runners (harness.run, harness.drive) make them; the parent side (harness.run.launch) starts one
process per cell; that process (harness.measure.child) trains it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from harness.plan.spec import DataSpec, Hyper


@dataclasses.dataclass(frozen=True)
class Cell:
    framework: str
    backend: str | None  # Keras's backend; None for torch and jax
    model: str
    mode: str
    data: DataSpec
    hyper: Hyper
    precision: str = "float32"
    device: str = "cpu"
    threads: int = 0  # 0: every core
    recipe: str | None = None  # the seed recipe this cell belongs to (harness/plan/recipes.py)
    profile: str = "equal"  # equal (same weights, order and maths) or native (the users' code)
    data_sha256: str = ""  # SHA-256 of the dataset's arrays (harness.data.Raw.sha256)
    trial: int = 0  # one of several processes of the same configuration (timing spread)
    twin: bool = False  # the A/A copy of a configuration: the same code, counted apart (negative control)
    # The positive control: the configuration with every epoch made this many times longer (the
    # child sleeps the extra share of each epoch's own measured time inside its timer); 1: none.
    planted_slowdown: float = 1.0
    # Environment variables set for this cell's process beyond the protocol's own (harness.run.launch):
    # a noise experiment's variant, e.g. (("TF_NUM_INTEROP_THREADS", "1"),); recorded with the cell.
    env: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        """Readable name plus a hash of everything, so no two different cells share a file."""
        fields = self.asdict()
        if self.planted_slowdown == 1.0:  # a field added later: ids of the cells before it stay as they were
            del fields["planted_slowdown"]
        if not self.env:  # the same
            del fields["env"]
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        fw = f"{self.framework}-{self.backend}" if self.backend else self.framework
        h = self.hyper
        prefix = f"{self.recipe}-" if self.recipe else ""
        twin = "-twin" if self.twin else f"-planted{self.planted_slowdown:g}x" if self.planted_slowdown != 1 else ""
        twin += "-env" if self.env else ""
        return (f"{prefix}{self.data.name}-{self.model}-{fw}-{self.mode}-{self.profile}-b{h.batch_size}"
                f"-{h.optimizer}-e{h.epochs}-s{h.seed}-t{self.trial}{twin}-{self.precision}-{self.device}"
                f"-d{self.data_sha256[:8]}-{digest}")

    @property
    def label(self) -> str:
        """The id without its digest: what progress lines show."""
        return self.id.rsplit("-", 1)[0]

    @property
    def configuration(self) -> "Cell":
        """The cell with its seed and trial set aside: what trials and seeds are repetitions of."""
        return dataclasses.replace(self, trial=0, hyper=dataclasses.replace(self.hyper, seed=0))

    @property
    def control(self) -> str | None:
        """"twin" (negative control), "planted" (positive control) or None (a cell that competes)."""
        return "twin" if self.twin else "planted" if self.planted_slowdown != 1.0 else None

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fromdict(cls, d: dict) -> "Cell":
        """A cell from asdict()'s dict (an "id" key, as result files carry, is ignored)."""
        d = {k: v for k, v in d.items() if k != "id"}
        data = dict(d.pop("data"))
        data["classes"] = tuple(data.get("classes", ()))
        d["env"] = tuple(tuple(pair) for pair in d.get("env", ()))
        return cls(data=DataSpec(**data), hyper=Hyper(**d.pop("hyper")), **d)
