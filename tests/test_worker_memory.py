"""The workers' allocator setting (:mod:`daskod._worker_memory`): memory a task frees is
reused by the next task instead of being faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the setting is glibc's")

ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from daskod._worker_memory import keep_freed_memory
    assert keep_freed_memory()
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # A task's arrays: a few blocks of 12 MiB, all freed at its end.
    blocks = [np.ones(3 * 2**20, np.float32) for _ in range(6)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def _faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True,
                         text=True, check=True, timeout=120)
    return [int(v) for v in out.stdout.split()]


def test_freed_blocks_are_reused_by_the_next_task():
    kept, default = _faults("keep"), _faults("default")
    # The first task faults its pages in either way (fewer than 4 KiB pages where the kernel
    # gives huge pages); later tasks reuse them when kept ...
    assert kept[0] > 100
    assert max(kept[1:]) < kept[0] // 10
    # ... and fault them in again with glibc's default (which this test would not notice
    # if the setting did nothing).
    assert min(default[1:]) > default[0] // 2
