"""CPU allocation tuning for episode sampling.

A 5-way 1-shot 15-query meta-batch of 10 tasks at 84x84 is 68 MB of float32.
glibc serves allocations above its mmap threshold (at most 32 MB by default)
with fresh ``mmap`` pages and returns them to the kernel on free, so every
meta-batch pays ~17,000 page faults: about 20-40 ms on a laptop core, several
times the cost of the sampling itself. :func:`tune_cpu_allocator` raises the
mmap and trim thresholds (256 MB / 512 MB) with ``mallopt`` so freed batch
memory is reused by the next batch (PyTorch's performance guide recommends
jemalloc/tcmalloc for the same reason). It is process-wide, affects only
glibc-based Linux, keeps up to ~512 MB of freed memory for reuse, and is
skipped when the environment variable ``KML_NO_MALLOC_TUNING`` is set.

The library never calls it: the command-line entry points (``kml-train``, ``kml-eval``,
``kml-reproduce``, ``kml-transference``, ``kml-bench``) opt in; code that samples many
CPU meta-batches itself can call it once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20

_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Apply the tuning once per process; True when it is in effect."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("KML_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to do
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
