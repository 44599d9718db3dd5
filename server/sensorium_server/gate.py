"""Every call passes the gate first: undecodable bytes, authentication, the caller's name.

One server interceptor, on every service (ours, the Open Inference Protocol, health,
reflection):

- **Undecodable request bytes** (not a valid message; a string that is not UTF-8) get
  INVALID_ARGUMENT naming the method, on unary and streaming calls alike, instead of
  gRPC's UNKNOWN or INTERNAL and a logged traceback: requests are parsed by a wrapper
  that marks bad bytes, and the handler answers the mark.
- **Bearer tokens** (``--auth-tokens-file``): a file of ``NAME:SHA256_HEX`` lines. A
  call carries ``authorization: Bearer TOKEN``; the SHA-256 of TOKEN is compared in
  constant time with every entry. A missing or wrong token gets UNAUTHENTICATED. Open
  without a token: the health service and the OIP ``ServerLive``/``ServerReady``
  probes (what kubelets and load balancers call). Everything else, reflection and
  model metadata included, needs a token when tokens are configured.
- **The caller's name** (the token's NAME, ``anonymous`` without tokens) is set for
  the handler in :data:`CALLER`; metrics and logs use it, never the token.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from sensorium_server.errors import short

CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="-")
OPEN_METHODS = (
    "/grpc.health.v1.Health/",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
)
_LINE = re.compile(r"^([A-Za-z0-9_.@-]{1,64}):([0-9a-fA-F]{64})$")


class TokenFileError(ValueError):
    """The tokens file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Tokens:
    """Named SHA-256 digests of the accepted bearer tokens."""

    entries: tuple[tuple[str, bytes], ...]

    @classmethod
    def read(cls, path: str | Path) -> Tokens:
        """Read ``NAME:SHA256_HEX`` lines (blank lines and ``#`` comments ignored).

        Raises:
            TokenFileError: a missing file, a malformed line, a repeated name, no entries.
        """
        file = Path(path)
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise TokenFileError(f"--auth-tokens-file {file}: cannot read it ({err})") from None
        entries: list[tuple[str, bytes]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            match = _LINE.match(line)
            if match is None:
                raise TokenFileError(
                    f"--auth-tokens-file {file}, line {number}: expected NAME:SHA256_HEX "
                    "(a name of letters, digits, '._@-', then the 64 hex digits of the "
                    "token's SHA-256)"
                )
            name = match.group(1)
            if any(name == known for known, _ in entries):
                raise TokenFileError(f"--auth-tokens-file {file}, line {number}: {name} repeats")
            entries.append((name, bytes.fromhex(match.group(2))))
        if not entries:
            raise TokenFileError(f"--auth-tokens-file {file}: no tokens in it")
        return cls(tuple(entries))

    def caller(self, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
        """The name of the token a call carries, or None (every entry compared, constant time)."""
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        if not isinstance(header, str) or not header.startswith("Bearer "):
            return None
        digest = hashlib.sha256(header[len("Bearer ") :].strip().encode()).digest()
        found = None
        for name, expected in self.entries:
            if hmac.compare_digest(digest, expected):
                found = name
        return found


@dataclass(frozen=True)
class Malformed:
    """Request bytes that did not parse; the handler answers INVALID_ARGUMENT."""

    message: str


def _tolerant(parse: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if parse is None:
            return data
        try:
            return parse(data)
        except Exception as err:  # protobuf raises DecodeError, or others on odd bytes
            reason = short(str(err).splitlines()[0] if str(err) else type(err).__name__, 120)
            return Malformed(f"request: not a valid {method.rsplit('/', 1)[-1]} request ({reason})")

    return deserialize


Behavior = Callable[..., Any]


def _guard_unary(
    behavior: Behavior, caller: str, reject: tuple[grpc.StatusCode, str] | None
) -> Behavior:
    """Wrap a behavior whose first argument is one request."""

    async def check(request: Any, context: grpc.aio.ServicerContext) -> None:
        if reject is not None:
            await context.abort(*reject)
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        CALLER.set(caller)

    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(request, context)
            async for item in behavior(request, context):
                yield item

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await check(request, context)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return unary


# Streams that report a bad request in-band and go on (Triton's streaming extension).
IN_BAND = ("/inference.GRPCInferenceService/ModelStreamInfer",)


async def _checked(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, in_band: bool
) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Malformed) and not in_band:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        yield request


def _guard_streaming(
    behavior: Behavior, caller: str, reject: tuple[grpc.StatusCode, str] | None, in_band: bool
) -> Behavior:
    """Wrap a behavior whose first argument is a request iterator."""

    async def check(context: grpc.aio.ServicerContext) -> None:
        if reject is not None:
            await context.abort(*reject)
        CALLER.set(caller)

    if inspect.isasyncgenfunction(behavior):

        async def stream(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            await check(context)
            async for item in behavior(_checked(requests, context, in_band), context):
                yield item

        return stream

    async def call(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        await check(context)
        result: Awaitable[Any] | Any = behavior(_checked(requests, context, in_band), context)
        return await result if inspect.isawaitable(result) else result

    return call


class Gate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The interceptor; ``tokens`` None means no authentication."""

    def __init__(
        self, tokens: Tokens | None, on_reject: Callable[[str], None] = lambda m: None
    ) -> None:
        """Guard every call; ``on_reject(method)`` is told of each unauthenticated one."""
        self.tokens = tokens
        self.on_reject = on_reject

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The method's handler, wrapped (None: gRPC answers UNIMPLEMENTED)."""
        handler = await continuation(details)
        if handler is None:
            return handler
        method = str(details.method)
        caller, reject = ("anonymous" if self.tokens is None else "-"), None
        if self.tokens is not None and not method.startswith(OPEN_METHODS):
            name = self.tokens.caller(details.invocation_metadata)
            if name is None:
                self.on_reject(method)
                reject = (
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or unknown bearer token: send 'authorization: Bearer <token>' "
                    "(the SDK's token=, the CLI's --token)",
                )
            else:
                caller = name
        kind = next(
            k
            for k in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
            if getattr(handler, k) is not None
        )
        behavior = getattr(handler, kind)
        if handler.request_streaming:
            guarded = _guard_streaming(behavior, caller, reject, method in IN_BAND)
        else:
            guarded = _guard_unary(behavior, caller, reject)
        return handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer, method),
            **{kind: guarded},
        )


class CallerFilter(logging.Filter):
    """Adds ``caller`` (the token's name, or ``-`` outside a call) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate; never drops a record."""
        record.caller = CALLER.get("-")
        return True
