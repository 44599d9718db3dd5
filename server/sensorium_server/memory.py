"""The C heap of a long-running server: what malloc holds, and giving freed memory back.

Clips allocate and free hundreds of MB per run (ONNX Runtime's buffers for each chunk,
the response tensors). glibc keeps freed memory in its arenas instead of returning it
to the OS, and after large frees it raises its mmap threshold, so later large buffers
come from the arenas too: the resident size creeps up over hours although nothing
leaks. :class:`HeapTrimmer` calls ``malloc_trim(0)`` every so often on a thread of its
own (the call releases the GIL and locks one arena at a time), which hands free pages
back, and records the heap's figures from ``mallinfo2`` for the metrics. Where the C
library is not glibc (musl, macOS) both are unavailable and the trimmer does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33+): every field a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes from sbrk (the main arena)
            "ordblks",  # free chunks
            "smblks",
            "hblks",  # mmapped chunks
            "hblkhd",  # bytes in mmapped chunks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes allocated (in use) in the arenas
            "fordblks",  # bytes free in the arenas
            "keepcost",
        )
    ]


@dataclass(frozen=True)
class Heap:
    """The C heap at one moment, bytes."""

    in_use: int  # allocated and not freed (arenas and mmapped chunks)
    free: int  # freed but held by malloc's arenas


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)  # CDLL: the GIL is released during each call
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallinfo2.argtypes = []
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc, or a glibc older than 2.33
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    """Whether this C library can report and trim its heap."""
    return _LIBC is not None


def heap() -> Heap | None:
    """The heap's figures now (None: not glibc)."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return Heap(in_use=info.uordblks + info.hblkhd, free=info.fordblks)


def trim() -> bool:
    """Return free heap memory to the OS; True when some was returned."""
    return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False


def freeze_start_up() -> int:
    """Move every Python object alive now out of the garbage collector's sight; their count.

    Called once the models are loaded: the modules, protobuf descriptors and model
    objects of start-up live as long as the process. A full collection walks every
    object the collector tracks, and on 8,000-neuron models that took 12 to 13 ms (on
    the server's event loop, every stream waiting) about once a minute under clip load.
    Frozen, they are skipped; what is made later (sessions, reloaded versions) is
    collected as before.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class HeapTrimmer(threading.Thread):
    """Every ``interval_s``: trim the heap, then note its figures and the trim's cost."""

    def __init__(self, interval_s: float, observe: Callable[[Heap | None, float], None]) -> None:
        """Trim every ``interval_s`` seconds once started (> 0); ``observe(heap, s)`` each time."""
        super().__init__(daemon=True, name="heap-trim")
        self.interval_s = interval_s
        self._observe = observe
        self._stop_event = threading.Event()

    def run(self) -> None:  # noqa: D102
        while not self._stop_event.wait(self.interval_s):
            self.trim_now()

    def trim_now(self) -> None:
        """Trim once now and report the heap after it."""
        began = time.perf_counter()
        trim()
        took = time.perf_counter() - began
        self._observe(heap(), took)
        if took > 0.05:
            logger.info("heap trim took %.0f ms", took * 1e3)

    def stop(self) -> None:
        """End the thread (at its next wake-up at the latest)."""
        self._stop_event.set()
