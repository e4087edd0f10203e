"""python -m harness.run.plain_loops: plain reference-style loops beside the suite's matching cells, in one call.

    python -m harness.run.plain_loops --plan cpu                           here: the MLP, batch 32, 2 epochs
    python -m harness.run.plain_loops --plan cpu-examples                  here: the example loops, 5 epochs
    python -m harness.run.plain_loops --plan gpu --out results/gpu-h100    on a GPU machine: the reference figures
    python -m harness.run.plain_loops --loop torch:eager:256 'keras[jax]:fit:32' --device cuda --epochs 5

For each loop in turn: the plain program (framework code only, no harness) in its own
process, then the suite's matching cell (the MLP, the same batch size, epochs and device)
through harness.run into the same --out, run again even where it finished before, so that
both figures come from this call. Two kinds of pair, as the framework's record names them:

- a reference-style loop (impls/plain/<framework>_mlp.py, modes eager, step, fit, ...)
  beside a cell of profile equal at float32;
- the framework's example loop (mode example: impls/plain/<framework>_example.py, the MLP
  trained as that framework's own MNIST example trains it, the pipeline and loop of profile
  native) beside the native cell, at the framework's default precision.

The loop gets the environment that cell gets (harness.run.launch.cell_env: threads, TF32 off for
float32, Keras's backend, a hidden GPU on a CPU run). Both figures go to
<out>/plain-loops.json, one pair per suite cell (its profile, mode and precision among
them; the typed, versioned record is harness.measure.loops'), merged with the pairs already
there: a rerun skips the pairs recorded before (--force runs them again), so the same command
resumes a call that a time limit cut short. Then a table (harness.measure.loops.table, the
README's too): each loop, the suite cell's profile and mode, both samples/s and their ratio.
The plans and the H100 reference figures are data, in harness.plan.loop_plans.

One interpreter runs everything, the one running this module, as with harness.run: simplest
where every framework shares one Python (the lent GPU machine: the whole plan in one call).
Where each framework has its own tox env (.tox/test-torch, .tox/test-jax, .tox/test-keras),
run the same command with each env's python into one --out; each call skips the loops whose
framework it lacks, naming the env that has them, and the JSON file gathers all of them.
A --python per framework would have to run the suite's cells under those interpreters too,
a second way to start a cell beside harness.run's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from harness import data
from harness.measure.loops import RESULT_FILE, LoopRun, Pair, SuiteSide, number, read_pairs, save, table
from harness.measure.machine import machine_fingerprint, nvidia_gpus
from harness.measure.results import Machine
from harness.measure.store import Store
from harness.plan.cell import Cell
from harness.plan.errors import HarnessError, cli_main
from harness.plan.files import REPO_ROOT, WORKSPACE
from harness.plan.frameworks import framework, frameworks
from harness.plan.loop_plans import EXAMPLE_LOOPS, PLANS, Plan
from harness.plan.matrix import expand, missing_packages
from harness.plan.options import Parser, check_choice, check_out, non_negative_int, positive_int
from harness.plan.plans import Selection
from harness.plan.spec import DataSpec
from harness.run.launch import cell_env, die_with_parent
from harness.run.local import LocalExecutor

# The loop mode whose program is the framework's example (impls/plain/<framework>_example.py);
# every other mode is one of impls/plain/<framework>_mlp.py's.
EXAMPLE_MODE = "example"


def suite_modes() -> dict[str, dict[str, tuple[str, str]]]:
    """Each framework's plain-loop modes, and the suite cell's (mode, profile) each one is set beside:
    the record's plain_loop_modes, where a bare mode means profile equal."""
    return {name: {loop_mode: (suite, "equal") if isinstance(suite, str) else tuple(suite)
                   for loop_mode, suite in record.plain_loop_modes.items()}
            for name, record in frameworks().items() if record.plain_loop_modes}


@dataclasses.dataclass(frozen=True)
class Loop:
    """One plain loop: framework (Keras: and backend), mode, batch size."""
    framework: str
    backend: str | None
    mode: str
    batch_size: int

    @property
    def label(self) -> str:
        fw = f"{self.framework}[{self.backend}]" if self.backend else self.framework
        return f"{fw} {self.mode} b{self.batch_size}"

    @property
    def suite_mode(self) -> str:
        return suite_modes()[self.framework][self.mode][0]

    @property
    def profile(self) -> str:
        """The suite cell's profile: native beside an example loop, equal beside the others."""
        return suite_modes()[self.framework][self.mode][1]

    @property
    def program(self) -> str:
        """The loop's module: impls.plain.<framework>_example or impls.plain.<framework>_mlp."""
        return f"impls.plain.{self.framework}_{'example' if self.mode == EXAMPLE_MODE else 'mlp'}"

    @property
    def gpu_only(self) -> bool:
        return self.suite_mode in framework(self.framework).gpu_only_modes


def parse_loop(text: str) -> Loop:
    """FRAMEWORK[BACKEND]:MODE:BATCH, e.g. torch:graph:256 or keras[jax]:fit-jit:32; a bare keras
    runs on its default backend ($KERAS_BACKEND, else the first), as harness.run's cells do."""
    match = re.fullmatch(r"(\w+)(?:\[(\w+)\])?:([\w-]+):(\d+)", text)
    if not match:
        raise HarnessError(f"loop {text!r} is not FRAMEWORK[BACKEND]:MODE:BATCH (e.g. {', '.join(EXAMPLE_LOOPS)})")
    name, backend, mode, batch = match.groups()
    loops = suite_modes()
    if name not in loops:
        raise HarnessError(f"no plain loop for {name!r}; loops exist for {', '.join(loops)}")
    if mode not in loops[name]:
        raise HarnessError(f"{name}'s plain loop has no mode {mode!r}; its modes: {', '.join(loops[name])}")
    if backends := framework(name).backends:
        backend = backend or framework(name).default_backend()
        check_choice("backend", [backend], backends)
    elif backend:
        raise HarnessError(f"loop {text!r}: {name} takes no [backend]")
    if int(batch) < 1:
        raise HarnessError(f"loop {text!r}: the batch size must be positive")
    return Loop(name, backend, mode, int(batch))


# ---------------------------------------------------------------- the cells and the data
def suite_cells(loops: list[Loop], device: str, epochs: int, threads: int, limit: int) -> dict[Loop, Cell]:
    """Each loop's suite cell, as harness.run expands it (so with the same id): profile equal at
    float32, or profile native at the framework's default precision, one expansion per profile."""
    cells = {}
    for profile in dict.fromkeys(loop.profile for loop in loops):
        group = [loop for loop in loops if loop.profile == profile]
        selection = Selection(
            model=("mlp",), profile=(profile,), device=(device,), epochs=epochs,
            framework=tuple(dict.fromkeys(loop.framework for loop in group)),
            mode=tuple(dict.fromkeys(loop.suite_mode for loop in group)),
            batch_size=tuple(dict.fromkeys(loop.batch_size for loop in group)),
            precision=("float32",) if profile == "equal" else None,  # native: each framework's default
            backend=tuple(dict.fromkeys(loop.backend for loop in group if loop.backend)) or None)
        cells |= {(c.framework, c.backend, c.mode, c.profile, c.hyper.batch_size): c
                  for c in data.checked(expand(selection, threads))}
    if limit:  # the first `limit` training rows, as the loops' --limit takes them (data_sha256 is the file's)
        cells = {key: dataclasses.replace(c, data=DataSpec("mnist", train_rows=limit)) for key, c in cells.items()}
    return {loop: cells[loop.framework, loop.backend, loop.suite_mode, loop.profile, loop.batch_size]
            for loop in loops}


def loops_data(given: Path | None, suite_sha256: str) -> Path:
    """The .npz the loops read: --data, else the file the suite's MNIST comes from; its arrays the suite's."""
    explicit = os.environ.get(data.PATH_ENV["mnist"])
    path = given or (Path(explicit) if explicit else data.cache_file("mnist"))
    path = path.expanduser().resolve()
    if path.suffix != ".npz" or not path.is_file():
        raise HarnessError(f"the loops read MNIST from a Keras-format .npz, and {path} is none; give one with --data")
    sha256 = data.load_raw("mnist", str(path)).sha256
    if sha256 != suite_sha256:
        raise HarnessError(f"--data {path} holds other arrays than the suite's MNIST (SHA-256 {sha256[:12]} against "
                           f"{suite_sha256[:12]}); give the suite's file, or set FWCOMPARE_MNIST to yours")
    return path


def env_python(tox_env: str) -> str:
    """Where the python of the tox env that has a framework lives, or how to make it."""
    for name in (f"test-{tox_env}", tox_env):
        if (REPO_ROOT / ".tox" / name / "bin" / "python").exists():
            return f".tox/{name}/bin/python"
    return f"tox env {tox_env}'s python (tox -e {tox_env} makes it)"


# ---------------------------------------------------------------- running a pair
def run_loop(loop: Loop, cell: Cell, npz: Path, limit: int) -> LoopRun:
    """The plain program in its own process, in the cell's environment: its JSON line, or why none."""
    command = [sys.executable, "-m", loop.program, str(npz), "--mode", loop.mode,
               "--batch-size", str(loop.batch_size), "--epochs", str(cell.hyper.epochs), "--device", cell.device,
               "--seed", str(cell.hyper.seed), "--limit", str(limit)]
    env = cell_env(cell)
    started = LoopRun(shlex.join(command), {k: v for k, v in sorted(env.items())
                                            if os.environ.get(k) != v and k != "PYTHONPATH"}, "error")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=die_with_parent)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dataclasses.replace(started, message=f"exit status {proc.returncode}: {last}")
    try:
        return dataclasses.replace(started, status="ok", result=json.loads(proc.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        return dataclasses.replace(started, message=f"no JSON line on stdout: {proc.stdout[-200:]!r}")


def suite_summary(cell: Cell, store: Store) -> SuiteSide:
    """What the suite's result says about the cell, beside the loop's figures; which cell it is first."""
    which = {"cell_id": cell.id, "profile": cell.profile, "mode": cell.mode, "precision": cell.precision}
    result = store.read(cell)
    if result is None:
        return SuiteSide(**which, status="error", message="no result file", samples_per_epoch=None,
                         steady_epoch_s=None, train_samples_per_s_median=None, test_accuracy=None)
    m = result.metrics
    return SuiteSide(**which, status=result.status, message=result.message,
                     samples_per_epoch=m.samples_per_epoch, steady_epoch_s=m.steady_epoch_s,
                     train_samples_per_s_median=m.train_samples_per_s.median if m.train_samples_per_s else None,
                     test_accuracy=m.test_accuracy)


def pair_done(pair: Pair | None) -> bool:
    """A pair is done when its loop printed its figures and its suite cell ended ok or diverged."""
    return pair is not None and pair.done


# ---------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m harness.run.plain_loops", description=__doc__.split("\n")[0],
                   epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", choices=PLANS, help="gpu: the reference figures' loops on cuda, 5 epochs; "
                                                 "cpu: a smoke run here, 2 epochs; cpu-examples: each "
                                                 "framework's example loop beside its native cell, 5 epochs; "
                                                 "cpu-archive: every CPU loop, 5 epochs (the CPU archive's step)")
    modes = "; ".join(f"{name}: {', '.join(loop_modes)}" for name, loop_modes in suite_modes().items())
    p.add_argument("--loop", nargs="+", help=f"in place of --plan: FRAMEWORK[BACKEND]:MODE:BATCH ... (modes {modes})")
    p.add_argument("--device", choices=("cpu", "cuda"), help="with --loop (default cpu)")
    p.add_argument("--epochs", type=positive_int, help="with --loop (default 5)")
    p.add_argument("--limit", type=non_negative_int, default=0,
                   help="train loops and cells on the first N training rows only (tests; default all)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads per loop and cell (default 0: every core)")
    p.add_argument("--data", type=Path, help="the .npz the loops read (default the file the suite's MNIST comes from)")
    p.add_argument("--out", type=Path, default=WORKSPACE,
                   help=f"folder for the cells' files and {RESULT_FILE} (default results/runs of this checkout)")
    p.add_argument("--force", action="store_true", help="run again the pairs recorded before")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines from the suite's cells")
    return p


def chosen(args) -> tuple[list[Loop], str, int]:
    """(loops, device, epochs) from --plan or from --loop, --device, --epochs; refused if both or neither."""
    if bool(args.plan) == bool(args.loop):
        raise HarnessError("give --plan or --loop, one of them")
    if args.plan and (args.device or args.epochs):
        raise HarnessError(f"--plan {args.plan} sets the device and epochs itself; drop --device and --epochs")
    plan = PLANS[args.plan] if args.plan else Plan(args.device or "cpu", args.epochs or 5, tuple(args.loop))
    loops = list(dict.fromkeys(parse_loop(text) for text in plan.loops))
    if plan.device == "cpu" and (gpu_only := [loop.label for loop in loops if loop.gpu_only]):
        raise HarnessError(f"{', '.join(gpu_only)}: GPU only (a CUDA graph); "
                           "run it with --device cuda on a GPU machine")
    if plan.device == "cuda" and not nvidia_gpus()[0]:
        raise HarnessError("--device cuda, but this machine has no NVIDIA GPU (nvidia-smi finds none); "
                           "run --plan cpu here")
    return loops, plan.device, plan.epochs


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    loops, device, epochs = chosen(args)
    out = check_out(args.out)
    store = Store(out)
    cells = suite_cells(loops, device, epochs, args.threads, args.limit)
    npz = loops_data(args.data, next(iter(cells.values())).data_sha256)
    ran: set[str] = set()
    skipped: dict[str, str] = {}  # why a loop was not run, by its label
    earlier = read_pairs(store)
    for loop in loops:
        cell = cells[loop]
        if missing := missing_packages(cell):
            skipped[loop.label] = f"skipped: {', '.join(missing)} not installed here"
            print(f"skip {loop.label}: {', '.join(missing)} not installed here; run this command with "
                  f"{env_python(framework(loop.framework).tox_env(loop.backend))} into the same --out",
                  file=sys.stderr)
            continue
        if pair_done(earlier.get(cell.id)) and not args.force:
            print(f"skip {loop.label}: recorded before in {out / RESULT_FILE}; --force runs it again", file=sys.stderr)
            continue
        start = time.perf_counter()
        loop_record = run_loop(loop, cell, npz, args.limit)
        print(f"loop {loop.label}: {loop_record.status}, {number(loop_record.samples_per_s)} samples/s",
              file=sys.stderr)
        LocalExecutor().run([cell], store, force=True, quiet=args.quiet)  # the suite's cell, in this call too
        save(store, cell.id, Pair(
            label=loop.label, loop=loop_record, suite=suite_summary(cell, store), data=str(npz),
            data_sha256=cell.data_sha256, machine=Machine(**machine_fingerprint()),
            seconds=round(time.perf_counter() - start, 1),
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        ran.add(cell.id)
    records = read_pairs(store)
    print(table([(loop.label, cells[loop]) for loop in loops], records, ran, skipped, device == "cuda"))
    print(f"pairs run: {len(ran)}, skipped: {len(skipped)}; figures in {out / RESULT_FILE}")
    failed = [loop.label for loop in loops if cells[loop].id in ran and not pair_done(records[cells[loop].id])]
    if failed:
        print(f"failed: {', '.join(failed)}; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0 if any(cells[loop].id in records for loop in loops) else 1


if __name__ == "__main__":
    cli_main(main)
