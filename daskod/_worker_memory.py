"""Preloaded by the worker server of the ``processes`` scheduler (nothing else in daskod imports
it): glibc's allocator in the workers keeps the memory tasks free for the next task.

By default glibc hands every freed block above a moving threshold back to the kernel (``munmap``,
or trimming the heap's top), and the next task's arrays of the same size fault in new pages,
zeroed by the kernel: an 8-file run faulted 4.3 GiB of pages for ~0.9 GiB in use, ~1 s of system
time (on a virtual machine, pages the host has reclaimed cost several times more). With
blocks up to 32 MiB (glibc's largest mmap threshold) served from the heap and up to 256 MiB of
free heap kept, the same run faults 1.7 GiB. A worker's resident memory then stays at its own
high-water mark between tasks, which the memory budget already assumes for every worker.
The workers inherit these settings from the server they are forked from.
"""

import ctypes
import sys

#: ``mallopt`` parameters (glibc's malloc.h) and the values set.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20


def keep_freed_memory() -> bool:
    """Set both thresholds (each alone makes glibc stop adapting the other, which faults more
    than the default); True when the C library is glibc and took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl's mallopt does nothing)
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


APPLIED = keep_freed_memory()
