"""How far apart two frameworks' test accuracies may be at the same seed: the accuracy-parity bound.

The bound is the one for two independent runs: 3 standard deviations of a difference,
3 * sqrt(2) * sd, with sd the largest seed-to-seed standard deviation of any framework's test
accuracy, measured on CI's configuration (2 epochs, batch 32, Adam, seeds 0-4) by the archive's
seed-spread step (python -m harness.archive; harness.matrix's plan cpu-seed-spread).
`seed_spread(folder)` computes those sds from the archive; the constants below are its answer
written out, and tests/test_parity_constants.py checks that they still are. Same seed in
profile equal means the same initial weights and batch order, but float32 rounding differs
between frameworks and training can amplify it until two runs are as far apart as two seeds.
In profile native each framework draws its own init and order and uses its optimizer's own
defaults, so two frameworks at one seed are independent runs whose means may differ too.
"""
from __future__ import annotations

import math
from pathlib import Path

from harness.spec import HarnessError

# Measured at commit (filled in by the archive remake) on results/cpu-epyc-2c/seed-spread.
SEED_SD = {"logistic": 0.0012, "mlp": 0.0024, "cnn": 0.0025}
TOLERANCE = {model: 3 * math.sqrt(2) * sd for model, sd in SEED_SD.items()}

NATIVE_SEED_SD = {"logistic": 0.0018, "mlp": 0.0026, "cnn": 0.0061}
NATIVE_TOLERANCE = {model: 3 * math.sqrt(2) * sd for model, sd in NATIVE_SEED_SD.items()}
TOLERANCES = {"equal": TOLERANCE, "native": NATIVE_TOLERANCE}


def tolerance(model: str, profile: str) -> float:
    """The parity bound for a model in a profile; a HarnessError, never a silent skip, where no
    seed spread was measured for it."""
    try:
        return TOLERANCES[profile][model]
    except KeyError:
        raise HarnessError(f"no seed spread measured for model {model!r} in profile {profile!r}, so no parity "
                           "bound: measure it (seeds 0-4, 2 epochs) and add it to harness/parity.py") from None


def seed_spread(folder: Path) -> dict[str, dict[str, float]]:
    """{profile: {model: sd}} from an archive's seed-spread results: per model, the largest sample
    sd over seeds of any framework's (and Keras backend's) test accuracy, rounded up to 4 decimals."""
    from harness.results import Result
    from harness.store import Store

    accuracies: dict[tuple, list[float]] = {}
    for _, result in Store(folder).results():
        if isinstance(result, Result) and result.status == "ok" and result.metrics.test_accuracy is not None:
            c = result.cell
            accuracies.setdefault((c.profile, c.model, c.framework, c.backend, c.mode), []).append(
                result.metrics.test_accuracy)
    out: dict[str, dict[str, float]] = {}
    for (profile, model, *_), values in sorted(accuracies.items()):
        if len(values) < 2:
            continue
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        out.setdefault(profile, {})[model] = max(out.get(profile, {}).get(model, 0.0), math.ceil(sd * 1e4) / 1e4)
    return out
