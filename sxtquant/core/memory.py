"""How the C heap treats freed memory (glibc malloc): one place for every stage.

With glibc, every tensor larger than the malloc mmap threshold (at most 32 MB, often
128 kB) is a fresh mmap: the kernel hands it out one zeroed page per page fault and
takes it back on free. One forward pass of the paper network on a 256 x 256 tile
allocates ~700 MB that way (~170,000 page faults, ~17 % of its CPU time). While memory
is *held* (:func:`hold_freed_memory`), malloc serves large blocks from its heap and
keeps freed ones there, so repeated passes write into memory that is already mapped;
when the last holder lets go (:func:`release_held_memory`), glibc's defaults come back
and the heap is trimmed. :func:`trim_memory` gives the heap's free memory back at once:
before a pass on another input shape (blocks sized for other tiles would only fragment
the heap) and after each block in a memory-limited Dask worker.

Nothing happens where the C library is not glibc, or where the user configured malloc
through the environment (``MALLOC_*`` variables, ``GLIBC_TUNABLES``), except
:func:`trim_memory`, which changes no setting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

__all__ = ["hold_freed_memory", "release_held_memory", "reuse_freed_memory", "trim_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_MALLOC_ENV = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)
_holders = 0
_holders_lock = threading.Lock()
_held_for_good = False


def _glibc(*, settings: bool = True):
    """glibc, or None; with ``settings``, also None where the user configured malloc."""
    if not sys.platform.startswith("linux"):
        return None
    if settings and any(v in os.environ for v in _MALLOC_ENV):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- present in glibc only
        return libc
    except (OSError, AttributeError):
        return None


def hold_freed_memory() -> bool:
    """Keep freed memory in the heap (process-wide) until the matching release.

    Holds are counted; returns whether the setting is in effect (glibc only).
    """
    global _holders
    libc = _glibc()
    if libc is None:
        return False
    with _holders_lock:
        if _holders == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, -1)  # -1: never trim (an int caps at 2 GB)
        _holders += 1
    return True


def release_held_memory() -> None:
    """End one :func:`hold_freed_memory`; the last one restores glibc's defaults."""
    global _holders
    libc = _glibc()
    with _holders_lock:
        _holders -= 1
        if _holders == 0 and libc is not None:
            libc.mallopt(_M_MMAP_MAX, 65536)  # glibc's defaults
            libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
            libc.malloc_trim(0)


def reuse_freed_memory() -> bool:
    """Hold freed memory for the rest of the process (idempotent).

    CPU inference allocates and frees activations of hundreds of MB per layer; after
    this call they come from the heap and are reused, and the process keeps its peak
    memory until it exits.

    Returns
    -------
    bool
        Whether the setting is in effect.
    """
    global _held_for_good
    if not _held_for_good:
        _held_for_good = hold_freed_memory()
    return _held_for_good


def trim_memory() -> bool:
    """Give the C heap's free memory back to the system now (glibc ``malloc_trim``).

    It changes no setting, so it also runs where malloc is configured through the
    environment (a Dask worker sets ``MALLOC_TRIM_THRESHOLD_``). Returns whether it
    could be done.
    """
    libc = _glibc(settings=False)
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
