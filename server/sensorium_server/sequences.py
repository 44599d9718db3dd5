"""OIP sequences (Triton's sequence extension) on top of the stream sessions.

A sequence id names a stream session: ``sequence_start`` opens it (or restarts it),
later requests step it, ``sequence_end`` closes it after its request. Sequences
idle longer than the idle timeout are closed by :meth:`SequenceTable.reap`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from sensorium_server.dataplane import DataPlane
from sensorium_server.errors import FailedPreconditionError, short
from sensorium_server.sessions import Attachment, StreamSession


@dataclass
class Sequence:
    """One open sequence: its session, a lock serialising its steps, its last use."""

    session: StreamSession
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)


class SequenceTable:
    """Open sequences keyed by (OIP model name, sequence id)."""

    def __init__(self, plane: DataPlane) -> None:
        """Sequences use the plane's sessions (and count toward its session limit)."""
        self._plane = plane
        self._open: dict[tuple[str, int | str], Sequence] = {}

    def __len__(self) -> int:
        """Open sequences."""
        return len(self._open)

    def get(
        self, key: tuple[str, int | str], start: bool, model: str, version: int, mouse: str
    ) -> Sequence:
        """The sequence to step: a new one on ``start``, else the open one."""
        if start:
            self.end(key)
            session = self._plane.open_stream(
                model, version, mouse, np.dtype("float32"), Attachment()
            )
            self._open[key] = Sequence(session)
        elif key not in self._open:
            shown = key[1] if isinstance(key[1], int) else repr(short(key[1]))
            raise FailedPreconditionError(
                f"sequence {shown} of model {short(key[0])!r} is not open: start "
                "it with sequence_start=true (sequences idle for "
                f"{self._plane.settings.idle_timeout_s:g} s are closed)"
            )
        sequence = self._open[key]
        sequence.last_used = time.monotonic()
        return sequence

    def end(self, key: tuple[str, int | str]) -> None:
        """Close a sequence, if open, and free its state."""
        sequence = self._open.pop(key, None)
        if sequence is not None:
            self._plane.close_stream(sequence.session)

    def reap(self) -> int:
        """Close sequences idle past the timeout; returns how many."""
        limit = time.monotonic() - self._plane.settings.idle_timeout_s
        stale = [k for k, s in self._open.items() if s.last_used < limit and not s.lock.locked()]
        for key in stale:
            self.end(key)
        return len(stale)

    def close_all(self) -> None:
        """Close every sequence (shutdown)."""
        for key in list(self._open):
            self.end(key)
