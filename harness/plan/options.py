"""The command line of python -m harness.run (and of the commands built on it): its options,
their checks, and one-line errors for anything that would not run."""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

from harness.plan.errors import HarnessError
from harness.plan.files import WORKSPACE
from harness.plan.frameworks import default_backends, default_frameworks, frameworks
from harness.plan.plans import PLANS, Selection
from harness.plan.spec import DEVICES, MODELS, PRECISIONS, PROFILES, Hyper

# What the main job runs: both questions, the users' code and the equalised code.
DEFAULT_PROFILES = ("equal", "native")
# The options that choose cells. A recipe sets the data, models and optimizer; a plan sets all.
AXES = ("framework", "model", "mode", "backend", "dataset", "batch_size", "seed", "precision", "device",
        "epochs", "optimizer", "lr", "eps", "init", "profile", "trials")
RECIPE_SETS = ("model", "dataset", "optimizer", "lr", "eps")


def margin_fraction(text: str) -> float:
    """'0.05' or '5%' as 0.05: a finite fraction from 0 to 1."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a margin like 0.05 or 5%") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"a margin is a fraction from 0 to 1 (0.05 or 5%), got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive finite number")
    return value


def check_choice(kind: str, values, valid) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise HarnessError(f"unknown {kind} {', '.join(map(repr, bad))}; valid {kind}s: {', '.join(valid)}")


def refuse_ignored(args, given: set[str]) -> None:
    """Options a --plan or --recipe would override: a one-line error rather than silence."""
    def flags(names):
        return ", ".join("--" + n.replace("_", "-") for n in names)

    if args.plan and (clash := [a for a in AXES if a in given and a != "trials"]):
        raise HarnessError(f"--plan {args.plan} sets every axis itself; drop {flags(clash)} "
                           "(or run those cells without --plan)")
    if args.recipe and (clash := [a for a in RECIPE_SETS if a in given]):
        raise HarnessError(f"--recipe {args.recipe} sets the data, models and optimizer; drop {flags(clash)} "
                           "(or run without --recipe)")


def check_out(out: Path, option: str = "--out", what: str = "the result files") -> Path:
    """--out (or another folder option) as an absolute folder this process can write, made if
    absent; else a one-line error."""
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise HarnessError(f"{option} {out} is a file; give a folder for {what}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"{option} {out} is not writable ({exc.strerror or exc}); "
                           "give a folder you can write to") from None
    return out


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (a HarnessError), like every other bad input."""

    def error(self, message: str):
        raise HarnessError(f"{message} ({self.prog} --help lists the options)")


def add_matrix_options(p: argparse.ArgumentParser) -> None:
    """The options that choose cells, shared by harness.run and harness.drive."""
    d = Hyper()
    p.add_argument("--framework", nargs="+", help=f"of {', '.join(frameworks())} "
                                                  f"(default {' '.join(default_frameworks())})")
    p.add_argument("--model", nargs="+", help=f"of {', '.join(MODELS)} (default all), or a recipe's models")
    p.add_argument("--mode", nargs="+", help="default: each framework's idiomatic (first) mode")
    p.add_argument("--profile", nargs="+", help=f"of {', '.join(PROFILES)} (default {' '.join(DEFAULT_PROFILES)})")
    backends = {name: list(r.backends) for name, r in frameworks().items() if r.backends}
    p.add_argument("--backend", nargs="+", default=default_backends(),
                   help=f"backends, of {'; '.join(f'{n}: {chr(44).join(b)}' for n, b in backends.items())} "
                        f"(default {' '.join(default_backends())}: $KERAS_BACKEND, else the first)")
    p.add_argument("--dataset", nargs="+", help="of mnist, fashion, tiny5x5 (default mnist)")
    p.add_argument("--recipe", help="a seed's recipe from harness/plan/recipes.py (sets data, models, optimizer)")
    p.add_argument("--plan", help=f"a named set of matrices ({', '.join(PLANS)}; see PLANS in harness/plan/plans.py), "
                                  "in place of the axis options")
    p.add_argument("--batch-size", nargs="+", type=positive_int, help=f"default {d.batch_size}, or the recipe's")
    p.add_argument("--seed", nargs="+", type=non_negative_int, default=[d.seed], help=f"default {d.seed}")
    p.add_argument("--trials", type=positive_int, default=1,
                   help="independent processes per configuration and seed, for the timing's spread (default 1)")
    p.add_argument("--precision", nargs="+", help=f"of {', '.join(PRECISIONS[:3])} (default float32; "
                                                  "profile native always runs the framework's default)")
    p.add_argument("--device", nargs="+", default=["cpu"], help=f"of {', '.join(DEVICES)} (default cpu)")
    p.add_argument("--epochs", type=positive_int, help=f"default {d.epochs}, or the recipe's")
    p.add_argument("--optimizer", help=f"adam or sgd (default {d.optimizer})")
    p.add_argument("--lr", type=positive_float, help=f"learning rate (default {d.lr})")
    p.add_argument("--eps", type=positive_float, help=f"Adam epsilon in profile equal (default {d.eps})")
    p.add_argument("--init", default=d.init, choices=("canonical", "native"),
                   help="profile equal's initial weights: the harness's (canonical, the default) or each "
                        "framework's own")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads per cell (default 0: every core the cell may use)")
    p.add_argument("--out", type=Path, default=WORKSPACE,
                   help="folder for the result files (default results/runs of this checkout)")
    p.add_argument("--force", action="store_true", help="rerun cells that already ended ok or diverged")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines (CI)")


def selection_of(args, argv: list[str]) -> Selection:
    """The matrix a command line selects: the axes written on it; the rest take their defaults."""
    given = given_options(argv)
    picked = {}
    for axis in dataclasses.fields(Selection):
        value = getattr(args, axis.name, None)
        if axis.name in given and value is not None:
            picked[axis.name] = tuple(value) if isinstance(value, list) else value
    return Selection(**picked)


def given_options(argv: list[str]) -> set[str]:
    """The options written on the command line (not defaulted), by their argparse names."""
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
