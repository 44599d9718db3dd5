"""The only module of the client that touches protobuf messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from sensorium_api.tensors import from_tensor, to_tensor
from sensorium_api.v1 import predictor_pb2 as pb

SERVICE = "sensorium.v1.Predictor"


def service_config(retries: int) -> str:
    """GRPC service config: retry UNAVAILABLE only, round-robin over resolved addresses."""
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if retries > 0:
        config["methodConfig"] = [
            {
                "name": [{"service": SERVICE}],
                "retryPolicy": {
                    "maxAttempts": retries + 1,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            },
            # Streams recover by themselves (resume, handoff; sdk.py): gRPC's retries of
            # a stream whose requests are still open are left out.
            {"name": [{"service": SERVICE, "method": "StreamPredict"}]},
        ]
    return json.dumps(config)


STREAMING_MODES = {
    pb.STREAMING_MODE_UNSPECIFIED: "state",
    pb.STREAMING_MODE_STATE: "state",
    pb.STREAMING_MODE_WINDOW: "window",
    pb.STREAMING_MODE_NONE: "none",
}


@dataclass(frozen=True)
class MouseInfo:
    """One mouse a model serves."""

    mouse: str
    neuron_count: int
    neuron_ids: list[int]
    default_behavior: tuple[float, ...] = ()
    default_pupil_center: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """A served model version, as its manifest describes it."""

    name: str
    version: int
    mice: list[MouseInfo]
    frame_shape: tuple[int, int]
    frame_rate_hz: float
    burn_in_frames: int
    causal: bool
    architecture: str
    manifest_sha256: str
    training_metrics: dict[str, float] = field(default_factory=dict)
    streaming_mode: str = "state"  # "state" (step graph), "window" (clip graph) or "none"
    window_frames: int = 0  # window mode: frames each step runs the clip graph on
    latency_frames: int = 0  # window mode: frames the replies run behind

    def mouse(self, name: str = "") -> MouseInfo:
        """A mouse by name; an empty name means the only mouse."""
        if not name and len(self.mice) == 1:
            return self.mice[0]
        for mouse in self.mice:
            if mouse.mouse == name:
                return mouse
        from sensorium_client.errors import NotFoundError

        names = [m.mouse for m in self.mice]
        raise NotFoundError(f"mouse {name!r} is not served by {self.name}; mice: {names}")


def model_info(message: pb.ModelManifest) -> ModelInfo:
    """A ``ModelManifest`` message as a :class:`ModelInfo`."""
    return ModelInfo(
        name=message.name,
        version=message.version,
        mice=[
            MouseInfo(
                m.mouse,
                m.neuron_count,
                list(m.neuron_ids),
                tuple(m.default_behavior),
                tuple(m.default_pupil_center),
            )
            for m in message.mice
        ],
        frame_shape=(message.frame_height, message.frame_width),
        frame_rate_hz=message.frame_rate_hz,
        burn_in_frames=message.burn_in_frames,
        causal=message.causal,
        architecture=message.training.architecture,
        manifest_sha256=message.manifest_sha256,
        training_metrics=dict(message.training.metrics),
        streaming_mode=STREAMING_MODES.get(message.streaming_mode, "state"),
        window_frames=message.window_frames,
        latency_frames=message.latency_frames,
    )


def response_code(dtype: str | np.dtype) -> pb.DataType:
    """The wire code of a response dtype (float32 or float16)."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return pb.DATA_TYPE_FLOAT16
    return pb.DATA_TYPE_FLOAT32


def predict_request(
    model: str,
    version: int,
    mouse: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    dtype: str | np.dtype,
) -> pb.PredictRequest:
    """A ``PredictRequest`` from checked time-first arrays."""
    video, behavior, pupil_center = arrays
    return pb.PredictRequest(
        model=model,
        version=version,
        mouse=mouse,
        video=to_tensor(video),
        behavior=to_tensor(behavior),
        pupil_center=to_tensor(pupil_center),
        response_dtype=response_code(dtype),
    )


def open_request(
    model: str,
    version: int,
    mouse: str,
    dtype: str | np.dtype,
    resume_session_id: str = "",
    snapshot: pb.StateSnapshot | None = None,
) -> pb.StreamPredictRequest:
    """The first message of a stream: a new session, a resumed one, or from a snapshot."""
    message = pb.StreamOpen(
        model=model, version=version, mouse=mouse, response_dtype=response_code(dtype)
    )
    if resume_session_id:
        message.resume_session_id = resume_session_id
    elif snapshot is not None:
        message.snapshot.CopyFrom(snapshot)
    return pb.StreamPredictRequest(open=message)


def frames_request(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray], frame_index: int | None = None
) -> pb.StreamPredictRequest:
    """A ``frames`` message of a stream."""
    video, behavior, pupil_center = arrays
    frames = pb.StreamFrames(
        video=to_tensor(video), behavior=to_tensor(behavior), pupil_center=to_tensor(pupil_center)
    )
    if frame_index is not None:
        frames.frame_index = frame_index
    return pb.StreamPredictRequest(frames=frames)


RESET = pb.StreamPredictRequest(reset=pb.StreamReset())
SNAPSHOT = pb.StreamPredictRequest(snapshot=pb.StreamSnapshotRequest())


def responses_of(message: pb.PredictResponse | pb.StreamResponses) -> np.ndarray:
    """The responses array (T, N) of a response message."""
    return from_tensor(message.responses, "responses")


# Clips whose responses are larger than this are asked for with PredictChunks.
CHUNKED_BYTES = 4 * 2**20


def chunked(frames: int, neurons: int, dtype: str | np.dtype) -> bool:
    """Whether a clip's responses are large enough to ask for them in parts."""
    return frames * neurons * np.dtype(dtype).itemsize > CHUNKED_BYTES


class Parts:
    """The replies of one ``PredictChunks`` call, put together into (T, N)."""

    def __init__(self) -> None:
        """No part yet."""
        self.responses: np.ndarray | None = None
        self.received = 0

    def add(self, reply: pb.PredictResponse) -> None:
        """Place one part's frames; raises ``ValueError`` on a part that does not fit."""
        part = responses_of(reply)
        first, total = int(reply.first_frame), int(reply.total_frames)
        if self.responses is None:
            self.responses = np.empty((total, part.shape[1]), part.dtype)
        if first != self.received or first + part.shape[0] > self.responses.shape[0]:
            raise ValueError(
                f"PredictChunks: a part of frames {first}..{first + part.shape[0]} after "
                f"{self.received} of {self.responses.shape[0]} frames"
            )
        self.responses[first : first + part.shape[0]] = part
        self.received += part.shape[0]

    def result(self) -> np.ndarray:
        """All frames; raises ``ValueError`` when the call ended before the last part."""
        if self.responses is None or self.received != self.responses.shape[0]:
            total = "?" if self.responses is None else self.responses.shape[0]
            raise ValueError(f"PredictChunks ended after {self.received} of {total} frames")
        return self.responses


@dataclass(frozen=True)
class StreamInfo:
    """What the server said when it opened a stream."""

    session_id: str
    model: str
    version: int
    mouse: str
    neuron_count: int
    burn_in_frames: int
    max_frames_per_step: int
    next_frame: int = 0
    trial_count: int = 1
    origin: str = "new"  # "new", "resumed" or "snapshot"
    resume_window_s: float = 0.0
    replica_id: str = ""
    streaming_mode: str = "state"  # see ModelInfo
    window_frames: int = 0
    latency_frames: int = 0  # replies answer frame t - latency_frames at frame t


@dataclass(frozen=True)
class ServerTiming:
    """Where the server spent one step's time: what a rig compares with its own clock.

    The step's round trip minus both is what the network, gRPC and the two ends' Python
    took. ``replayed``: answered from the server's replay buffer after a reconnect (the
    times are those of the original step).
    """

    queue_ms: float  # waiting for a step thread
    compute_ms: float  # running the step graph (with the GIL hand-back after it)
    frame_index: int
    replayed: bool = False


def server_timing(message: pb.StreamResponses) -> ServerTiming:
    """The timing part of a ``responses`` reply."""
    t = message.timing
    return ServerTiming(t.queue_ms, t.compute_ms, message.frame_index, message.replayed)


ORIGINS = {
    pb.STREAM_ORIGIN_NEW: "new",
    pb.STREAM_ORIGIN_RESUMED: "resumed",
    pb.STREAM_ORIGIN_SNAPSHOT: "snapshot",
}


def stream_info(message: pb.StreamPredictResponse) -> StreamInfo:
    """The ``opened`` reply of a stream."""
    o = message.opened
    return StreamInfo(
        o.session_id,
        o.model,
        o.version,
        o.mouse,
        o.neuron_count,
        o.burn_in_frames,
        o.max_frames_per_step,
        o.next_frame,
        o.trial_count,
        ORIGINS.get(o.origin, "new"),
        o.resume_window_s,
        o.replica_id,
        STREAMING_MODES.get(o.streaming_mode, "state"),
        o.window_frames,
        o.latency_frames,
    )
