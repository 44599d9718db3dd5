"""One ``StreamPredict`` call's reads and writes, each bounded by the idle timeout.

A stream that sends nothing for ``--idle-timeout-s``, or whose replies go unread that
long (gRPC flow control holds the write), is ended and its session freed. The server
can interrupt a call that waits for its next message (drain, a resume elsewhere).
"""

from __future__ import annotations

import asyncio

import grpc

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_server.dataplane import DataPlane
from sensorium_server.errors import IdleTimeoutError
from sensorium_server.sessions import Attachment

DRAINING = "this replica is draining"
HALF_CLOSE_CHECK_S = 0.05


class StreamCall:
    """Reads and writes of one call, under the idle timeout; interruptible reads."""

    def __init__(self, plane: DataPlane, context: grpc.aio.ServicerContext) -> None:
        """Wrap ``context``; the idle timeout comes from the plane's settings."""
        self._plane = plane
        self._context = context
        self._timeout = plane.settings.idle_timeout_s
        self.attachment = Attachment()

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
                try:
                    request = await self._context.read()
                finally:
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
        return request

    async def write(self, reply: pb.StreamPredictResponse) -> None:
        """Send ``reply``.

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
