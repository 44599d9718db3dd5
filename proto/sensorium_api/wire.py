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


def _varint_at(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; ValueError if cut or too long."""
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos
    raise ValueError("truncated or overlong varint")


def _fields(data: bytes | memoryview, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """Each field of ``data[pos:end]``: (number, wire type, key start, value start).

    A field ends where the next one's key starts (the last one at ``end``).
    ValueError if the bytes are not a sequence of whole fields.
    """
    out = []
    while pos < end:
        key_start = pos
        key, pos = _varint_at(data, pos, end)
        number, kind = key >> 3, key & 7
        value_start = pos
        if kind == 0:
            _, pos = _varint_at(data, pos, end)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            length, value_start = _varint_at(data, pos, end)
            pos = value_start + length
        else:  # groups (3, 4) are not used by our messages
            raise ValueError(f"wire type {kind}")
        if pos > end or number == 0:
            raise ValueError("field runs past the message")
        out.append((number, kind, key_start, value_start))
    return out


def split_payloads(
    raw: bytes, parents: frozenset[int], payload: int
) -> tuple[bytes, dict[int, memoryview]] | None:
    """``raw`` without the ``payload`` bytes field of its submessage fields ``parents``.

    Returns the message written again without those payloads (small: a few hundred
    bytes) and each payload as a view of ``raw`` by parent field number: no copy of
    the large bytes, which protobuf's parser would copy (twice, with the GIL held,
    into freshly faulted memory: tens of milliseconds for a long clip, in the event
    loop, while streams wait). None when ``raw`` is not in the plain form protobuf
    writes (a parent or a payload field twice, an unknown wire type, a cut field):
    the caller then parses it the usual way, which also reports what is wrong.
    """
    view = memoryview(raw)
    try:
        top = _fields(view, 0, len(raw))
    except ValueError:
        return None
    out: list[bytes | memoryview] = []
    payloads: dict[int, memoryview] = {}
    seen: set[int] = set()
    for i, (number, kind, key_start, value_start) in enumerate(top):
        value_end = top[i + 1][2] if i + 1 < len(top) else len(raw)
        if number not in parents or kind != 2:
            out.append(view[key_start:value_end])
            continue
        if number in seen:
            return None
        seen.add(number)
        try:
            inner = _fields(view, value_start, value_end)
        except ValueError:
            return None
        kept: list[memoryview] = []
        for j, (field, field_kind, field_key, field_value) in enumerate(inner):
            field_end = inner[j + 1][2] if j + 1 < len(inner) else value_end
            if field != payload:
                kept.append(view[field_key:field_end])
            elif field_kind != 2 or number in payloads:
                return None
            else:
                payloads[number] = view[field_value:field_end]
        length = sum(len(k) for k in kept)
        out += [delimited(number, length), *kept]
    return b"".join(out), payloads
