"""The timing protocol, the same for every framework: sync barriers, spread, memory, GPU time.

- every timed region starts and ends with impl.sync(), so queued device work is inside it;
- the first epoch (compile, warm-up) is reported apart from the steady epochs;
- statistics are medians with IQR, min and max, never one number;
- evaluation and every host-side conversion happen outside the timed regions.
"""
from __future__ import annotations

import resource
import time
from typing import Any, Callable

import numpy as np


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    """Seconds fn takes between two device sync barriers, and what it returned."""
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def spread(values) -> dict[str, Any] | None:
    """median, IQR, min, max and n of a sample (None for an empty one)."""
    v = np.asarray(list(values), np.float64)
    if v.size == 0:
        return None
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "iqr": float(q3 - q1), "min": float(v.min()),
            "max": float(v.max()), "n": int(v.size)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def not_available(reason: str) -> dict[str, Any]:
    """How a metric this machine cannot give is recorded: never as zero."""
    return {"available": False, "reason": reason}


def latency_ms(predict: Callable[[np.ndarray], Any], x: np.ndarray, calls: int) -> dict[str, Any]:
    """Batch-1 inference latency p50 and p99 over `calls` single-image calls (after one warm-up)."""
    predict(x[:1])
    times = []
    for i in range(calls):
        row = x[i % len(x)][None]
        start = time.perf_counter()
        predict(row)  # returns host numpy: the call includes the device round trip
        times.append((time.perf_counter() - start) * 1e3)
    p50, p99 = np.percentile(times, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "n": calls}


class GpuTimer:
    """Kernel time on the device during one profiled epoch, by CUPTI's activity API.

    One method for every framework: CUPTI sees the kernels of torch, XLA and TensorFlow
    alike, in-process. Busy time is the union of kernel intervals (overlaps counted once)
    inside the profiled window. Tracing adds host work to every launch, so it is on only
    between start() and stop(), for an epoch the steady timings leave out. Energy comes from
    NVML's total-energy counter, which costs nothing to read. On a machine without them
    each says why it is not available.
    """

    def __init__(self, device: str):
        self.records: list[tuple[int, int]] = []
        self.reason = None
        self.nvml = None
        self.nvml_reason = None
        if device == "cpu":
            self.reason = self.nvml_reason = "no GPU: the cell ran on the CPU"
            return
        try:
            from cupti import cupti  # cupti-python, the `gpu` extra

            def requested():
                return 8 * 1024 * 1024, 0

            def completed(activities):
                self.records.extend((a.start, a.end) for a in activities)

            cupti.activity_register_callbacks(requested, completed)
            self.cupti = cupti
        except Exception as exc:  # missing package, no driver, CUPTI refused
            self.reason = f"CUPTI unavailable: {type(exc).__name__}: {exc}"
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.nvml_api = pynvml
        except Exception as exc:
            self.nvml_reason = f"NVML unavailable: {type(exc).__name__}: {exc}"

    def energy_mj(self) -> float | None:
        if self.nvml is None:
            return None
        try:
            return float(self.nvml_api.nvmlDeviceGetTotalEnergyConsumption(self.nvml))
        except Exception as exc:
            self.nvml, self.nvml_reason = None, f"NVML energy: {exc}"
            return None

    def start(self) -> int | None:
        """Start tracing kernels; returns CUPTI's timestamp (ns), or None if CUPTI refused."""
        self.records.clear()
        try:
            self.cupti.activity_enable(self.cupti.ActivityKind.CONCURRENT_KERNEL)
            return int(self.cupti.get_timestamp())
        except Exception as exc:
            self.reason = f"CUPTI refused tracing: {type(exc).__name__}: {exc}"
            return None

    def stop(self, start_ns: int | None) -> float | None:
        """Stop tracing; the seconds some kernel was running since start_ns."""
        if start_ns is None:
            return None
        end_ns = int(self.cupti.get_timestamp())
        self.cupti.activity_flush_all(1)
        self.cupti.activity_disable(self.cupti.ActivityKind.CONCURRENT_KERNEL)
        spans = sorted((max(s, start_ns), min(e, end_ns)) for s, e in self.records
                       if e > start_ns and s < end_ns)
        self.records.clear()
        busy, cur_s, cur_e = 0, None, None
        for s, e in spans:
            if cur_e is None or s > cur_e:
                busy += 0 if cur_e is None else cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            busy += cur_e - cur_s
        return busy / 1e9
