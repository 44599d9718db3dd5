"""Serialized messages with large array payloads, written without holding the GIL.

A 3,000-frame clip answers 96 MB of float32 responses. Built the plain way
(``tobytes``, a ``Tensor``, the reply, ``SerializeToString``) that is four copies of
96 MB, each a single C call holding the GIL for 40 to 140 ms: every other thread of
the process, the event loop serving 30 Hz streams included, waits. Here the small
fields are serialized by protobuf as usual and the payload is written straight into
the result by ``ctypes.memmove``, which releases the GIL while it copies: one copy,
and the process goes on serving meanwhile.

The result holds the same fields protobuf writes for the message, each once (the
payload's field last), so any protobuf parser reads it as that message.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

# Below this the plain way is as fast and holds the GIL for well under a millisecond.
LARGE_BYTES = 1 << 20

Piece = bytes | np.ndarray


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def delimited(number: int, length: int) -> bytes:
    """Key and length of a length-delimited field (bytes, string, message) ``number``."""
    return varint(number << 3 | 2) + varint(length)


def size(pieces: Sequence[Piece]) -> int:
    """Bytes that ``pieces`` join to."""
    return sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in pieces)


def join(pieces: Sequence[Piece]) -> bytes:
    """Serialized pieces and C-contiguous arrays (their raw bytes) as one ``bytes``.

    Large results are allocated zeroed (calloc: no pass over the memory) and filled
    with ``ctypes.memmove``, which runs without the GIL. The ``bytes`` object is new
    and unshared while it is filled, as C code fills ``PyBytes_FromStringAndSize(NULL,
    n)``.
    """
    for piece in pieces:
        if isinstance(piece, np.ndarray) and not piece.flags.c_contiguous:
            raise ValueError("array pieces must be C-contiguous")
    total = size(pieces)
    if total < LARGE_BYTES:
        return b"".join(p.tobytes() if isinstance(p, np.ndarray) else p for p in pieces)
    out = bytes(total)
    address = ctypes.cast(ctypes.c_char_p(out), ctypes.c_void_p).value
    assert address is not None
    offset = 0
    for piece in pieces:
        if isinstance(piece, np.ndarray):
            ctypes.memmove(address + offset, piece.ctypes.data, piece.nbytes)
            offset += piece.nbytes
        else:
            ctypes.memmove(address + offset, piece, len(piece))
            offset += len(piece)
    return out
