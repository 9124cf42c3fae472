"""Keep freed tensor memory in the process heap, so training steps stop page-faulting (glibc).

PyTorch on the CPU allocates every intermediate tensor with ``malloc`` and frees it right after.
glibc serves blocks above its mmap threshold (128 KiB at start, raised on the fly up to 32 MiB)
with fresh ``mmap`` pages and trims free memory at the top of the heap back to the OS. A batched
ensemble step (``training/ensemble.py``) makes megabyte-sized intermediates, so each step
re-faults thousands of pages (``docs/benchmarks.md`` gives the counts and the kernel time). With a
fixed 32 MiB mmap threshold and a 1 GiB trim threshold the freed blocks are reused instead
(``benchmarks/ensemble_throughput.py`` measures the gain). A single run's step makes small tensors
and gains little either way.

This is a process-wide setting, so the library never calls it on import or inside a function a
notebook calls: the command lines (``python -m training`` and ``python -m interp``), the study's
and the sweep's spawned workers and the benchmarks call it for their own processes. The cost is
memory: up to 1 GiB of freed heap may stay mapped to the process.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""The largest mmap threshold glibc accepts on 64-bit (half its 64 MiB heap size)."""
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Set this process's glibc malloc to reuse freed blocks (see the module docstring). True when
    both settings took; False (and nothing changed) where the C library is not glibc."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # no such name: not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
