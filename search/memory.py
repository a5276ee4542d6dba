"""Keep freed memory in the process instead of handing it back to the OS after every step.

glibc serves large blocks (a CIFAR-10 activation of batch 32 is 4 MB, one of an evaluation
batch 134 MB) with fresh mmaps, or trims them off the heap when freed, so every training step
touched new pages: about 2,400 page faults a step (docs/speed.md has what they cost). Raising
the two thresholds makes the allocator reuse the same pages. The cost is up to 1 GB of freed
memory kept per process.
"""

import ctypes
import functools

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30
# glibc refuses an mmap threshold above its heap limit (32 MB in some versions): try lower.
MMAP_THRESHOLDS = (256 << 20, 32 << 20)


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc for this process (once); False where there is no glibc mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc: macOS, Windows
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not any(mallopt(M_MMAP_THRESHOLD, size) for size in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
