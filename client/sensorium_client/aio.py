"""The asyncio client: the same calls as :class:`~sensorium_client.sdk.Client`, awaited."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from sensorium_client import messages
from sensorium_client.catalog import ModelCatalog
from sensorium_client.connection import Connection
from sensorium_client.errors import (
    DeadlineExceededError,
    SensoriumError,
    ServerError,
    from_rpc_error,
    from_status,
)
from sensorium_client.inputs import as_frames, check_arrays
from sensorium_client.messages import ModelInfo, ServerTiming, StreamInfo
from sensorium_client.recovery import (
    OPEN_FLOOR_S,
    RECOVERY_S,
    Recovery,
    backoff,
    recoverable,
    recovery_pause,
)


class AsyncClient:
    """An asyncio connection to a sensorium-serve server.

    Example::

        async with AsyncClient("localhost:8001") as client:
            responses = await client.predict(video, behavior, pupil_center)
    """

    def __init__(self, target: str | None = None, **settings: Any) -> None:
        """Connect to ``target``; ``settings`` as for :class:`~sensorium_client.sdk.Client`."""
        if target is not None:
            settings["target"] = target
        self.connection = Connection(**settings)
        self._channel = self.connection.aio_channel()
        self._stub = pb_grpc.PredictorStub(self._channel)
        self._models = ModelCatalog(self.connection.model_ttl_s)
        self._chunks = True  # long clips by PredictChunks, until a server lacks it

    async def __aenter__(self) -> AsyncClient:
        """Use as an async context manager; the channel closes on exit."""
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the channel."""
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def _call(
        self, method: Any, request: Any, timeout: float | None, metadata: Sequence[tuple[str, str]]
    ) -> Any:
        attempt = 0
        while True:  # every unary call is idempotent: retry UNAVAILABLE (a draining replica)
            try:
                return await method(
                    request,
                    timeout=self.connection.timeout if timeout is None else timeout,
                    metadata=self.connection.call_metadata(metadata),
                )
            except grpc.RpcError as err:
                if not recoverable(err) or attempt >= self.connection.retries:
                    raise from_rpc_error(err) from None
            await asyncio.sleep(backoff(attempt + 3))
            attempt += 1

    async def models(
        self, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()
    ) -> list[ModelInfo]:
        """Every model version the server serves."""
        reply = await self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout, metadata)
        return [messages.model_info(m) for m in reply.models]

    async def model(
        self,
        name: str = "",
        version: int = 0,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> ModelInfo:
        """One model version (empty name: the only model; version 0: the latest)."""
        known = self._models.get(name, version)
        if known is not None:
            return known
        request = pb.GetModelRequest(model=name, version=version)
        reply = await self._call(self._stub.GetModel, request, timeout, metadata)
        return self._models.put(name, version, messages.model_info(reply.model))

    async def predict(
        self,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        mouse: str = "",
        model: str = "",
        version: int = 0,
        dtype: str = "float32",
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> np.ndarray:
        """Responses (T, N) to one trial (see :meth:`Client.predict`)."""
        info = await self.model(model, version, timeout, metadata)
        arrays = check_arrays(video, behavior, pupil_center, info.frame_shape)
        chosen = info.mouse(mouse)
        # The version asked for (0: the server's latest, which a live repository moves on).
        request = messages.predict_request(info.name, version, chosen.mouse, arrays, dtype)
        if self._chunks and messages.chunked(len(arrays[0]), chosen.neuron_count, dtype):
            responses = await self._predict_chunks(request, timeout, metadata)
            if responses is not None:
                return responses
        reply = await self._call(self._stub.Predict, request, timeout, metadata)
        return messages.responses_of(reply)

    async def _predict_chunks(
        self, request: pb.PredictRequest, timeout: float | None, metadata: Sequence[tuple[str, str]]
    ) -> np.ndarray | None:
        """Responses of a long clip by ``PredictChunks`` (see ``Client._predict_chunks``)."""
        attempt = 0
        while True:
            parts = messages.Parts()
            try:
                call = self._stub.PredictChunks(
                    request,
                    timeout=self.connection.timeout if timeout is None else timeout,
                    metadata=self.connection.call_metadata(metadata),
                )
                async for reply in call:
                    parts.add(reply)
                return parts.result()
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED:  # a server before PredictChunks
                    self._chunks = False
                    return None
                if not recoverable(err) or attempt >= self.connection.retries:
                    raise from_rpc_error(err) from None
            except ValueError as err:
                raise ServerError(str(err)) from None
            await asyncio.sleep(backoff(attempt + 3))
            attempt += 1

    async def stream(
        self,
        mouse: str = "",
        model: str = "",
        version: int = 0,
        dtype: str = "float32",
        metadata: Sequence[tuple[str, str]] = (),
        snapshot: pb.StateSnapshot | None = None,
        recovery_s: float = RECOVERY_S,
    ) -> AsyncStreamSession:
        """Open a stream session (see :meth:`Client.stream`); it recovers the same way."""
        if snapshot is not None:
            mouse, model, version = snapshot.mouse, snapshot.model, snapshot.version
        info = await self.model(model, version)
        # The version asked for (0: the server's latest); resumes name the opened one.
        recovery = Recovery(info.name, version, info.mouse(mouse).mouse, dtype, recovery_s)
        session = AsyncStreamSession(self, recovery, info.frame_shape, metadata)
        first = recovery.open_request() if snapshot is None else recovery.handoff_request(snapshot)
        # A draining (or gone) replica refuses with UNAVAILABLE: a new call goes to the
        # next one, up to ``retries`` times (as unary calls).
        for attempt in range(self.connection.retries + 1):
            if attempt:
                await asyncio.sleep(backoff(attempt))
            try:
                await session._connect(first, self.connection.timeout)
                return session
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.connection.retries:
                    raise from_rpc_error(err) from None
        raise AssertionError("unreachable")


class AsyncStreamSession:
    """One ``StreamPredict`` call driven with ``await``; recovers like the sync session."""

    def __init__(
        self,
        client: AsyncClient,
        recovery: Recovery,
        frame_shape: tuple[int, int],
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        """Not connected yet: :meth:`AsyncClient.stream` connects it."""
        self._client = client
        self.recovery = recovery
        self._frame_shape = frame_shape
        self._metadata = client.connection.call_metadata(metadata)
        self._closed = False
        self._call: Any = None

    @property
    def info(self) -> StreamInfo:
        """What the server said when it opened (or last reattached) the session."""
        assert self.recovery.info is not None
        return self.recovery.info

    @property
    def timing(self) -> ServerTiming | None:
        """The server's queue and graph time of the last step answered (None before one)."""
        return self.recovery.timing

    async def _connect(self, first: pb.StreamPredictRequest, within: float) -> None:
        """A new call whose first message is ``first``; raw ``grpc.RpcError`` on failure.

        Raises:
            DeadlineExceededError: no ``opened`` within ``within`` s (the call is cancelled).
        """
        if self._call is not None:
            self._call.cancel()
        self._call = call = self._client._stub.StreamPredict(metadata=self._metadata)
        within = max(within, OPEN_FLOOR_S)
        try:
            await asyncio.wait_for(call.write(first), within)
            reply = await asyncio.wait_for(call.read(), within)
        except TimeoutError:
            call.cancel()
            raise DeadlineExceededError(
                f"the server did not open the stream within {within:g} s"
            ) from None
        if reply is grpc.aio.EOF:
            await self._raise_status()
            raise ServerError("the server ended the stream")
        if reply.WhichOneof("kind") != "opened":
            raise ServerError(f"expected an 'opened' reply, got {reply.WhichOneof('kind')!r}")
        self.recovery.opened(reply)

    async def _exchange(
        self, request: pb.StreamPredictRequest, kind: str
    ) -> pb.StreamPredictResponse:
        if self._closed:
            raise SensoriumError("this stream session is closed")
        self.recovery.sending()
        reply: pb.StreamPredictResponse | None = None
        try:
            await self._call.write(request)
        except grpc.RpcError as err:  # a broken call fails the write or the read
            reply = await self._recover(self.recovery.resume_request(), request, err)
        except asyncio.InvalidStateError:  # the call ended (a drain) before the write
            pass
        while reply is None:
            try:
                reply = await self._call.read()
            except grpc.RpcError as err:
                reply = await self._recover(self.recovery.resume_request(), request, err)
                continue
            if reply is grpc.aio.EOF:
                code = await self._call.code()
                if code == grpc.StatusCode.UNAVAILABLE:
                    ended = ServerError(await self._call.details())
                    reply = await self._recover(self.recovery.resume_request(), request, ended)
                    continue
                await self._raise_status()
                raise ServerError("the server ended the stream")
            if reply.WhichOneof("kind") == "draining":
                with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                    await self._call.done_writing()  # the server waits for it to exit
                self.recovery.handoffs += 1
                handoff = self.recovery.handoff_request(reply.draining.snapshot)
                reply = await self._recover(handoff, request, None)
        got = reply.WhichOneof("kind")
        if got != kind:
            raise ServerError(f"expected a {kind!r} reply, got {got!r}")
        self.recovery.answered(reply)
        return reply

    async def _recover(
        self,
        first: pb.StreamPredictRequest,
        pending: pb.StreamPredictRequest,
        error: BaseException | None,
    ) -> pb.StreamPredictResponse | None:
        """As :meth:`StreamSession._recover`, awaited."""
        if isinstance(error, grpc.RpcError) and not recoverable(error):
            raise from_rpc_error(error) from None
        deadline = self.recovery.deadline()
        if first.open.resume_session_id:
            self.recovery.resumes += 1
        attempt = 0
        while True:
            try:
                await self._connect(first, deadline - time.monotonic())
                break
            except DeadlineExceededError as err:  # never answered: cancelled, tried again
                if time.monotonic() > deadline:
                    raise self.recovery.lost(err) from None
            except grpc.RpcError as err:
                if not recoverable(err, first):
                    raise from_rpc_error(err) from None
                if time.monotonic() > deadline:
                    raise self.recovery.lost(err) from None
            await asyncio.sleep(recovery_pause(attempt))
            attempt += 1
        done = self.recovery.again(pending)
        if done is None:
            try:
                await self._call.write(pending)
            except grpc.RpcError as err:
                return await self._recover(self.recovery.resume_request(), pending, err)
        return done

    async def step(
        self,
        frames: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        frame_index: int | None = None,
    ) -> np.ndarray:
        """Responses (k, N) to the next k frames."""
        arrays = check_arrays(*as_frames(frames, behavior, pupil_center), self._frame_shape)
        reply = await self._exchange(self.recovery.frames(arrays, frame_index), "responses")
        return messages.responses_of(reply.responses)

    async def reset(self) -> int:
        """Zero the state; returns the trial count."""
        return int((await self._exchange(messages.RESET, "reset")).reset.trial_count)

    async def snapshot(self) -> pb.StateSnapshot:
        """The session's state now (see :meth:`StreamSession.snapshot`)."""
        return (await self._exchange(messages.SNAPSHOT, "snapshot")).snapshot

    async def close(self) -> None:
        """Half-close and wait for the server to end the stream."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call.done_writing()
            while await self._call.read() is not grpc.aio.EOF:
                pass
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                return
            raise from_rpc_error(err) from None
        except asyncio.InvalidStateError:  # the call had already ended
            return
        await self._raise_status()

    async def _raise_status(self) -> None:
        """Raise the stream's final status unless it is OK or CANCELLED."""
        code = await self._call.code()
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            raise from_status(code, await self._call.details())

    def cancel(self) -> None:
        """Abandon the stream at once (the server keeps the session for its resume window)."""
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> AsyncStreamSession:
        """Use as an async context manager."""
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close (or cancel, when leaving on an error)."""
        if error is not None:
            self.cancel()
        else:
            await self.close()
