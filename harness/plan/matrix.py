"""The matrix: the cells a Selection (a command line's, or each of a named plan's) picks, each
checked before anything trains. harness.data.checked then loads and validates their datasets."""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import sys

from harness.plan.cell import Cell
from harness.plan.errors import HarnessError
from harness.plan.frameworks import default_backends, default_frameworks, framework, frameworks
from harness.plan.options import DEFAULT_PROFILES, check_choice
from harness.plan.plans import PLANS, Selection
from harness.plan.recipes import recipe
from harness.plan.spec import (DATASETS, DEVICES, GPU_ONLY_PRECISIONS, MODELS, PRECISIONS, PROFILES, RECIPE_MODELS,
                               DataSpec, Hyper, check_precision)


def expand(selection: Selection, threads: int = 0, trials: int = 1) -> list[Cell]:
    """The cells a selection picks, each checked; a HarnessError for anything that would not run."""
    d = Hyper()
    backends_given = selection.backend or tuple(default_backends())
    registry = frameworks()
    names = selection.framework or list(default_frameworks())
    check_choice("framework", names, registry)
    check_choice("model", selection.model or [], {**MODELS, **RECIPE_MODELS})
    check_choice("dataset", selection.dataset or [], DATASETS)
    backends = sorted({b for n in names for b in registry[n].backends})
    if backends:  # Keras's: the only framework here with backends of its own
        check_choice("backend", backends_given, backends)
    check_choice("precision", selection.precision or [], PRECISIONS)
    devices = selection.device or ("cpu",)
    check_choice("device", devices, DEVICES)
    check_choice("profile", selection.profile or [], PROFILES)
    profiles = selection.profile or list(DEFAULT_PROFILES)
    if selection.mode:
        check_choice("mode", selection.mode, sorted({m for n in names for m in registry[n].modes}))
        for name in names:
            if not set(selection.mode) & set(registry[name].modes):
                raise HarnessError(f"{name} has none of the modes {', '.join(selection.mode)}; its modes are "
                                   f"{', '.join(registry[name].modes)} (run frameworks with different modes apart)")
    precisions = selection.precision or ["float32"]
    if all(dev == "cpu" for dev in devices):
        for prec in precisions:
            check_precision(prec, "cpu")
    if "native" in profiles and selection.precision is not None:
        print("note: native cells run at each framework's default precision; --precision applies to "
              "the equal cells", file=sys.stderr)
    if selection.recipe:
        r = recipe(selection.recipe)
        runs = [(model, dataclasses.replace(hyper, batch_size=bs))
                for model, hyper in r.runs for bs in (selection.batch_size or [hyper.batch_size])]
        datas = [r.data]
    else:
        base = Hyper(optimizer=selection.optimizer or d.optimizer, lr=selection.lr or d.lr, eps=selection.eps or d.eps)
        runs = [(model, dataclasses.replace(base, batch_size=bs))
                for model in (selection.model or list(MODELS)) for bs in (selection.batch_size or [base.batch_size])]
        datas = [DataSpec(name) for name in (selection.dataset or ["mnist"])]
    cells = []
    for trial, name, profile in itertools.product(range(trials), names, profiles):
        record = registry[name]
        if profile not in record.profiles:
            if selection.profile:
                raise HarnessError(f"{name} has no profile {profile}; its profiles: {', '.join(record.profiles)}")
            continue
        modes = [m for m in (selection.mode or record.modes[:1]) if m in record.modes]
        if profile == "native":
            if selection.mode and selection.profile and not set(modes) & set(record.native_modes):
                raise HarnessError(f"{name} mode {', '.join(modes)} has no native form (what {name}'s users "
                                   f"write is {', '.join(record.native_modes) or 'none'}); run it with --profile equal")
            modes = [m for m in modes if m in record.native_modes]
        for (model, hyper), ds, seed, prec, dev, mode, backend in itertools.product(
                runs, datas, selection.seed or (d.seed,), precisions if profile == "equal" else ["default"], devices,
                modes, backends_given if record.backends else [None]):
            if dev == "cpu" and prec in GPU_ONLY_PRECISIONS:
                continue  # asked for beside a GPU device: runs there only
            hyper = dataclasses.replace(hyper, seed=seed,
                                        init=(selection.init or d.init) if profile == "equal" else "native",
                                        epochs=hyper.epochs if selection.epochs is None else selection.epochs)
            cells.append(Cell(name, backend, model, mode, ds, hyper, prec, dev, threads, selection.recipe, profile,
                              trial=trial))
    if not cells:
        raise HarnessError("these options select no cell; python -m harness.run --help lists them")
    return cells


def plan_cells(name: str, threads: int, trials: int = 1) -> list[Cell]:
    """The cells of a named plan, in its order, each once."""
    if name not in PLANS:
        raise HarnessError(f"unknown plan {name!r}; valid plans: {', '.join(PLANS)}")
    cells: dict[str, Cell] = {}
    for selection in PLANS[name]:
        for cell in expand(selection, threads, trials):
            cells.setdefault(cell.id, cell)
    return list(cells.values())


def missing_packages(cell: Cell) -> list[str]:
    """The packages a cell imports that this environment lacks."""
    return [n for n in framework(cell.framework).needs(cell.backend, cell.profile)
            if importlib.util.find_spec(n) is None]


