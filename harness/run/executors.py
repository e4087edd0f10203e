"""The executors by name: `python -m harness.run --executor NAME` and the driver pick one here.

Adding one: a subclass of harness.run.executor.Executor with its run_claimed (and, if it starts
something, its session), registered under a name; the lock, skip and put-back logic comes with it.
"""
from __future__ import annotations

from harness.plan.errors import HarnessError
from harness.run.executor import Executor
from harness.run.local import LocalExecutor
from harness.run.ray_cluster import RayExecutor

EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def register(name: str, executor: type[Executor]) -> None:
    """Another executor, chosen by its name from then on."""
    EXECUTORS[name] = executor


def executor(name: str, **options) -> Executor:
    """The executor of that name, made with its options; one line for an unknown name."""
    if name not in EXECUTORS:
        raise HarnessError(f"unknown executor {name!r}; executors: {', '.join(EXECUTORS)}")
    return EXECUTORS[name](**options)
