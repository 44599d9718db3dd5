"""Stream sessions: the state tensors each open stream keeps in the server."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from sensorium_server.errors import LimitExceededError
from sensorium_server.runtime import LoadedModel, MouseRuntime


@dataclass
class StreamSession:
    """One open stream: which graph it runs, its state, where it is in the trial."""

    id: str
    model: LoadedModel
    mouse: MouseRuntime
    response_dtype: np.dtype
    state: list[np.ndarray]
    next_frame: int = 0
    trial_count: int = 1
    opened: float = field(default_factory=time.monotonic)

    def reset(self) -> None:
        """Zero the state: the next frame starts a new trial."""
        self.state = self.mouse.initial_state()
        self.next_frame = 0
        self.trial_count += 1


class SessionManager:
    """Open sessions, bounded in number; closing one frees its state."""

    def __init__(self, max_sessions: int) -> None:
        """Allow at most ``max_sessions`` open at once."""
        self.max_sessions = max_sessions
        self._sessions: dict[str, StreamSession] = {}

    def __len__(self) -> int:
        """Open sessions."""
        return len(self._sessions)

    def open(
        self, model: LoadedModel, mouse: MouseRuntime, response_dtype: np.dtype
    ) -> StreamSession:
        """A new session with zero state.

        Raises:
            LimitExceededError: when ``max_sessions`` are open.
        """
        if len(self._sessions) >= self.max_sessions:
            raise LimitExceededError(
                f"{self.max_sessions} stream sessions are open, the server's limit; "
                "close one or use another replica"
            )
        session = StreamSession(
            uuid.uuid4().hex, model, mouse, response_dtype, mouse.initial_state()
        )
        self._sessions[session.id] = session
        return session

    def close(self, session: StreamSession) -> None:
        """Forget ``session`` and drop its state."""
        self._sessions.pop(session.id, None)
        session.state = []

    def by_model(self, name: str) -> int:
        """Open sessions of model ``name``."""
        return sum(1 for s in self._sessions.values() if s.model.name == name)
