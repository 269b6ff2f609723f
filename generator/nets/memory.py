"""Keep freed tensor memory in the process instead of handing it back to the OS.

glibc serves every allocation above its mmap threshold (a few MB: one batch of 16 images at
224 px is 10 MB) with a fresh mmap and unmaps it on free, so each new activation or gradient
tensor page-faults all over again. On this 2-core CPU a batch multiply into a new tensor took
2 ms against 0.3 ms in place, and the optimizer makes ~30 such tensors per step. Raising the
mmap and trim thresholds (what jemalloc/tcmalloc setups for PyTorch on CPU achieve) lets the
heap reuse those blocks. The cost: the process keeps its peak memory until it exits, which is
what a build wants anyway. A no-op where glibc's mallopt is missing (macOS, musl, Windows).
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST_THRESHOLD = 2**30  # 1 GiB: larger blocks (rare) are still mmapped and given back
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if glibc accepted them."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST_THRESHOLD))
    return _done
