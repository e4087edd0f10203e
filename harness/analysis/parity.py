"""How far apart two frameworks' test accuracies may be at the same seed: the accuracy-parity bound.

Profile equal: same seed means the same initial weights and batch order, but float32 rounding
differs between frameworks and training can amplify it until two runs are as far apart as two
seeds. So the bound is the one for two independent runs, 3 standard deviations of a
difference, 3 * sqrt(2) * sd, with sd the largest seed-to-seed standard deviation of any
framework's test accuracy. Profile native: each framework draws its own init and order and
uses its own optimizer defaults and pipeline (torch's example does not even shuffle on a CPU),
so their means differ as well; its bound adds the largest gap between two frameworks' mean
accuracies to the same 3 * sqrt(2) * sd.

Both are measured on CI's configuration (2 epochs, batch 32, Adam, seeds 0-4) by the CPU
archive's seed-spread step (python -m harness.archive; harness.plan.matrix's plan cpu-seed-spread).
`seed_spread(folder)` computes them from the archive; the constants below are its answer
written out, and tests/test_parity_constants.py checks that they still are, and that they
cover every committed CPU archive's spread: torch's float32 results at one seed end a few test
digits apart on an AMD and an Intel processor (jax's and TensorFlow's do not), and CI runs on either.
"""
from __future__ import annotations

import math
from pathlib import Path

from harness.measure.results import Result
from harness.measure.store import Store
from harness.plan.errors import HarnessError

# seed_spread(results/cpu-xeon-2c/seed-spread): the largest seed-to-seed sd per model, and in
# profile native the largest gap between two frameworks' means.
SEED_SD = {"logistic": 0.0013, "mlp": 0.0025, "cnn": 0.0026}
NATIVE_SEED_SD = {"logistic": 0.0009, "mlp": 0.0068, "cnn": 0.0061}
NATIVE_MEAN_GAP = {"logistic": 0.0304, "mlp": 0.0116, "cnn": 0.0011}
TOLERANCE = {model: 3 * math.sqrt(2) * sd for model, sd in SEED_SD.items()}
NATIVE_TOLERANCE = {model: 3 * math.sqrt(2) * sd + NATIVE_MEAN_GAP[model] for model, sd in NATIVE_SEED_SD.items()}
TOLERANCES = {"equal": TOLERANCE, "native": NATIVE_TOLERANCE}


def tolerance(model: str, profile: str) -> float:
    """The parity bound for a model in a profile; a HarnessError, never a silent skip, where no
    seed spread was measured for it."""
    try:
        return TOLERANCES[profile][model]
    except KeyError:
        raise HarnessError(f"no seed spread measured for model {model!r} in profile {profile!r}, so no parity "
                           "bound: measure it (seeds 0-4, 2 epochs) and add it to harness/analysis/parity.py") from None


def seed_spread(folder: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{profile: {model: {"sd": ..., "mean_gap": ...}}} from an archive's seed-spread results: the
    largest sample sd over seeds of any framework's (and Keras backend's) test accuracy, and the
    largest gap between two frameworks' mean accuracies, each rounded up to 4 decimals."""

    def up(value: float) -> float:
        return math.ceil(round(value * 1e4, 6)) / 1e4

    accuracies: dict[tuple, list[float]] = {}
    for _, result in Store(folder).results():
        if isinstance(result, Result) and result.status == "ok" and result.metrics.test_accuracy is not None:
            c = result.cell
            accuracies.setdefault((c.profile, c.model, c.framework, c.backend, c.mode), []).append(
                result.metrics.test_accuracy)
    by_model: dict[tuple, list[tuple[float, float]]] = {}
    for (profile, model, *_), values in accuracies.items():
        if len(values) >= 2:
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            by_model.setdefault((profile, model), []).append((mean, sd))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (profile, model), stats in sorted(by_model.items()):
        means = [m for m, _ in stats]
        out.setdefault(profile, {})[model] = {"sd": up(max(sd for _, sd in stats)),
                                              "mean_gap": up(max(means) - min(means))}
    return out
