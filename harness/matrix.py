"""The matrix: the cells a command line selects (each checked before anything trains), and the
named plans, each a list of such command lines run in order into one folder."""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import sys

from harness.cell import Cell
from harness.options import DEFAULT_PROFILES, check_choice
from harness.spec import (DEVICES, GPU_ONLY_PRECISIONS, MODELS, PRECISIONS, PROFILES, RECIPE_MODELS, DataSpec,
                          HarnessError, Hyper, check_precision)
from impls.records import default_frameworks, framework, frameworks

SWEEP_BATCHES = "32 128 256 512 2048 8192"  # 256: a second common batch beside seed 002's 32
# Named sets of matrices, run in this order into one --out folder (the first matters most,
# so that a run cut short keeps it). Each line is a harness.run command line.
PLANS: dict[str, tuple[str, ...]] = {
    # The GPU run: every framework's idiomatic mode in both profiles, three seeds of the MLP's
    # headline modes, the fast paths, TF32 and bf16 for the plain and best modes, then
    # throughput against batch size. Keras on TensorFlow runs where TensorFlow is installed,
    # and is skipped elsewhere.
    "gpu": (
        "--framework torch jax keras --backend jax torch tensorflow --device cuda --profile equal native",
        "--framework torch --mode eager cudagraph --model mlp --seed 0 1 2 --device cuda",
        "--framework jax --mode step scan --model mlp --seed 0 1 2 --device cuda",
        "--framework keras --backend jax --mode fit fit-jit --model mlp --seed 0 1 2 --device cuda",
        "--framework torch --mode compile cudagraph --device cuda",
        "--framework torch --mode compile --device cuda --profile native",
        "--framework jax --mode scan --device cuda",
        "--framework keras --backend jax tensorflow --mode fit-jit --device cuda --profile equal native",
        "--framework keras --backend torch --mode fit-jit --model mlp --device cuda",
        "--framework torch --mode eager cudagraph --model mlp cnn --precision tf32 bf16 --device cuda",
        "--framework jax --mode step scan --model mlp cnn --precision tf32 bf16 --device cuda",
        "--framework keras --backend jax --mode fit-jit --model mlp cnn --precision tf32 bf16 --device cuda",
        f"--framework torch --mode eager cudagraph --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
        f"--framework jax --mode step scan --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
        f"--framework keras --backend jax --mode fit fit-jit --model mlp --batch-size {SWEEP_BATCHES} --device cuda",
    ),
    # The CPU archive (results/cpu-epyc-2c/matrix): every model in every framework, mode and Keras
    # backend, both profiles, seed 002's recipe (batch 32, 5 epochs). Through harness.drive, whose
    # A/A twin is the plan's first cell: torch eager's MLP, the main job's twin too.
    "cpu-archive": (
        "--framework torch --mode eager --model mlp --profile equal",
        "--framework torch jax keras --backend tensorflow jax torch --mode eager compile step scan fit fit-jit "
        "--profile equal native",
    ),
    # The batch-size crossover on the CPU: the MLP in each framework's fastest CPU modes, profile
    # equal, batch 32 to 8192, 5 epochs (batch 32 is the archive matrix's own cell): samples/s and the
    # overhead's share against batch size.
    "cpu-crossover": (
        "--framework torch jax keras --backend tensorflow jax --mode eager scan fit-jit --model mlp --profile equal "
        "--batch-size 32 128 512 2048 8192",
    ),
    # The seed spread the parity tolerances come from (harness/parity.py): CI's configuration,
    # 2 epochs, each framework's idiomatic mode in both profiles; the driver's rounds give the seeds.
    "cpu-seed-spread": (
        "--framework torch jax keras --backend tensorflow --profile equal native --epochs 2",
    ),
    # The seeds' recipes (harness/recipes.py) on the CPU, profile equal, seed 0: their accuracies
    # beside the figures the seeds published (mnist-study for 1 of its 100 epochs; vanangamudi
    # from the canonical and from each framework's native initial weights too).
    "cpu-recipes": (
        "--recipe vanangamudi --profile equal",
        "--recipe vanangamudi --profile equal --init native",
        "--recipe mnist-study --profile equal --epochs 1",
        "--recipe force-of-mlp --profile equal",
        "--recipe three-vs-seven --profile equal",
        "--recipe small-subset --profile equal",
    ),
    # What fits in ten minutes of an H100 (15 cells took 344 s, most of it process start-up
    # and compilation): the MLP in every Keras-on-jax, torch and jax mode, then the fastest
    # modes on the other models and in TF32 and bf16.
    "gpu-quick": (
        "--framework torch --mode cudagraph compile --model mlp --device cuda",
        "--framework jax --mode scan --model mlp --device cuda",
        "--framework keras --backend jax --mode fit-jit --model mlp --device cuda",
        "--framework torch jax keras --backend jax --model mlp --device cuda",
        "--framework torch --mode cudagraph --model logistic cnn --device cuda",
        "--framework jax --mode scan --model logistic cnn --device cuda",
        "--framework torch --mode cudagraph --model mlp --precision bf16 tf32 --device cuda",
        "--framework jax --mode scan --model mlp --precision bf16 tf32 --device cuda",
    ),
}


def data_digests(specs: list[DataSpec]) -> dict[DataSpec, str]:
    """Each dataset loaded and validated once, before anything trains: its SHA-256 by spec."""
    from harness import data

    digests = {spec: data.load(spec).sha256 for spec in specs}
    data._load.cache_clear()  # the parent keeps only the sums; each cell loads its own copy
    data.load_raw.cache_clear()
    return digests


def expand(args, given: set[str] = frozenset()) -> list[Cell]:
    """The cells that args select, each checked; a HarnessError for anything that would not run."""
    from harness.data import DATASETS
    from harness.recipes import recipe

    registry = frameworks()
    names = args.framework or list(default_frameworks())
    check_choice("framework", names, registry)
    check_choice("model", args.model or [], {**MODELS, **RECIPE_MODELS})
    check_choice("dataset", args.dataset or [], DATASETS)
    backends = sorted({b for n in names for b in registry[n].backends})
    if backends:  # Keras's: the only framework here with backends of its own
        check_choice("backend", args.backend, backends)
    check_choice("precision", args.precision or [], PRECISIONS)
    check_choice("device", args.device, DEVICES)
    check_choice("profile", args.profile or [], PROFILES)
    trials = getattr(args, "trials", 1)
    profiles = args.profile or list(DEFAULT_PROFILES)
    if args.mode:
        check_choice("mode", args.mode, sorted({m for n in names for m in registry[n].modes}))
        for name in names:
            if not set(args.mode) & set(registry[name].modes):
                raise HarnessError(f"{name} has none of the modes {', '.join(args.mode)}; its modes are "
                                   f"{', '.join(registry[name].modes)} (run frameworks with different modes apart)")
    precisions = args.precision or ["float32"]
    if all(d == "cpu" for d in args.device):
        for prec in precisions:
            check_precision(prec, "cpu")
    if "native" in profiles and "precision" in given:
        print("note: native cells run at each framework's default precision; --precision applies to "
              "the equal cells", file=sys.stderr)
    if args.recipe:
        r = recipe(args.recipe)
        runs = [(model, dataclasses.replace(hyper, batch_size=bs))
                for model, hyper in r.runs for bs in (args.batch_size or [hyper.batch_size])]
        datas = [r.data]
    else:
        d = Hyper()
        base = Hyper(optimizer=args.optimizer or d.optimizer, lr=args.lr or d.lr, eps=args.eps or d.eps)
        runs = [(model, dataclasses.replace(base, batch_size=bs))
                for model in (args.model or list(MODELS)) for bs in (args.batch_size or [base.batch_size])]
        datas = [DataSpec(name) for name in (args.dataset or ["mnist"])]
    cells = []
    for trial, name, profile in itertools.product(range(trials), names, profiles):
        record = registry[name]
        if profile not in record.profiles:
            if args.profile:
                raise HarnessError(f"{name} has no profile {profile}; its profiles: {', '.join(record.profiles)}")
            continue
        modes = [m for m in (args.mode or record.modes[:1]) if m in record.modes]
        if profile == "native":
            if args.mode and args.profile and not set(modes) & set(record.native_modes):
                raise HarnessError(f"{name} mode {', '.join(modes)} has no native form (what {name}'s users "
                                   f"write is {', '.join(record.native_modes) or 'none'}); run it with --profile equal")
            modes = [m for m in modes if m in record.native_modes]
        for (model, hyper), ds, seed, prec, dev, mode, backend in itertools.product(
                runs, datas, args.seed, precisions if profile == "equal" else ["default"], args.device,
                modes, args.backend if record.backends else [None]):
            if dev == "cpu" and prec in GPU_ONLY_PRECISIONS:
                continue  # asked for beside a GPU device: runs there only
            hyper = dataclasses.replace(hyper, seed=seed, init=args.init if profile == "equal" else "native",
                                        epochs=hyper.epochs if args.epochs is None else args.epochs)
            cells.append(Cell(name, backend, model, mode, ds, hyper, prec, dev, args.threads, args.recipe, profile,
                              trial=trial))
    if not cells:
        raise HarnessError("these options select no cell; python -m harness.run --help lists them")
    digests = data_digests(sorted({c.data for c in cells}, key=repr))
    return [dataclasses.replace(c, data_sha256=digests[c.data]) for c in cells]


def plan_cells(name: str, threads: int, trials: int = 1) -> list[Cell]:
    """The cells of a named plan, in its order, each once."""
    from harness.options import given_options
    from harness.run import parser

    if name not in PLANS:
        raise HarnessError(f"unknown plan {name!r}; valid plans: {', '.join(PLANS)}")
    cells: dict[str, Cell] = {}
    for line in PLANS[name]:
        argv = line.split() + ["--threads", str(threads), "--trials", str(trials)]
        for cell in expand(parser().parse_args(argv), given_options(argv)):
            cells.setdefault(cell.id, cell)
    return list(cells.values())


def missing_packages(cell: Cell) -> list[str]:
    """The packages a cell imports that this environment lacks."""
    return [n for n in framework(cell.framework).needs(cell.backend, cell.profile)
            if importlib.util.find_spec(n) is None]


