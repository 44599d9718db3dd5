"""Typed exceptions of the client SDK, one per gRPC status a caller may act on."""

from __future__ import annotations

import grpc


class SensoriumError(Exception):
    """Base class; ``code`` is the gRPC status (None for errors raised before sending)."""

    code: grpc.StatusCode | None = None

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        """Wrap ``message``; ``code`` overrides the class's status code."""
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgumentError(SensoriumError, ValueError):
    """The inputs are malformed (shape, dtype, NaN, range); fix the call."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(SensoriumError, LookupError):
    """Unknown model, version or mouse."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(SensoriumError):
    """A message out of order (e.g. a frame index that is not the next one)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(SensoriumError):
    """A server limit (queue, sessions, message size); retry later or elsewhere."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(SensoriumError, ConnectionError):
    """The server cannot be reached, is loading, or is draining."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(SensoriumError, TimeoutError):
    """The call took longer than its deadline, or a stream sat idle too long."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class AuthenticationError(SensoriumError, PermissionError):
    """Missing or rejected credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ServerError(SensoriumError):
    """The server failed (INTERNAL, UNKNOWN, ...); its log has the details."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[SensoriumError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: AuthenticationError,
}


def from_status(code: grpc.StatusCode | None, details: str | None) -> SensoriumError:
    """The typed exception for a status code and the server's message."""
    kind = _BY_CODE.get(code, ServerError) if code is not None else ServerError
    name = code.name if code is not None else "UNKNOWN"
    return kind(f"{name}: {details or 'no details'}", code)


def from_rpc_error(error: grpc.RpcError) -> SensoriumError:
    """The typed exception for a failed call, with the server's message."""
    if isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        return from_status(error.code(), error.details())
    return from_status(None, str(error))
