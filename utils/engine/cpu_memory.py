"""Keep freed CPU memory in the process for reuse (glibc's allocator), instead of handing it back to the OS.

glibc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps it on
``free``. A CPU training step of YOLOv4 at 416 px allocates and frees a few GB of such activations, so
each step page-faults them in again and the kernel zero-fills every page: about 640,000 page faults
(2.6 GB) a step at batch 4, which made the step 1.42x slower (bench/bench_cpu_memory.py). With mmap off and
trimming off, the freed blocks stay in the heap and the next step reuses them (the process keeps its peak memory).
train.py does this on the CPU. Inference is left as it is: get_FPS measured no gain from it.
"""
import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1   # mallopt parameters (glibc's malloc.h)
M_MMAP_MAX = -4

_applied = None


def keep_freed_memory():
    """Switch glibc's malloc to reuse freed memory (``M_MMAP_MAX`` 0, ``M_TRIM_THRESHOLD`` -1: no mmap
    blocks, no trimming) for the rest of the process and of the processes it forks. Returns True when
    applied; False off Linux/glibc (other allocators already cache, or are left as they are)."""
    global _applied
    if _applied is None:
        _applied = sys.platform.startswith("linux") and _mallopt(M_MMAP_MAX, 0) and _mallopt(M_TRIM_THRESHOLD, -1)
    return _applied


def _mallopt(parameter, value):
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version           # glibc only: musl's mallopt accepts and ignores everything
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(parameter, value) == 1
