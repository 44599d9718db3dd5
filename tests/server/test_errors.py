"""Every error path: status code and message, and the server keeps serving."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from sensorium_api.tensors import to_tensor
from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from sensorium_server.errors import InvalidInputError, LimitExceededError
from sensorium_server.inputs import check_response_size
from sensorium_server.status import INTERNAL_MESSAGE, status_of
from tests.serving import ServerThread

Code = grpc.StatusCode
Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture
def stub(server: ServerThread) -> Iterator[pb_grpc.PredictorStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.PredictorStub(channel)


def _request(trial: Trial, frames: int = 10, **changes: Any) -> pb.PredictRequest:
    video, behavior, pupil = (a[:frames] for a in trial)
    fields = {
        "model": "sensorium",
        "video": to_tensor(video),
        "behavior": to_tensor(behavior),
        "pupil_center": to_tensor(pupil),
    }
    fields.update(changes)
    return pb.PredictRequest(**{k: v for k, v in fields.items() if v is not None})


def _fails(call: Any, request: Any, code: Code, *needles: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    for needle in needles:
        assert needle in caught.value.details()
    assert "Traceback" not in caught.value.details()


def _nan(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    array[3, 1] = np.nan
    return array


BAD_INPUTS = {
    "video shape": (
        lambda t: {"video": to_tensor(np.zeros((10, 36, 65), np.uint8))},
        ["video: shape (10, 36, 65), expected (frames, 36, 64)"],
    ),
    "video dtype unset": (
        lambda t: {"video": pb.Tensor(shape=[10, 36, 64], data=b"\0" * 23040)},
        ["video: unknown or unset tensor dtype"],
    ),
    "video bytes": (
        lambda t: {"video": pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[10, 36, 64], data=b"1")},
        ["video: 1 bytes do not match shape (10, 36, 64)"],
    ),
    "video range": (
        lambda t: {"video": to_tensor(t[0][:10].astype(np.float32) + 300)},
        ["video: values from", "expected raw pixel values 0..255"],
    ),
    "video NaN": (
        lambda t: {"video": to_tensor(_nan(t[0][:10]))},
        ["video: 64 NaN or infinite values (first at index (3, 1, 0))"],
    ),
    "behavior NaN": (
        lambda t: {"behavior": to_tensor(_nan(t[1][:10]))},
        ["behavior: 1 NaN or infinite values (first at index (3, 1))", "running speed"],
    ),
    "behavior dtype": (
        lambda t: {"behavior": to_tensor(np.zeros((10, 2), np.uint8))},
        ["behavior: dtype uint8, expected float32 or float16"],
    ),
    "pupil length": (
        lambda t: {"pupil_center": to_tensor(t[2][:9])},
        ["pupil_center: shape (9, 2), expected (10, 2)"],
    ),
    "pupil missing": (lambda t: {"pupil_center": None}, ["pupil_center: missing"]),
    "response dtype": (
        lambda t: {"response_dtype": pb.DATA_TYPE_UINT8},
        ["response_dtype: DATA_TYPE_UINT8, expected DATA_TYPE_FLOAT32"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_invalid_argument(
    stub: pb_grpc.PredictorStub, sample: Trial, case: str
) -> None:
    change, needles = BAD_INPUTS[case]
    _fails(stub.Predict, _request(sample, **change(sample)), Code.INVALID_ARGUMENT, *needles)
    assert stub.Predict(_request(sample), timeout=30).responses.shape == [10, 8000]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"model": "nope"}, "model 'nope' is not served; models: ['sensorium', 'tiny']"),
        ({"version": 7}, "model 'sensorium' has no version 7; versions: [1]"),
        ({"mouse": "mouse-x"}, "mouse 'mouse-x' is not served by sensorium version 1"),
        ({"model": ""}, "model not named and this server serves 2"),
    ],
)
def test_unknown_names_are_not_found(
    stub: pb_grpc.PredictorStub, sample: Trial, changes: dict[str, Any], needle: str
) -> None:
    _fails(stub.Predict, _request(sample, **changes), Code.NOT_FOUND, needle)
    request = pb.GetModelRequest(
        model=changes.get("model", "sensorium"), version=changes.get("version", 0)
    )
    if "mouse" not in changes:
        _fails(stub.GetModel, request, Code.NOT_FOUND, needle)


def test_too_many_frames_is_resource_exhausted(stub: pb_grpc.PredictorStub, sample: Trial) -> None:
    video, behavior, pupil = (np.concatenate([a, a]) for a in sample)
    request = _request((video, behavior, pupil), frames=401)
    _fails(stub.Predict, request, Code.RESOURCE_EXHAUSTED, "401 frames", "at most 400")


def test_oversized_message_is_resource_exhausted(
    stub: pb_grpc.PredictorStub, sample: Trial
) -> None:
    video = np.zeros((2000, 36, 64), np.float32)  # 18 MB of pixels; the limit is 16 MB
    big = _request(sample, video=to_tensor(video))
    _fails(stub.Predict, big, Code.RESOURCE_EXHAUSTED)


class Stream:
    """A raw bidirectional call fed from a queue."""

    def __init__(self, stub: pb_grpc.PredictorStub) -> None:
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.call = stub.StreamPredict(iter(self.requests.get, None), timeout=30)

    def send(self, **kind: Any) -> pb.StreamPredictResponse:
        self.requests.put(pb.StreamPredictRequest(**kind))
        return next(self.call)

    def fails(self, code: Code, needle: str, **kind: Any) -> None:
        with pytest.raises(grpc.RpcError) as caught:
            self.send(**kind)
        assert caught.value.code() == code
        assert needle in caught.value.details()


def _frames(trial: Trial, start: int, k: int = 1, **extra: Any) -> pb.StreamFrames:
    video, behavior, pupil = (a[start : start + k] for a in trial)
    return pb.StreamFrames(
        video=to_tensor(video), behavior=to_tensor(behavior), pupil_center=to_tensor(pupil), **extra
    )


def test_stream_errors_end_only_that_stream(
    server: ServerThread, stub: pb_grpc.PredictorStub, sample: Trial
) -> None:
    healthy = Stream(stub)
    assert healthy.send(open=pb.StreamOpen(model="tiny")).opened.neuron_count == 40
    Stream(stub).fails(
        Code.FAILED_PRECONDITION,
        "first message of a stream must be 'open'",
        frames=_frames(sample, 0),
    )
    Stream(stub).fails(Code.NOT_FOUND, "model 'nope'", open=pb.StreamOpen(model="nope"))
    cases = [
        (
            Code.FAILED_PRECONDITION,
            "expected 'frames', 'reset' or 'snapshot'",
            {"open": pb.StreamOpen()},
        ),
        (
            Code.FAILED_PRECONDITION,
            "frame_index: got 5, expected 1",
            {"frames": _frames(sample, 1, frame_index=5)},
        ),
        (
            Code.INVALID_ARGUMENT,
            "behavior: 1 NaN",
            {
                "frames": pb.StreamFrames(
                    video=to_tensor(sample[0][:5]),
                    behavior=to_tensor(_nan(sample[1][:5])),
                    pupil_center=to_tensor(sample[2][:5]),
                )
            },
        ),
        (Code.RESOURCE_EXHAUSTED, "at most 20 per message", {"frames": _frames(sample, 1, 21)}),
    ]
    for code, needle, bad in cases:
        broken = Stream(stub)
        broken.send(open=pb.StreamOpen(model="tiny"))
        broken.send(frames=_frames(sample, 0))
        broken.fails(code, needle, **bad)
    for t in range(3):
        reply = healthy.send(frames=_frames(sample, t, frame_index=t))
        assert reply.responses.frame_index == t
    healthy.requests.put(None)
    assert list(healthy.call) == []
    assert server.sessions == 0


def test_session_limit_is_resource_exhausted(
    server: ServerThread, stub: pb_grpc.PredictorStub
) -> None:
    streams = [Stream(stub) for _ in range(server.settings.max_sessions)]
    for stream in streams:
        stream.send(open=pb.StreamOpen(model="tiny"))
    Stream(stub).fails(
        Code.RESOURCE_EXHAUSTED, "8 stream sessions are open", open=pb.StreamOpen(model="tiny")
    )
    for stream in streams:
        stream.requests.put(None)
        assert list(stream.call) == []


def test_responses_larger_than_a_message_are_refused_before_computing() -> None:
    check_response_size(400, 8000, 4, 16 * 2**20)
    with pytest.raises(LimitExceededError, match=r"3000 frames x 8000 neurons \(91\.6 MiB\)"):
        check_response_size(3000, 8000, 4, 64 * 2**20)


def test_unknown_errors_are_internal_and_generic(caplog: pytest.LogCaptureFixture) -> None:
    code, message = status_of(KeyError("secret internals"), "Predict")
    assert code == Code.INTERNAL
    assert message == INTERNAL_MESSAGE
    assert "secret internals" in caplog.text  # the traceback went to the log
    assert status_of(InvalidInputError("video: bad"), "Predict") == (
        Code.INVALID_ARGUMENT,
        "video: bad",
    )
