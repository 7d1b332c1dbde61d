"""Freed memory goes back to the system within a second, without making every large array slow.

glibc serves blocks over its mmap threshold from a mapping of their own, unmapped when freed: memory
returns at once, but every such block is page-faulted in anew, and page faults are dear (measured
here, a 256-row call of the 2x128 model: encoding its 128 KiB state tensors took 3.6 ms with a
128 KiB threshold against 0.1 ms from the heap, and onnxruntime's run 2.5 ms against 0.7). Left to
itself, glibc raises the threshold to the largest block freed so far and keeps what the heap once
held (80 streams' worth of batches left RSS at 300 MB for good).

So: blocks up to 1 MiB come from the heap, where freed ones are reused without faults, and every
second a thread gives the heap's free pages back (malloc_trim: about 20 ms per GB it frees, nothing
when there is nothing to free). Larger blocks keep mappings of their own: taken from the heap too (up
to 32 MiB, tried first), the answers of 80 streams of 1000-step chunks left 45-80 MB of the worker
threads' arenas fragmented after the load, which no trim could give back (10 MB at 1 MiB); a 256-row
call of the 2x128 model, whose largest blocks are 128 KiB, was as fast either way (p50 2.6 ms).
Elsewhere than glibc, both do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging

log = logging.getLogger("lstmserve.server")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h
_HEAP_BLOCKS_UP_TO = 1 << 20  # setting it also stops glibc's drift of the threshold
# free() itself shrinks the heap when this much is free at its top: left at 128 KiB, freeing one large
# block gave its pages back and the next one faulted them in again (a 256-row answer's encoding took
# 2.4 ms instead of 0.15). The trim every second gives them back instead.
_TOP_KEPT_UP_TO = 64 << 20
TRIM_SECONDS = 1.0


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


class MemoryReturn:
    def __init__(self) -> None:
        self._libc = _glibc()
        if self._libc is not None:
            self._libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS_UP_TO)
            self._libc.mallopt(_M_TRIM_THRESHOLD, _TOP_KEPT_UP_TO)

    async def run(self, seconds: float = TRIM_SECONDS) -> None:
        """Every `seconds`, the heap's free pages back to the system (off the event loop's thread:
        ctypes lets go of the GIL, and a trim of a large heap takes some milliseconds)."""
        if self._libc is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(seconds)
            await loop.run_in_executor(None, self._libc.malloc_trim, 0)
