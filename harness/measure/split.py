"""Where a step's time goes: input pipeline, framework overhead and arithmetic, per cell.

- Input pipeline: the impl's InputClock times what its training loop spends obtaining the next
  batch (a DataLoader's next(), a host-side gather, the copy to the device); about zero where
  the training set lives on the device (profile equal), None where the framework's own loop
  cannot be reached (the impl says why).
- Overhead, by the framework-tax method (Fernandez et al., "The Framework Tax: Disparities
  Between Inference Efficiency in NLP Research and Deployment", 2023): in the same process,
  the same impl builds the same model with every width shrunk until its arithmetic is
  negligible (harness.plan.spec.shrunk), and trains it on batches of the same size. Its seconds
  per step, its own input time left out, are the floor that the framework and Python add to
  every step. Two runs of different lengths, each after a warm-up of its own shape, give the
  seconds per step as a slope, so that what a call costs once (a fit's set-up, a loader's
  first batch, a compiled scan's dispatch) cancels.
- Arithmetic (and memory traffic): the rest of the steady epoch.
On a GPU, CUPTI's kernel time per step (metrics.gpu_busy_s) is the cross-check of the last.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from harness.measure.protocol import batch_order
from harness.measure.timing import timed
from harness.plan.spec import shrunk

PROBE_STEPS = (50, 250)  # the two runs' lengths, cut to an epoch's steps where it has fewer


def probe_lengths(steps_per_epoch: int) -> tuple[int, int]:
    """The short and the long probe run's steps, within one epoch."""
    long = min(PROBE_STEPS[1], steps_per_epoch)
    return max(1, min(PROBE_STEPS[0], long // 5)), long


def probe(cell, model, hyper, ds, build) -> dict[str, Any]:
    """The shrunk model's seconds per step (its input time excluded), measured as a slope.

    build(spec) returns a built impl of the cell's framework, mode and profile for spec.
    """
    small = shrunk(model)
    impl = build(small)
    order = batch_order(len(ds.x_train), hyper.batch_size, hyper.seed, 0)
    short, long = probe_lengths(len(order))

    def run(steps: int) -> tuple[float, float | None]:
        impl.input_clock.reset()
        seconds, losses = timed(lambda: impl.train_epoch(order[:steps]), impl.sync)
        np.asarray(losses)  # losses still on the device are fetched outside the clock
        return seconds, impl.input_clock.seconds

    run(short), run(long)  # each shape once, to compile and warm up
    (t_short, in_short), (t_long, in_long) = run(short), run(long)
    reachable = in_short is not None and in_long is not None
    step_s = ((t_long - (in_long if reachable else 0)) - (t_short - (in_short if reachable else 0))) / (long - short) \
        if long > short else (t_long - (in_long or 0)) / long
    return {"probe_step_s": max(step_s, 0.0), "probe_steps": long, "probe_params": small.params,
            "input_reachable": reachable}


def split_epoch(epoch_s: float, input_s: float | None, steps: int, probe_step_s: float | None,
                input_reachable: bool = True) -> dict[str, Any]:
    """A steady epoch's seconds as input, overhead and arithmetic (the TimeSplit's numbers)."""
    if probe_step_s is None:
        return {"epoch_s": epoch_s, "input_s": input_s, "overhead_s": None, "arithmetic_s": None,
                "note": "no overhead probe"}
    overhead = steps * probe_step_s
    notes = []
    if input_s is None or not input_reachable:
        notes.append("the input pipeline could not be timed apart: overhead includes the probe's input time")
    rest = epoch_s - (input_s or 0.0) - overhead
    if rest < 0:
        notes.append(f"input and overhead exceeded the epoch by {-rest:.3g} s (noise): arithmetic set to 0")
    return {"epoch_s": epoch_s, "input_s": input_s, "overhead_s": overhead, "arithmetic_s": max(rest, 0.0),
            "note": "; ".join(notes)}


def time_split(cell, model, hyper, ds, build, steady: list[float], input_by_epoch: list[float | None],
               steps_per_epoch: int, input_how: str) -> dict[str, Any]:
    """The cell's TimeSplit record: the probe, then its median steady epoch split."""
    measured = probe(cell, model, hyper, ds, build)
    steady_inputs = [s for s in input_by_epoch if s is not None]
    input_s = float(np.median(steady_inputs)) if steady_inputs and len(steady_inputs) == len(input_by_epoch) else None
    parts = split_epoch(float(np.median(steady)), input_s, steps_per_epoch, measured["probe_step_s"],
                        measured["input_reachable"])
    return {**parts, "probe_step_s": measured["probe_step_s"], "probe_steps": measured["probe_steps"],
            "probe_params": measured["probe_params"], "input_how": input_how}


def shares(split: Any) -> dict[str, float] | None:
    """Each part's share of the split epoch (a TimeSplit or its dict), or None without a probe."""
    d = dataclasses.asdict(split) if dataclasses.is_dataclass(split) else split
    if d.get("overhead_s") is None or not d.get("epoch_s"):
        return None
    parts = {"input": d.get("input_s") or 0.0, "overhead": d["overhead_s"], "arithmetic": d["arithmetic_s"]}
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()} if total else None
