"""Domain errors of the server; they carry no transport codes (``status.py`` maps them)."""

from __future__ import annotations


def short(text: str, limit: int = 64) -> str:
    """``text`` cut to ``limit`` characters (names a client chose, echoed in messages)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


class ServingError(Exception):
    """Base class: the message is safe to show to the client."""


class InvalidInputError(ServingError):
    """A field has the wrong shape, dtype, or value; the message names field and expectation."""


class NotFoundError(ServingError):
    """Unknown model, version, mouse, or session."""


class FailedPreconditionError(ServingError):
    """A message that is valid on its own but not now (frames before open, wrong order)."""


class LimitExceededError(ServingError):
    """A server limit (queue, sessions, frames per message) was reached."""


class UnavailableError(ServingError):
    """The server cannot take the call now (draining, no model loaded)."""


class IdleTimeoutError(ServingError):
    """A stream sent nothing for longer than the idle timeout; its session was closed."""


class StartupError(Exception):
    """A setting the server cannot start with (a TLS or tokens file); names file and fault."""
