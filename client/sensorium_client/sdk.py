"""The synchronous client: ``Client`` owns a channel; ``stream()`` opens a rig session."""

from __future__ import annotations

import queue
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from sensorium_client import messages
from sensorium_client.connection import Connection
from sensorium_client.errors import SensoriumError, ServerError, from_rpc_error
from sensorium_client.inputs import as_frames, check_arrays
from sensorium_client.messages import ModelInfo, StreamInfo

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
        self._models: dict[tuple[str, int], ModelInfo] = {}

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
        try:
            return method(
                request,
                timeout=self.connection.timeout if timeout is None else timeout,
                metadata=self.connection.call_metadata(metadata),
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

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
        key = (name, version)
        if key not in self._models:
            request = pb.GetModelRequest(model=name, version=version)
            reply = self._call(self._stub.GetModel, request, timeout, metadata)
            self._models[key] = messages.model_info(reply.model)
        return self._models[key]

    def predict(
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
        """Responses (T, N) to one trial.

        Args:
            video: (T, H, W) frames, 0..255 (uint8 is sent as is).
            behavior: (T, 2): pupil dilation, running speed.
            pupil_center: (T, 2): x, y.
            mouse: The mouse (session) whose neurons to predict; "" if the model has one.
            model: The model; "" if the server serves one.
            version: The model version; 0 for the latest.
            dtype: "float32" or "float16" responses.
            timeout: Deadline in seconds (default: the client's).
            metadata: Extra metadata of this call.
        """
        info = self.model(model, version, timeout, metadata)
        arrays = check_arrays(video, behavior, pupil_center, info.frame_shape)
        request = messages.predict_request(
            info.name, info.version, info.mouse(mouse).mouse, arrays, dtype
        )
        reply = self._call(self._stub.Predict, request, timeout, metadata)
        return messages.responses_of(reply)

    def stream(
        self,
        mouse: str = "",
        model: str = "",
        version: int = 0,
        dtype: str = "float32",
        metadata: Sequence[tuple[str, str]] = (),
    ) -> StreamSession:
        """Open a stream session for frame-by-frame prediction (a closed-loop rig)."""
        return StreamSession(self, mouse, model, version, dtype, metadata)


class StreamSession:
    """One ``StreamPredict`` call: the server keeps the model's state between steps.

    Example::

        with client.stream() as session:
            for frame, behavior, pupil in rig:
                responses = session.step(frame, behavior, pupil)  # (1, N)
    """

    def __init__(
        self,
        client: Client,
        mouse: str,
        model: str,
        version: int,
        dtype: str,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        """Open the stream and wait for the server's ``opened`` reply."""
        info = client.model(model, version)
        self._frame_shape = info.frame_shape
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put(
            messages.open_request(info.name, info.version, info.mouse(mouse).mouse, dtype)
        )
        self._call = client._stub.StreamPredict(
            iter(self._requests.get, _CLOSE), metadata=client.connection.call_metadata(metadata)
        )
        self._replies: Iterator[pb.StreamPredictResponse] = self._call
        self.info: StreamInfo = messages.stream_info(self._receive("opened"))
        self._closed = False

    def _receive(self, kind: str) -> pb.StreamPredictResponse:
        try:
            reply = next(self._replies)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        except StopIteration:
            raise ServerError("the server ended the stream") from None
        if reply.WhichOneof("kind") != kind:
            raise ServerError(f"expected a {kind!r} reply, got {reply.WhichOneof('kind')!r}")
        return reply

    def step(
        self,
        frames: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        frame_index: int | None = None,
    ) -> np.ndarray:
        """Responses (k, N) to the next k frames (k, H, W), or one frame (H, W) with (2,) rows."""
        if self._closed:
            raise SensoriumError("this stream session is closed")
        arrays = check_arrays(*as_frames(frames, behavior, pupil_center), self._frame_shape)
        self._requests.put(messages.frames_request(arrays, frame_index))
        reply = self._receive("responses")
        return messages.responses_of(reply.responses)

    def reset(self) -> int:
        """Zero the state: the next frame starts a new trial. Returns the trial count."""
        self._requests.put(messages.RESET)
        return int(self._receive("reset").reset.trial_count)

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
            if err.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(err) from None

    def cancel(self) -> None:
        """Abandon the stream at once (the server frees the session)."""
        self._closed = True
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
