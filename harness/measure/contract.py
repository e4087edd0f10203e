"""The Impl contract: everything the harness asks of a framework module, and the base class
that checks a cell's settings once.

An impl is the class its framework's record names (harness/plan/frameworks.py: `impl="module:Class"`),
built with no arguments inside the cell's own process (harness.measure.child), which then calls, in
this order:

    impl.build(model, hyper, data, weights, device, mode, precision, profile)
    impl.samples_per_epoch                  how many samples one whole epoch trains
    impl.run_epochs(epochs, order_for, hooks)   the training, epoch by epoch (ImplBase's loop
                                            calls train_epoch; an impl whose framework owns
                                            the loop, Keras's one fit call, overrides it)
    impl.logits(x), impl.get_weights()      evaluation and the weights, outside every timer
    impl.settings()                         what the cell ran, its deviations included
    impl.input_clock.seconds                the last epoch's input-pipeline time (or None)

and, for the overhead probe (harness.measure.split), builds a second impl of the same class on
`harness.plan.spec.shrunk(model)` and calls train_epoch on a few steps of it.

What train_epoch(order) receives: `order` is the harness's batch order, shape (steps, batch).
- profile equal: row i is step i's batch (training-row indices): train exactly those rows,
  in that order, one optimizer step per row.
- profile native: only its length counts: the impl draws its own order, as its framework's
  users do. A whole epoch (len(order) == len(train) // batch) runs the framework's own loader
  to its end, its last partial batch included where the loader keeps it (samples_per_epoch
  says so); fewer steps stop the loader early (tests, the overhead probe).
It returns the losses its loop recorded, possibly still on the device (the harness converts
them outside the timer): every step's by default; an impl whose loop reads fewer (torch's
example reads one every 10 steps, Keras's fit keeps the epoch's mean) says so in
`loss_every` (k: steps 0, k, 2k, ...; 0: one value, the epoch's mean loss).

Deviations: settings()["deviations"] names how the cell's training departs from the code it
is measured against, at least the keys REQUIRED_DEVIATIONS gives for its profile (equal:
against the framework's native code; native: against the framework's own MNIST example).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np

from harness.measure.timing import timed
from harness.plan.errors import HarnessError
from harness.plan.frameworks import framework
from harness.plan.spec import DEVICES, Hyper, ModelSpec, check_precision

# The deviations every cell of a profile must declare (harness.measure.child records them; the
# fairness table shows them). "init" only where the harness's canonical weights were loaded.
REQUIRED_DEVIATIONS = {
    "equal": ("init", "data_path", "batch_order", "optimizer"),
    # native: how the cell gets MNIST against how the framework's own example gets it (a
    # download the machines here cannot make), whatever else departs from that example
    "native": ("data_source",),
}


def missing_deviations(profile: str, deviations: dict[str, str], canonical_init: bool) -> list[str]:
    """The required deviation keys that a cell's settings do not declare (with a text)."""
    required = [k for k in REQUIRED_DEVIATIONS[profile] if k != "init" or canonical_init]
    return [k for k in required if not (isinstance(deviations.get(k), str) and deviations[k])]


class InputClock:
    """Seconds a training loop spends obtaining its next batch: a loader's next(), a host-side
    gather, the copy to the device. Reset by run_epochs before each epoch.

    `how` says what is timed. An impl whose data live on the device (profile equal) keeps the
    default, which stays at zero; one whose loop the framework owns and cannot be reached
    says so with InputClock.out_of_reach(why), whose seconds are None.
    """

    def __init__(self, how: str = "the training set lives on the device: each step gathers its batch "
                                  "inside the step, so no time goes to obtaining batches"):
        self.how = how
        self.seconds: float | None = 0.0

    @classmethod
    def out_of_reach(cls, why: str) -> "InputClock":
        clock = cls(why)
        clock.seconds = None
        return clock

    def reset(self) -> None:
        if self.seconds is not None:
            self.seconds = 0.0

    def add(self, seconds: float) -> None:
        if self.seconds is not None:
            self.seconds += seconds

    def batches(self, iterable: Iterable) -> Iterator:
        """The iterable's items, each next() timed."""
        iterator = iter(iterable)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.add(time.perf_counter() - start)
                return
            self.add(time.perf_counter() - start)
            yield item

    @contextmanager
    def fetching(self) -> Iterator[None]:
        """Time the block as input work (a gather, a copy to the device)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(time.perf_counter() - start)


class EpochHooks(Protocol):
    """What run_epochs tells the harness around each epoch (harness.measure.child implements it)."""

    def begin(self, epoch: int) -> None:
        """Before the epoch's clock starts (a GPU cell starts tracing here)."""

    def end(self, epoch: int, seconds: float, losses: Any, input_s: float | None) -> bool:
        """After the clock stopped: the epoch's wall seconds between sync barriers, its losses and
        input time. The harness evaluates here, outside the clock; False: stop training (diverged)."""


class Impl(Protocol):
    """What every framework module implements; ImplBase gives the parts marked default."""
    framework: str  # the record's name
    samples_per_epoch: int  # after build: samples one whole epoch trains
    loss_every: int  # default 1; see the module docstring
    input_clock: InputClock  # default: resident data, zero seconds

    def build(self, model: ModelSpec, hyper: Hyper, data: Any, weights: dict[str, np.ndarray] | None,
              device: str, mode: str | None, precision: str = "float32", profile: str = "equal") -> None:
        """Build the model (sized by `model`'s widths) and its optimizer; in profile equal upload
        data.x_train/y_train to the device ONCE. weights: canonical initial weights, or None for
        the framework's own init. Call self.configure(...) first."""

    def train_epoch(self, order: np.ndarray) -> Any:
        """One epoch (or len(order) steps of one); the losses its loop recorded."""

    def run_epochs(self, epochs: int, order_for: Callable[[int], np.ndarray], hooks: EpochHooks) -> None:
        """Default: each epoch's order, hooks.begin, train_epoch timed between sync barriers, hooks.end."""

    def sync(self) -> None:
        """Block until all queued device work is done."""

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) float32 for NHWC images in [0, 1], in batches of spec.EVAL_BATCH."""

    def get_weights(self) -> dict[str, np.ndarray]:
        """Current parameters in canonical names and layouts (harness.plan.spec's docstring)."""

    def settings(self) -> dict[str, Any]:
        """Framework settings worth recording; must include "deviations" (REQUIRED_DEVIATIONS)."""

    # Optional, read with getattr by harness.measure.child:
    #   peak_device_memory_mb() -> float | None   the framework's allocator peak on a GPU
    #   device_name() -> str | None               the accelerator's name


class ImplBase:
    """What every impl shares: the settings checked once against its record, the default epoch
    loop, resident-data input timing and per-step losses."""
    framework: str
    loss_every = 1

    def configure(self, mode: str | None, precision: str, device: str, profile: str = "equal") -> None:
        """Check a cell's settings; sets self.mode, self.precision, self.device_kind and self.profile."""
        record = framework(self.framework)
        if device not in DEVICES:
            raise HarnessError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
        if profile not in record.profiles:
            raise HarnessError(f"{self.framework} has no profile {profile!r}; "
                               f"valid profiles: {', '.join(record.profiles)}")
        self.mode = record.check_mode(mode)
        if self.mode in record.gpu_only_modes and device == "cpu":
            cpu_modes = [m for m in record.modes if m not in record.gpu_only_modes]
            raise HarnessError(f"{self.framework} mode {self.mode!r} needs a CUDA GPU (--device cuda); "
                               f"on the CPU run mode {' or '.join(cpu_modes)}")
        self.precision = check_precision(precision, device, profile)
        self.device_kind, self.profile = device, profile
        if not hasattr(self, "input_clock"):
            self.input_clock = InputClock()

    def run_epochs(self, epochs: int, order_for: Callable[[int], np.ndarray], hooks: EpochHooks) -> None:
        """The harness's loop: one train_epoch per epoch, timed between sync barriers."""
        for epoch in range(1, epochs + 1):
            order = order_for(epoch)
            hooks.begin(epoch)
            self.input_clock.reset()
            seconds, losses = timed(lambda: self.train_epoch(order), self.sync)
            if not hooks.end(epoch, seconds, losses, self.input_clock.seconds):
                return
