"""The synchronous client: ``Client`` owns a channel; ``stream()`` opens a rig session."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
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
)
from sensorium_client.inputs import as_frames, check_arrays, normalize_trial
from sensorium_client.messages import ModelInfo, ServerTiming, StreamInfo
from sensorium_client.recovery import (
    OPEN_FLOOR_S,
    RECOVERY_S,
    Recovery,
    backoff,
    recoverable,
    recovery_pause,
)

logger = logging.getLogger(__name__)

_CLOSE = object()


class Client:
    """A connection to a sensorium-serve server.

    Example::

        with Client("localhost:8001") as client:
            responses = client.predict(video, behavior, pupil_center)  # (T, N)

    Every call raises a :class:`~sensorium_client.errors.SensoriumError` subclass
    instead of ``grpc.RpcError``; inputs are checked before they are sent.
    """

    def __init__(self, target: str | None = None, **settings: Any) -> None:
        """Connect to ``target`` (default ``$SENSORIUM_SERVER`` or localhost:8001).

        ``settings`` are the fields of :class:`~sensorium_client.connection.Connection`
        (timeout, retries, tls, root_certificates, token, metadata, ...).
        """
        if target is not None:
            settings["target"] = target
        self.connection = Connection(**settings)
        self._channel = self.connection.channel()
        self._stub = pb_grpc.PredictorStub(self._channel)
        self._models = ModelCatalog(self.connection.model_ttl_s)
        self._chunks = True  # long clips by PredictChunks, until a server lacks it

    def __enter__(self) -> Client:
        """Use as a context manager; the channel closes on exit."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the channel."""
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(
        self, method: Any, request: Any, timeout: float | None, metadata: Sequence[tuple[str, str]]
    ) -> Any:
        attempt = 0
        while True:  # every unary call is idempotent: retry UNAVAILABLE (a draining replica)
            try:
                return method(
                    request,
                    timeout=self.connection.timeout if timeout is None else timeout,
                    metadata=self.connection.call_metadata(metadata),
                )
            except grpc.RpcError as err:
                if not recoverable(err) or attempt >= self.connection.retries:
                    raise from_rpc_error(err) from None
            time.sleep(backoff(attempt + 3))
            attempt += 1

    def models(
        self, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()
    ) -> list[ModelInfo]:
        """Every model version the server serves."""
        reply = self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout, metadata)
        return [messages.model_info(m) for m in reply.models]

    def model(
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
        reply = self._call(self._stub.GetModel, request, timeout, metadata)
        return self._models.put(name, version, messages.model_info(reply.model))

    def predict(
        self,
        video: np.ndarray,
        behavior: np.ndarray | None = None,
        pupil_center: np.ndarray | None = None,
        mouse: str = "",
        model: str = "",
        version: int = 0,
        dtype: str = "float32",
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> np.ndarray:
        """Responses (T, N) to one trial.

        Accepts what the CLI accepts (:func:`sensorium_client.inputs.normalize_trial`):

        Args:
            video: (T, H, W) or the Sensorium (H, W, T) frames, 0..255 (uint8 is sent as
                is; a float video in 0..1 is refused).
            behavior: (T, 2) or (2, T): pupil dilation, running speed; None: the model's
                training mean (logged).
            pupil_center: (T, 2) or (2, T): x, y; None: the training mean (logged).
            mouse: The mouse (session) whose neurons to predict; "" if the model has one.
            model: The model; "" if the server serves one.
            version: The model version; 0 for the latest.
            dtype: "float32" or "float16" responses.
            timeout: Deadline in seconds (default: the client's).
            metadata: Extra metadata of this call.
        """
        info = self.model(model, version, timeout, metadata)
        chosen = info.mouse(mouse)
        defaults = {
            "behavior": chosen.default_behavior,
            "pupil_center": chosen.default_pupil_center,
        }
        frames, rows, centre, notes = normalize_trial(
            video, behavior, pupil_center, info.frame_shape, defaults
        )
        for note in notes[1:]:  # the first only names the layout
            logger.info("%s", note)
        arrays = check_arrays(frames, rows, centre, info.frame_shape)
        # The version asked for (0: the server's latest, which a live repository moves on).
        request = messages.predict_request(info.name, version, chosen.mouse, arrays, dtype)
        if self._chunks and messages.chunked(len(arrays[0]), chosen.neuron_count, dtype):
            responses = self._predict_chunks(request, timeout, metadata)
            if responses is not None:
                return responses
        reply = self._call(self._stub.Predict, request, timeout, metadata)
        return messages.responses_of(reply)

    def _predict_chunks(
        self, request: pb.PredictRequest, timeout: float | None, metadata: Sequence[tuple[str, str]]
    ) -> np.ndarray | None:
        """Responses of a long clip by ``PredictChunks`` (None: the server has no such call).

        A call that fails on UNAVAILABLE (a draining replica) is made again, from the
        first frame, like any unary call.
        """
        attempt = 0
        while True:
            parts = messages.Parts()
            try:
                for reply in self._stub.PredictChunks(
                    request,
                    timeout=self.connection.timeout if timeout is None else timeout,
                    metadata=self.connection.call_metadata(metadata),
                ):
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
            time.sleep(backoff(attempt + 3))
            attempt += 1

    def stream(
        self,
        mouse: str = "",
        model: str = "",
        version: int = 0,
        dtype: str = "float32",
        metadata: Sequence[tuple[str, str]] = (),
        snapshot: pb.StateSnapshot | None = None,
        recovery_s: float = RECOVERY_S,
    ) -> StreamSession:
        """Open a stream session for frame-by-frame prediction (a closed-loop rig).

        ``snapshot`` (from :meth:`StreamSession.snapshot`) continues that state;
        ``recovery_s`` bounds how long a broken stream tries to reattach or move.
        """
        if snapshot is not None:
            mouse, model, version = snapshot.mouse, snapshot.model, snapshot.version
        return StreamSession(self, mouse, model, version, dtype, metadata, recovery_s, snapshot)


class StreamSession:
    """One stream session: the server keeps the model's state between steps.

    Example::

        with client.stream() as session:
            for frame, behavior, pupil in rig:
                responses = session.step(frame, behavior, pupil)  # (1, N)

    The session survives its connection: when the connection breaks it reattaches
    to its session on the same server, and when the server drains it continues the
    state it was handed on another replica of the target; ``step()`` simply goes on
    (``recovery`` counts and lists what happened). Only when neither works within
    ``recovery_s`` does a step raise :class:`~sensorium_client.recovery.StreamLostError`.
    """

    def __init__(
        self,
        client: Client,
        mouse: str,
        model: str,
        version: int,
        dtype: str,
        metadata: Sequence[tuple[str, str]],
        recovery_s: float = RECOVERY_S,
        snapshot: pb.StateSnapshot | None = None,
    ) -> None:
        """Open the stream (from ``snapshot`` if given) and wait for ``opened``."""
        info = client.model(model, version)
        self._client = client
        self._frame_shape = info.frame_shape
        self._metadata = client.connection.call_metadata(metadata)
        # The version asked for (0: the server's latest); resumes and handoffs name
        # the version the stream opened on.
        self.recovery = Recovery(info.name, version, info.mouse(mouse).mouse, dtype, recovery_s)
        self._closed = False
        first = self.recovery.open_request()
        if snapshot is not None:
            first = self.recovery.handoff_request(snapshot)
        # A replica that is draining (or gone) refuses with UNAVAILABLE: a new call, which
        # round-robin sends to the next one, up to ``retries`` times (as unary calls).
        for attempt in range(client.connection.retries + 1):
            if attempt:
                self._requests.put(_CLOSE)
                time.sleep(backoff(attempt))
            self._connect(first)
            try:
                self._opened(self._next_within(client.connection.timeout))
                return
            except grpc.RpcError as err:
                if (
                    err.code() != grpc.StatusCode.UNAVAILABLE
                    or attempt == client.connection.retries
                ):
                    raise from_rpc_error(err) from None
            except StopIteration:
                raise ServerError("the server ended the stream") from None

    @property
    def info(self) -> StreamInfo:
        """What the server said when it opened (or last reattached) the session."""
        assert self.recovery.info is not None
        return self.recovery.info

    @property
    def timing(self) -> ServerTiming | None:
        """The server's queue and graph time of the last step answered (None before one)."""
        return self.recovery.timing

    def _connect(self, first: pb.StreamPredictRequest) -> None:
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put(first)
        self._call = self._client._stub.StreamPredict(
            iter(self._requests.get, _CLOSE), metadata=self._metadata
        )
        self._replies: Iterator[pb.StreamPredictResponse] = self._call

    def _next(self) -> pb.StreamPredictResponse:
        """The next reply; raw ``grpc.RpcError`` or StopIteration when the call ended."""
        return next(self._replies)

    def _next_within(self, seconds: float) -> pb.StreamPredictResponse:
        """The next reply (an ``opened``), the call cancelled if none came in ``seconds``.

        Raises:
            DeadlineExceededError: nothing came in time (the call is cancelled).
        """
        seconds = max(seconds, OPEN_FLOOR_S)
        expired, guard, call = threading.Event(), threading.Lock(), self._call
        answered = False

        def expire() -> None:
            with guard:  # never cancel a call whose reply has come (a live stream)
                if answered:
                    return
                expired.set()
            call.cancel()

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            reply = self._next()
        except grpc.RpcError:
            if expired.is_set():
                raise DeadlineExceededError(
                    f"the server did not open the stream within {seconds:g} s"
                ) from None
            raise
        finally:
            timer.cancel()
        with guard:
            answered = True
            late = expired.is_set()
        if late:  # the timer won the race: this call is being cancelled, open anew
            raise DeadlineExceededError(f"the stream opened after {seconds:g} s")
        return reply

    def _opened(self, reply: pb.StreamPredictResponse) -> None:
        if reply.WhichOneof("kind") != "opened":
            raise ServerError(f"expected an 'opened' reply, got {reply.WhichOneof('kind')!r}")
        self.recovery.opened(reply)

    def _exchange(self, request: pb.StreamPredictRequest, kind: str) -> pb.StreamPredictResponse:
        if self._closed:
            raise SensoriumError("this stream session is closed")
        self.recovery.sending()
        self._requests.put(request)
        while True:
            reply: pb.StreamPredictResponse | None
            try:
                reply = self._next()
            except grpc.RpcError as err:
                if not recoverable(err):
                    raise from_rpc_error(err) from None
                reply = self._recover(self.recovery.resume_request(), request, err)
            except StopIteration:
                raise ServerError("the server ended the stream") from None
            if reply is None:
                continue
            got = reply.WhichOneof("kind")
            if got == "draining":
                self._requests.put(_CLOSE)  # half-close: the server waits for it to exit
                self.recovery.handoffs += 1
                handoff = self.recovery.handoff_request(reply.draining.snapshot)
                reply = self._recover(handoff, request, None)
                if reply is None:
                    continue
                got = reply.WhichOneof("kind")
            if got != kind:
                raise ServerError(f"expected a {kind!r} reply, got {got!r}")
            self.recovery.answered(reply)
            return reply

    def _recover(
        self,
        first: pb.StreamPredictRequest,
        pending: pb.StreamPredictRequest,
        error: grpc.RpcError | None,
    ) -> pb.StreamPredictResponse | None:
        """Open ``first`` (a resume or a handoff) until it takes; then the pending request.

        Returns the pending request's reply when the server already answered it (a
        reset), else None after sending it again.
        """
        deadline = self.recovery.deadline()
        if first.open.resume_session_id:
            self.recovery.resumes += 1
        attempt = 0
        while True:
            self._requests.put(_CLOSE)  # ends the old call's request iterator
            self._connect(first)
            try:
                # Bounded: a call that is never answered (seen once, on an overloaded
                # machine) is cancelled and tried again, not waited on for good.
                self._opened(self._next_within(deadline - time.monotonic()))
                break
            except DeadlineExceededError as err:
                if time.monotonic() > deadline:
                    raise self.recovery.lost(err) from None
            except grpc.RpcError as err:
                if not recoverable(err, first):
                    raise from_rpc_error(err) from None
                if time.monotonic() > deadline:
                    raise self.recovery.lost(err) from None
                error = err
            except StopIteration:
                raise self.recovery.lost(error) from None
            time.sleep(recovery_pause(attempt))
            attempt += 1
        done = self.recovery.again(pending)
        if done is None:
            self._requests.put(pending)
        return done

    def step(
        self,
        frames: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        frame_index: int | None = None,
    ) -> np.ndarray:
        """Responses (k, N) to the next k frames (k, H, W), or one frame (H, W) with (2,) rows.

        ``frame_index`` (the index within the trial of the first frame) is filled in
        when not given; the server checks it.
        """
        arrays = check_arrays(*as_frames(frames, behavior, pupil_center), self._frame_shape)
        reply = self._exchange(self.recovery.frames(arrays, frame_index), "responses")
        return messages.responses_of(reply.responses)

    def reset(self) -> int:
        """Zero the state: the next frame starts a new trial. Returns the trial count."""
        return int(self._exchange(messages.RESET, "reset").reset.trial_count)

    def snapshot(self) -> pb.StateSnapshot:
        """The session's state now: open a stream from it with ``client.stream(snapshot=...)``."""
        return self._exchange(messages.SNAPSHOT, "snapshot").snapshot

    def close(self) -> None:
        """Half-close the stream; the server frees the session."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(_CLOSE)
        try:
            for _ in self._replies:
                pass
        except grpc.RpcError as err:
            if err.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                raise from_rpc_error(err) from None

    def cancel(self) -> None:
        """Abandon the stream at once (the server keeps the session for its resume window)."""
        self._closed = True
        self._requests.put(_CLOSE)
        self._call.cancel()

    def __enter__(self) -> StreamSession:
        """Use as a context manager; the stream closes on exit."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the stream (cancel it if leaving on an error)."""
        if error is not None:
            self.cancel()
        else:
            self.close()
