"""keep_freed_memory: freed tensor memory is reused instead of re-faulted (counted by the kernel's
minor page faults, in a child process so this one keeps its allocator settings)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

WORKLOAD = textwrap.dedent("""
    import resource, sys, torch
    torch.set_num_threads(1)
    if sys.argv[1] == "tuned":
        from training.allocator import keep_freed_memory
        assert keep_freed_memory()
    def work():
        # intermediates of 0.25 to 4 MiB, freed right after, as in a training step
        for n in (64, 256, 1024):
            x = torch.ones(n, 1024)
            y = (x + 1) * 2
            del x, y
    for _ in range(3):
        work()
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        work()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 50)
""")


def _faults_per_round(mode: str) -> float:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", WORKLOAD, mode], cwd=root, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(not hasattr(os, "confstr") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    default, tuned = _faults_per_round("default"), _faults_per_round("tuned")
    # a 4 MiB block is 1,024 pages: glibc's default maps it afresh each time it is allocated
    assert default > 500, default
    # tuned: the heap grows once (a few hundred pages over the rounds), then every block is reused
    assert tuned < default / 20, (default, tuned)
