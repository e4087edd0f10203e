"""python -m harness.measure.wakeups [SECONDS]: how long one thread takes to wake another on this
machine, across cores and on one core, alternated second by second.

Two processes hand a byte back and forth through pipes, each blocked in read() until the other
writes: a round trip is two wake-ups, the hand-off a framework's thread pool makes between
operations. Between trips both sleep 0.5 ms, so the cores go idle as a pool's do between steps
(on a VM an idle virtual core halts, and waking it goes through the hypervisor). Each second
prints the median round trip with both processes pinned to different cores, or to the same one.

The noise section of the README compares these with the extra time per voluntary context switch
of Keras on TensorFlow's slow epochs. Linux only (it pins with sched_setaffinity).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from harness.plan.errors import HarnessError, cli_main

PAUSE_S = 0.0005  # between trips: long enough for an idle core to halt


def echo(inbox: int, outbox: int, core: int) -> None:
    """The far end: wait for a byte, send one back, until the pipe closes."""
    os.sched_setaffinity(0, {core})
    while os.read(inbox, 1):
        os.write(outbox, b"x")
    os._exit(0)


def median_round_trip_us(seconds: float, cores: tuple[int, int]) -> tuple[float, int]:
    """The median round trip in microseconds over `seconds`, this process on cores[0] and its echo
    on cores[1]; and how many trips it made."""
    to_echo, from_me = os.pipe()
    to_me, from_echo = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(from_me)
        os.close(to_me)
        echo(to_echo, from_echo, cores[1])
    os.close(to_echo)
    os.close(from_echo)
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cores[0]})
    trips = []
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            os.write(from_me, b"x")
            os.read(to_me, 1)
            trips.append(time.perf_counter() - start)
            time.sleep(PAUSE_S)
    finally:
        os.close(from_me)
        os.close(to_me)
        os.waitpid(pid, 0)
        os.sched_setaffinity(0, mask)
    return statistics.median(trips) * 1e6, len(trips)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.measure.wakeups", description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=int, default=60, help="how long to measure (default 60)")
    args = parser.parse_args(argv)
    if not hasattr(os, "sched_setaffinity"):
        raise HarnessError("this probe pins processes to cores, which this system cannot do (Linux only)")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise HarnessError("this probe needs two cores to compare a wake-up across cores with one on a single core")
    across, same = [], []
    for second in range(args.seconds):
        where, pair = ("across cores", (cores[0], cores[1])) if second % 2 == 0 else ("one core", (cores[0],) * 2)
        us, n = median_round_trip_us(1.0, pair)
        (across if second % 2 == 0 else same).append(us)
        print(f"{second + 1:4d} s  {where:12}  median round trip {us:6.1f} us over {n} trips", flush=True)
    for name, values in (("across cores", across), ("one core", same)):
        if values:
            print(f"{name}: median of the seconds' medians {statistics.median(values):.1f} us "
                  f"(range {min(values):.1f}-{max(values):.1f})")
    return 0


if __name__ == "__main__":
    cli_main(main)
