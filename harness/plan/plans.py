"""Plans: cells named by their axes, as typed data. A Selection is one matrix (what one
`python -m harness.run` command line selects); a plan is a named tuple of them, run in order into
one folder. harness.plan.matrix turns either into checked cells.

The archives' layout lives here too: which plan fills which folder of a machine's archive
(harness.archive runs them; the report's README section reads them back).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    """One matrix, by its axes. An axis left None takes its default (harness.run --help says
    which); a recipe sets the data, models and optimizer itself."""
    framework: tuple[str, ...] | None = None
    backend: tuple[str, ...] | None = None
    mode: tuple[str, ...] | None = None
    model: tuple[str, ...] | None = None
    profile: tuple[str, ...] | None = None
    batch_size: tuple[int, ...] | None = None
    seed: tuple[int, ...] | None = None
    precision: tuple[str, ...] | None = None
    device: tuple[str, ...] | None = None
    dataset: tuple[str, ...] | None = None
    epochs: int | None = None
    recipe: str | None = None
    init: str | None = None
    optimizer: str | None = None
    lr: float | None = None
    eps: float | None = None

    def given(self) -> set[str]:
        """The axes this selection sets itself."""
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


# The main job (python -m harness.drive with no option that chooses cells): seed 002's MLP in each
# framework's idiomatic mode, both profiles, 3 epochs (a compiling first and two steady ones): rounds
# short enough that a 2-core machine decides its verdicts in about half an hour.
MAIN_JOB = Selection(model=("mlp",), epochs=3)
SWEEP_BATCHES = (32, 128, 256, 512, 2048, 8192)  # 256: a second common batch beside seed 002's 32
# Named sets of matrices, run in this order into one --out folder (the first matters most,
# so that a run cut short keeps it).
PLANS: dict[str, tuple[Selection, ...]] = {
    # The GPU run: every framework's idiomatic mode in both profiles, three seeds of the MLP's
    # headline modes, the fast paths, TF32 and bf16 for the plain and best modes, then
    # throughput against batch size. Keras on TensorFlow runs where TensorFlow is installed,
    # and is skipped elsewhere.
    "gpu": (
        Selection(framework=("torch", "jax", "keras"), backend=("jax", "torch", "tensorflow"),
                  profile=("equal", "native"), device=("cuda",)),
        Selection(framework=("torch",), mode=("eager", "cudagraph"), model=("mlp",), seed=(0, 1, 2), device=("cuda",)),
        Selection(framework=("jax",), mode=("step", "scan"), model=("mlp",), seed=(0, 1, 2), device=("cuda",)),
        Selection(framework=("keras",), backend=("jax",), mode=("fit", "fit-jit"), model=("mlp",), seed=(0, 1, 2),
                  device=("cuda",)),
        Selection(framework=("torch",), mode=("compile", "cudagraph"), device=("cuda",)),
        Selection(framework=("torch",), mode=("compile",), profile=("native",), device=("cuda",)),
        Selection(framework=("jax",), mode=("scan",), device=("cuda",)),
        Selection(framework=("keras",), backend=("jax", "tensorflow"), mode=("fit-jit",), profile=("equal", "native"),
                  device=("cuda",)),
        Selection(framework=("keras",), backend=("torch",), mode=("fit-jit",), model=("mlp",), device=("cuda",)),
        Selection(framework=("torch",), mode=("eager", "cudagraph"), model=("mlp", "cnn"), precision=("tf32", "bf16"),
                  device=("cuda",)),
        Selection(framework=("jax",), mode=("step", "scan"), model=("mlp", "cnn"), precision=("tf32", "bf16"),
                  device=("cuda",)),
        Selection(framework=("keras",), backend=("jax",), mode=("fit-jit",), model=("mlp", "cnn"),
                  precision=("tf32", "bf16"), device=("cuda",)),
        Selection(framework=("torch",), mode=("eager", "cudagraph"), model=("mlp",), batch_size=SWEEP_BATCHES,
                  device=("cuda",)),
        Selection(framework=("jax",), mode=("step", "scan"), model=("mlp",), batch_size=SWEEP_BATCHES,
                  device=("cuda",)),
        Selection(framework=("keras",), backend=("jax",), mode=("fit", "fit-jit"), model=("mlp",),
                  batch_size=SWEEP_BATCHES, device=("cuda",)),
    ),
    # The CPU archive (results/cpu-xeon-2c/matrix): every model in every framework, mode and Keras
    # backend, both profiles, seed 002's recipe (batch 32, 5 epochs). Through harness.drive, whose
    # A/A twin is the plan's first cell: torch eager's MLP, the main job's twin too.
    "cpu-archive": (
        Selection(framework=("torch",), mode=("eager",), model=("mlp",), profile=("equal",)),
        Selection(framework=("torch", "jax", "keras"), backend=("tensorflow", "jax", "torch"),
                  mode=("eager", "compile", "step", "scan", "fit", "fit-jit"), profile=("equal", "native")),
    ),
    # The batch-size crossover on the CPU: the MLP in each framework's fastest CPU modes, profile
    # equal, batch 32 to 8192, 5 epochs (batch 32 is the archive matrix's own cell): samples/s and the
    # overhead's share against batch size.
    "cpu-crossover": (
        Selection(framework=("torch", "jax", "keras"), backend=("tensorflow", "jax"),
                  mode=("eager", "scan", "fit-jit"), model=("mlp",), profile=("equal",),
                  batch_size=(32, 128, 512, 2048, 8192)),
    ),
    # The seed spread the parity tolerances come from (harness/analysis/parity.py): CI's configuration,
    # 2 epochs, each framework's idiomatic mode in both profiles; the driver's rounds give the seeds.
    "cpu-seed-spread": (
        Selection(framework=("torch", "jax", "keras"), backend=("tensorflow",), profile=("equal", "native"), epochs=2),
    ),
    # The seeds' recipes (harness/plan/recipes.py) on the CPU, profile equal, seed 0: their accuracies
    # beside the figures the seeds published (mnist-study for 1 of its 100 epochs; vanangamudi
    # from the canonical and from each framework's native initial weights too).
    "cpu-recipes": (
        Selection(profile=("equal",), recipe="vanangamudi"),
        Selection(profile=("equal",), recipe="vanangamudi", init="native"),
        Selection(profile=("equal",), epochs=1, recipe="mnist-study"),
        Selection(profile=("equal",), recipe="force-of-mlp"),
        Selection(profile=("equal",), recipe="three-vs-seven"),
        Selection(profile=("equal",), recipe="small-subset"),
    ),
    # What fits in ten minutes of an H100 (15 cells took 344 s, most of it process start-up
    # and compilation): the MLP in every Keras-on-jax, torch and jax mode, then the fastest
    # modes on the other models and in TF32 and bf16.
    # The noise plan: the main job's configurations, each in at least NOISE_ROUNDS processes of their
    # own, interleaved, for the spread between processes and between epochs (harness.analysis.noise).
    "noise": (MAIN_JOB,),
    "gpu-quick": (
        Selection(framework=("torch",), mode=("cudagraph", "compile"), model=("mlp",), device=("cuda",)),
        Selection(framework=("jax",), mode=("scan",), model=("mlp",), device=("cuda",)),
        Selection(framework=("keras",), backend=("jax",), mode=("fit-jit",), model=("mlp",), device=("cuda",)),
        Selection(framework=("torch", "jax", "keras"), backend=("jax",), model=("mlp",), device=("cuda",)),
        Selection(framework=("torch",), mode=("cudagraph",), model=("logistic", "cnn"), device=("cuda",)),
        Selection(framework=("jax",), mode=("scan",), model=("logistic", "cnn"), device=("cuda",)),
        Selection(framework=("torch",), mode=("cudagraph",), model=("mlp",), precision=("bf16", "tf32"),
                  device=("cuda",)),
        Selection(framework=("jax",), mode=("scan",), model=("mlp",), precision=("bf16", "tf32"), device=("cuda",)),
    ),
}

NOISE_ROUNDS = 8
# Plans that ask the driver for a fixed number of rounds (--rounds) rather than rounds until decided.
FIXED_ROUNDS = {"noise": NOISE_ROUNDS}

# A machine's archive: name -> the driver's steps, [(folder, plan, harness.drive options)] before
# the plain loops and after them.
LOOPS, SEED_SPREAD = "plain-loops", "seed-spread"  # two steps' folders (the README's section reads them)
ARCHIVES = {
    "cpu": ([("matrix", "cpu-archive", ["--rounds", "4", "--min-uncontended", "4"])],
            [(SEED_SPREAD, "cpu-seed-spread", ["--rounds", "5", "--no-controls"]),
             ("recipes", "cpu-recipes", ["--rounds", "1", "--no-controls"])]),
}
PLAIN_LOOPS = {"cpu": ["--plan", "cpu-archive"]}  # harness.run.plain_loops' options (harness.plan.loop_plans)
# The folders the archive's report reads (the seed spread feeds harness.analysis.parity instead).
REPORTED = ("matrix", "recipes")
