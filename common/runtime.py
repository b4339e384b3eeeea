"""Process-level CPU runtime settings that the entry points apply before running a model."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 30) -> bool:
    """Make glibc keep large freed buffers in the process instead of handing them back to the kernel.

    By default glibc serves every allocation above 32 MB with a fresh mmap and unmaps it on free, so a
    CPU network whose activations exceed that size (MSCAN-B at 480x640, R-MSA blocks of 4096 rays)
    page-faults through every buffer again at each forward: 280k minor faults and about a quarter of
    the inference time for SMMCL at 480x640 on 2 cores. With the thresholds raised, freed buffers are
    reused; the peak RSS is unchanged (it is set by the largest live set), but memory freed after the
    peak is not returned to the OS until the process ends. Process-wide and idempotent; the scripts call
    it, library code never does. Returns whether the setting is in effect (False off glibc/Linux).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    if not ok:
        log.debug("mallopt refused the thresholds; large buffers keep being unmapped on free")
    _applied = ok
    return ok
