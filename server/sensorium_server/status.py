"""The one place where domain errors become gRPC status codes.

Unknown exceptions become INTERNAL with a generic message; the traceback goes to
the log, never to the client.
"""

from __future__ import annotations

import logging
import time

import grpc

from sensorium_server.errors import (
    FailedPreconditionError,
    IdleTimeoutError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    ServingError,
    UnavailableError,
    short,
)

logger = logging.getLogger(__name__)

_CODES: dict[type[ServingError], grpc.StatusCode] = {
    InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    LimitExceededError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    IdleTimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,
}
INTERNAL_MESSAGE = "internal error; the server log has the details"
MAX_MESSAGE = 2000  # characters of a status message (gRPC metadata is bounded)


def status_of(error: BaseException, rpc: str) -> tuple[grpc.StatusCode, str]:
    """The status code and client-safe message for ``error`` raised while serving ``rpc``."""
    for kind, code in _CODES.items():
        if isinstance(error, kind):
            return code, short(str(error), MAX_MESSAGE)
    _log_fault(rpc, error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


LOG_PER_MINUTE = 10  # tracebacks logged per minute; beyond, counted and summarised
_window = {"start": 0.0, "logged": 0, "suppressed": 0}


def _log_fault(rpc: str, error: BaseException) -> None:
    """Log a server fault with its traceback, at most ``LOG_PER_MINUTE`` a minute."""
    now = time.monotonic()
    if now - _window["start"] >= 60:
        if _window["suppressed"]:
            logger.error(
                "%d more internal errors in the last minute (not logged)", _window["suppressed"]
            )
        _window.update(start=now, logged=0, suppressed=0)
    if _window["logged"] < LOG_PER_MINUTE:
        _window["logged"] += 1
        logger.error("%s failed", rpc, exc_info=error)
    else:
        _window["suppressed"] += 1
