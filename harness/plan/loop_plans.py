"""The plain loops' plans and the figures they are meant to reproduce, as typed data.

python -m harness.run.plain_loops --plan NAME runs PLANS[NAME]: each loop (FRAMEWORK[BACKEND]:MODE:BATCH,
as harness.run.plain_loops parses it) beside its suite cell, on one device, for one number of
epochs. H100_REFERENCE holds the training samples/s that reference programs written outside the
suite reached on an H100, by loop label; the loops' table shows them beside a GPU run's figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Plan:
    """A named set of loops, on one device, each trained for the same number of epochs."""
    device: str
    epochs: int
    loops: tuple[str, ...]


PLANS: Mapping[str, Plan] = MappingProxyType({
    # The reference programs' figures, each beside its suite cell (the headline's recipe: 5 epochs).
    # Keras on torch comes last, as the slowest: a call cut short keeps the rest.
    "gpu": Plan("cuda", 5, ("torch:eager:32", "torch:graph:32", "jax:step:32", "jax:scan:32",
                            "keras[jax]:fit:32", "keras[jax]:fit-jit:32", "jax:scan:256", "torch:graph:256",
                            "torch:eager:256", "keras[torch]:fit:32")),
    # A smoke run of every CPU mode, a few minutes here; its figures are no evidence.
    "cpu": Plan("cpu", 2, ("torch:eager:32", "jax:step:32", "jax:scan:32", "keras:fit:32", "keras:fit-jit:32",
                           "torch:example:32", "jax:example:32", "keras:example:32")),
    # Each framework's own MNIST example (the MLP) beside the suite's native cell (the headline's recipe).
    "cpu-examples": Plan("cpu", 5, ("torch:example:32", "jax:example:32", "keras:example:32")),
    # The CPU archive's step (harness.plan.plans.PLAIN_LOOPS): every CPU loop at the headline's 5 epochs.
    "cpu-archive": Plan("cpu", 5, ("torch:eager:32", "jax:step:32", "jax:scan:32", "keras:fit:32", "keras:fit-jit:32",
                                   "torch:example:32", "jax:example:32", "keras:example:32")),
})


# How a loop is written, as the runner's one-line refusal of a malformed one shows it.
EXAMPLE_LOOPS = ("torch:eager:32", "keras[jax]:fit:32")


@dataclass(frozen=True)
class Reference:
    """Training samples/s that programs written outside the suite reached on one machine, by loop
    label (a Loop's label: 'jax scan b32', 'keras[jax] fit b32')."""
    machine: str
    samples_per_s: Mapping[str, int]

    def get(self, label: str) -> int | None:
        return self.samples_per_s.get(label)


# Training samples/s that reference programs written outside the suite reached on an H100:
# the figures the loops are meant to reproduce (shown only for GPU runs).
H100_REFERENCE = Reference("H100", MappingProxyType({
    "jax scan b32": 845_000, "jax step b32": 128_000, "keras[jax] fit-jit b32": 62_000,
    "keras[jax] fit b32": 25_000, "keras[torch] fit b32": 7_800, "jax scan b256": 4_300_000,
    "torch graph b256": 990_000, "torch eager b256": 200_000}))
