"""The C allocator's settings for a long-running server (glibc; a no-op elsewhere).

Two glibc defaults make a server that runs for hours hold more and more memory it
no longer uses:

- one malloc arena per thread, up to 8 per core: gRPC's and the inference lanes'
  threads each fragment their own heap; two arenas are enough here;
- a *dynamic* mmap threshold: after a large buffer (a clip chunk's responses, a few
  MB) is freed, glibc raises the threshold to its size, so the next ones come from
  the heap, where buffers of varying sizes fragment it and are seldom returned. A
  fixed threshold of 1 MiB keeps every large buffer mmapped: freed, it goes back to
  the system at once. Stream steps allocate far less than that per call.

Environment variables the user set (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``)
win: the matching setting is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
M_ARENA_MAX = -8
SETTINGS = (
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, 2),
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 1 << 20),
)


def tune_malloc() -> dict[str, int]:
    """Apply the settings above where glibc is the allocator; returns what was set."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return {}
    applied = {}
    for variable, parameter, value in SETTINGS:
        if variable in os.environ:
            continue
        if mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) == 1:
            applied[variable] = value
    logger.debug("malloc settings: %s", applied)
    return applied
