"""One ``StreamPredict`` call's reads and writes, each bounded by the idle timeout.

A stream that sends nothing for ``--idle-timeout-s``, or whose replies go unread that
long (gRPC flow control holds the write), is ended and its session freed. The server
can interrupt a call that waits for its next message (a resume elsewhere), or have it
hand over its state (a drain): the notice is written while the call's read goes on,
so that the call ends on the client's half-close, after the client has the notice
(a server that closed its connections first could reset them with the notice unread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_server.dataplane import DataPlane
from sensorium_server.errors import IdleTimeoutError, InvalidInputError
from sensorium_server.gate import Malformed
from sensorium_server.sessions import Attachment

logger = logging.getLogger(__name__)

DRAINING = "this replica is draining"
HALF_CLOSE_CHECK_S = 0.05
ACK_S = 5.0  # how long a drained stream waits for its client to half-close


class StreamCall:
    """Reads and writes of one call, under the idle timeout; interruptible reads."""

    def __init__(self, plane: DataPlane, context: grpc.aio.ServicerContext) -> None:
        """Wrap ``context``; the idle timeout comes from the plane's settings."""
        self._plane = plane
        self._context = context
        self._timeout = plane.settings.idle_timeout_s
        self.attachment = Attachment()
        self._reading = False
        self.notice: asyncio.Future[None] | None = None

    async def read(self) -> pb.StreamPredictRequest | None:
        """The next message; None at half-close or once interrupted (see ``attachment``).

        Raises:
            IdleTimeoutError: when nothing came for the idle timeout.
        """
        if self.attachment.reason is not None:
            return None
        try:
            async with asyncio.timeout(self._timeout) as timer:  # no task per message
                self.attachment.waiting(timer)
                self._reading = True
                try:
                    request = await self._context.read()
                finally:
                    self._reading = False
                    self.attachment.waiting(None)
        except TimeoutError:
            if self.attachment.reason is not None:
                return None
            raise IdleTimeoutError(
                f"no message for {self._timeout:g} s; the stream session was closed"
            ) from None
        if request is grpc.aio.EOF:
            # A broken connection also ends the reads, and gRPC cancels the call just
            # after: wait a moment so that a break is not taken for a half-close (the
            # cancellation lands in this sleep and the session is kept for a resume).
            await asyncio.sleep(HALF_CLOSE_CHECK_S)
            if self._context.cancelled():
                raise asyncio.CancelledError
            return None
        if isinstance(request, Malformed):  # bytes that did not parse (see gate.py)
            raise InvalidInputError(request.message)
        return request

    def drain(self, notice: Callable[[], Awaitable[None]]) -> None:
        """On a drain, send ``notice()`` at once if the call waits for a message.

        Otherwise (a request is being answered) the handler sends it after its reply.
        """

        def interrupted(reason: str) -> bool:
            if reason != DRAINING:
                return False
            if self._reading and self.notice is None:
                self.notice = asyncio.ensure_future(send())
            return True

        async def send() -> None:
            try:
                await notice()
            except Exception as err:  # gRPC's write errors have no public type
                # The call died under the write (its client went away): nobody reads the
                # notice, and the session stays detached for a resume, as after any break.
                logger.info(
                    "draining: a stream's notice was not delivered (%s)", type(err).__name__
                )
                return
            self.attachment.limit_wait(ACK_S)  # the read goes on to see the half-close

        self.attachment.on_interrupt = interrupted

    async def acknowledged(self) -> None:
        """After the last message: wait for the client's half-close, at most ACK_S.

        Messages the client sent meanwhile are dropped: they were not answered, and the
        client sends them again where it continues. A cancellation propagates.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_S):
                while await self._context.read() is not grpc.aio.EOF:
                    pass

    async def write(self, reply: pb.StreamPredictResponse | bytes) -> None:
        """Send ``reply`` (a message, or one serialized).

        Raises:
            IdleTimeoutError: when the client did not take it for the idle timeout.
        """
        try:
            async with asyncio.timeout(self._timeout):
                await self._context.write(reply)
        except TimeoutError:
            self._plane.metrics.stream_events.labels("write_timeout").inc()
            raise IdleTimeoutError(
                f"replies unread for {self._timeout:g} s; the stream session was closed"
            ) from None
