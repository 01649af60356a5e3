"""Give the worker's free heap memory back to the system, every `TRIM_SECONDS`.

glibc keeps memory that Python or RocksDB freed inside its arenas for reuse and returns only the
top of the main heap on its own. After a burst (a backlog decoded at once, a RocksDB compaction)
the worker's RSS then stays up by what the burst took: in the worker memory test heap in use
stayed near 100 MiB while glibc's free bytes rose from 69 to 168 MiB and RSS by 87 MiB (CI,
2026-11-30). `malloc_trim(0)` hands every whole free page of every arena back (madvise), so RSS
follows what the worker holds. It runs in a thread (ctypes releases the GIL) and takes a few
milliseconds; on a C library without it (musl, macOS) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

# Often enough that RSS follows a burst within half a minute, rare enough to cost nothing.
TRIM_SECONDS = 30.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def resident_bytes() -> int:
    """This process's resident set, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class HeapTrimmer:
    """`trim()` returns free heap pages to the system and says how much RSS fell."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> int:
        """Bytes of RSS given back (0 when nothing was, or no `malloc_trim`)."""
        if self._trim is None:
            return 0
        before = resident_bytes()
        self._trim(0)
        return max(0, before - resident_bytes())
