"""How a cell's process says it failed: the exit code for a result it could not write, and the
allocators' own words for running out of memory (the child classifies its exception by them, the
parent its last lines)."""
from __future__ import annotations

import re

WRITE_FAILED = 3  # the child's exit code when its result file could not be written
# What allocators say when they run out of memory. Under `ulimit -v` (or a container's limit on
# address space) no OOM killer comes: an allocation fails, and the runtime says so in its own
# words, in the exception the child records (harness.measure.child.classify) or on its last lines before
# it dies (harness.run.launch.death_status). Any of these, as a whole word and in any case, makes the cell "oom".
OOM_WORDS = (
    "MemoryError",  # Python's own
    "Unable to allocate",  # numpy: "Unable to allocate 7.45 GiB for an array with shape ..."
    "std::bad_alloc",  # a C++ runtime (XLA, TensorFlow, torch's C++), then abort(): SIGABRT
    "Cannot allocate memory",  # the kernel's ENOMEM: mmap, fork or a thread's stack refused
    "out of memory",  # CUDA, cuBLAS, XLA ("Out of memory while trying to allocate"), BFC ("ran out of memory")
    "OOM",  # TensorFlow: "OOM when allocating tensor with shape ..."
    "RESOURCE_EXHAUSTED", "resource exhausted", "ResourceExhaustedError",  # XLA and jax; TensorFlow's class
    "not enough memory",  # torch: "DefaultCPUAllocator: not enough memory: you tried to allocate ..."
    "ALLOC_FAILED",  # cuDNN and cuBLAS: CUDNN_STATUS_ALLOC_FAILED
)
OOM_PATTERN = re.compile("|".join(rf"(?<![a-z]){re.escape(w)}(?![a-z])" for w in OOM_WORDS), re.IGNORECASE)


def out_of_memory(text: str) -> str | None:
    """The first line of text in which an allocator says it ran out of memory (OOM_WORDS), or None."""
    return next((line.strip() for line in text.splitlines() if OOM_PATTERN.search(line)), None)
