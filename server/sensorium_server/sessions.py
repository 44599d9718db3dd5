"""Stream sessions: the state each stream keeps in the server, and the call holding it.

A session outlives its call. When the call breaks (the client vanished, a proxy
restarted) the session is *detached* and kept for the idle timeout, so that the
client can reattach (resume) with its id; after that it expires and its memory is
freed. A session id starts with the server's replica id, so a replica can tell a
session that expired here from one that another replica holds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sensorium_server.errors import LimitExceededError, NotFoundError, UnavailableError
from sensorium_server.runtime import LoadedModel, MouseRuntime
from sensorium_server.scheduler import Timing
from sensorium_server.stepping import State

# Replies kept per session, so that frames re-sent after a resume are answered once.
REPLAY_DEPTH = 8


class Attachment:
    """The call a session is attached to; the server can tell it to end.

    ``interrupt(reason)`` wakes a call that waits for its next message (its read is
    abandoned). A call may instead install ``on_interrupt``, which then decides what
    to do (a drain sends the state while the read goes on, to see the half-close).
    """

    def __init__(self) -> None:
        """Not waiting, not interrupted."""
        self._timer: asyncio.Timeout | None = None
        self.reason: str | None = None
        self.on_interrupt: Callable[[str], bool] | None = None

    def waiting(self, timer: asyncio.Timeout | None) -> None:
        """The call waits for its next message under ``timer`` (None: not waiting)."""
        self._timer = timer

    def limit_wait(self, seconds: float) -> None:
        """Bound the call's current wait for a message to ``seconds`` from now."""
        if self._timer is not None:
            self._timer.reschedule(asyncio.get_running_loop().time() + seconds)

    def interrupt(self, reason: str) -> None:
        """Tell the call to end: it sees ``reason`` before its next read."""
        self.reason = reason
        if self.on_interrupt is not None and self.on_interrupt(reason):
            return
        if self._timer is not None:
            self._timer.reschedule(asyncio.get_running_loop().time())


@dataclass(frozen=True)
class Replayable:
    """A reply kept to answer the same frames again: where they were, what they held."""

    trial: int
    first_frame: int
    digest: int
    responses: np.ndarray
    timing: Timing


def digest(*arrays: np.ndarray) -> int:
    """CRC-32 of the arrays' bytes: tells re-sent frames from different ones."""
    value = 0
    for array in arrays:
        value = zlib.crc32(np.ascontiguousarray(array).data, value)
    return value


@dataclass
class StreamSession:
    """One open stream: which graph it runs, its state, where it is in the trial."""

    id: str
    model: LoadedModel
    mouse: MouseRuntime
    response_dtype: np.dtype
    state: State  # on the step graph's device
    next_frame: int = 0
    trial_count: int = 1
    opened: float = field(default_factory=time.monotonic)
    # Serialises steps, resets, snapshots and reattaching.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    owner: Attachment | None = None
    detached_at: float | None = None
    expiry: asyncio.TimerHandle | None = None
    replies: deque[Replayable] = field(default_factory=lambda: deque(maxlen=REPLAY_DEPTH))

    def reset(self) -> None:
        """Zero the state: the next frame starts a new trial."""
        self.state = self.mouse.initial_state()
        self.next_frame = 0
        self.trial_count += 1
        self.replies.clear()

    def replay(self, first_frame: int, value: int) -> Replayable | None:
        """The kept reply to the same frames of this trial, if any."""
        for kept in self.replies:
            if kept.first_frame == first_frame and kept.trial == self.trial_count:
                return kept if kept.digest == value else None
        return None


class SessionManager:
    """Open sessions, bounded in number; closing one frees its state."""

    def __init__(
        self,
        max_sessions: int,
        resume_window_s: float,
        on_change: Callable[[str], None] = lambda model: None,
        on_expire: Callable[[], None] = lambda: None,
    ) -> None:
        """At most ``max_sessions`` open; detached ones kept ``resume_window_s``.

        ``on_change(model)`` is called whenever the sessions of ``model`` change,
        ``on_expire()`` when a detached session expires.
        """
        self.max_sessions = max_sessions
        self.resume_window_s = resume_window_s
        self.replica_id = uuid.uuid4().hex[:12]
        self._sessions: dict[str, StreamSession] = {}
        self._on_change = on_change
        self._on_expire = on_expire

    def __len__(self) -> int:
        """Open sessions, attached or not."""
        return len(self._sessions)

    def open(
        self,
        model: LoadedModel,
        mouse: MouseRuntime,
        response_dtype: np.dtype,
        owner: Attachment,
        state: State | None = None,
    ) -> StreamSession:
        """A new session held by the call ``owner``, zero state unless ``state`` is given.

        When the limit is reached, the session detached the longest is closed first.

        Raises:
            LimitExceededError: when ``max_sessions`` are open and none is detached.
        """
        if len(self._sessions) >= self.max_sessions:
            detached = [s for s in self._sessions.values() if s.owner is None]
            if not detached:
                raise LimitExceededError(
                    f"{self.max_sessions} stream sessions are open, the server's limit; "
                    "close one or use another replica"
                )
            self.close(min(detached, key=lambda s: s.detached_at or 0.0))
        session = StreamSession(
            f"{self.replica_id}.{uuid.uuid4().hex}",
            model,
            mouse,
            response_dtype,
            mouse.initial_state() if state is None else state,
            owner=owner,
        )
        self._sessions[session.id] = session
        self._on_change(model.name)
        return session

    def find(self, session_id: str) -> StreamSession:
        """The open session ``session_id``.

        Raises:
            NotFoundError: when it was opened here and has ended or expired.
            UnavailableError: when another replica opened it (retry to reach that one).
        """
        session = self._sessions.get(session_id)
        if session is not None:
            return session
        shown = session_id[:80]
        if session_id.startswith(self.replica_id + "."):
            raise NotFoundError(
                f"stream session {shown!r} has ended or expired (a session whose "
                f"connection breaks is kept {self.resume_window_s:g} s)"
            )
        raise UnavailableError(
            f"stream session {shown!r} is not held by this replica ({self.replica_id}); "
            "retry to reach the replica that holds it"
        )

    def attach(self, session: StreamSession, attachment: Attachment) -> None:
        """Make ``attachment`` the session's call; a previous call is told to end."""
        if session.owner is not None and session.owner is not attachment:
            session.owner.interrupt("the session was resumed by another call")
        session.owner = attachment
        self._keep(session)

    def detach(self, session: StreamSession, attachment: Attachment) -> None:
        """The call ``attachment`` broke: keep the session for the resume window."""
        if session.owner is not attachment or session.id not in self._sessions:
            return
        session.owner = None
        session.detached_at = time.monotonic()
        session.expiry = asyncio.get_running_loop().call_later(
            self.resume_window_s, self._expire, session
        )

    def _keep(self, session: StreamSession) -> None:
        """Cancel the session's expiry (it was reattached or closed)."""
        if session.expiry is not None:
            session.expiry.cancel()
        session.expiry = None
        session.detached_at = None

    def _expire(self, session: StreamSession) -> None:
        self._on_expire()
        self.close(session)

    def close(self, session: StreamSession) -> None:
        """Forget ``session`` and drop its state."""
        if self._sessions.pop(session.id, None) is not None:
            self._on_change(session.model.name)
        session.state = []
        session.replies.clear()
        session.owner = None
        self._keep(session)

    def interrupt_all(self, reason: str) -> int:
        """Interrupt every attached call (drain); returns how many."""
        attached = [s.owner for s in self._sessions.values() if s.owner is not None]
        for owner in attached:
            owner.interrupt(reason)
        return len(attached)

    def by_model(self, name: str) -> int:
        """Open sessions of model ``name``."""
        return sum(1 for s in self._sessions.values() if s.model.name == name)
