"""Impls that run out of memory the ways a framework does where no OOM killer comes (under
`ulimit -v`): plugged in through $FWCOMPARE_IMPLS beside tests/fake_impls.py's (OOM_FAKES)."""
from __future__ import annotations

import mmap
import os
import resource
import signal

from impls.numpy_impl import NumpyImpl

OOM_FAKES = ",".join(f"{name}=tests.fake_oom_impls:{cls}" for name, cls in [
    ("ulimited", "UlimitImpl"), ("cpu-alloc", "CpuAllocatorImpl"), ("bad-alloc", "BadAllocImpl")])


class UlimitImpl(NumpyImpl):
    """Its process limited as `ulimit -v` does, then asks the kernel for more: a real ENOMEM."""
    framework = "ulimited"

    def train_epoch(self, order):
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, hard))  # 1 GiB of address space, as ulimit -v 1048576
        mmap.mmap(-1, 2 << 30)  # OSError: [Errno 12] Cannot allocate memory
        raise AssertionError("the kernel granted 2 GiB under a 1 GiB limit")


class CpuAllocatorImpl(NumpyImpl):
    """Fails as torch's CPU allocator does when an allocation is refused."""
    framework = "cpu-alloc"

    def train_epoch(self, order):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 8000000000 bytes.")


class BadAllocImpl(NumpyImpl):
    """Dies as a C++ runtime does when `new` fails: the message on stderr, then abort() (SIGABRT)."""
    framework = "bad-alloc"

    def train_epoch(self, order):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
        os.write(2, b"terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc\n")
        signal.signal(signal.SIGABRT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGABRT)
