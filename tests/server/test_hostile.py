"""Broken and hostile clients cost nothing: exact codes, bounded metrics, no tracebacks."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from sensorium_api import wire
from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_api.tensors import from_tensor, to_tensor
from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from tests.serving import ServerThread

UNARY = (
    "/sensorium.v1.Predictor/ListModels",
    "/sensorium.v1.Predictor/GetModel",
    "/sensorium.v1.Predictor/Predict",
    "/inference.GRPCInferenceService/ModelInfer",
    "/inference.GRPCInferenceService/ModelMetadata",
    "/inference.GRPCInferenceService/ServerLive",
)
GARBAGE = (b"\xff\xff\xff", b"\x0a\x01\xff")  # not a message; a string field that is not UTF-8


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as opened:
        yield opened


def _code(call: object, payload: object) -> tuple[grpc.StatusCode, str]:
    try:
        call(payload, timeout=30)  # type: ignore[operator]
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not logged, [r.getMessage() for r in logged]


CASES = [(m, GARBAGE[0]) for m in UNARY] + [
    (m, GARBAGE[1]) for m in UNARY if not m.endswith(("ListModels", "ServerLive"))
]  # (an empty message keeps an unknown field as it is: valid)


@pytest.mark.parametrize(("method", "payload"), CASES)
def test_undecodable_bytes_are_invalid_argument_on_unary_calls(
    channel: grpc.Channel, method: str, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    code, details = _code(channel.unary_unary(method), payload)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"not a valid {method.rsplit('/', 1)[1]} request" in details
    _no_traceback(caplog)


def test_undecodable_bytes_end_a_native_stream_with_invalid_argument(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    call = channel.stream_stream("/sensorium.v1.Predictor/StreamPredict")
    replies = call(iter([GARBAGE[0]]), timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        list(replies)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid StreamPredict request" in (caught.value.details() or "")
    _no_traceback(caplog)


def test_model_stream_infer_reports_bad_bytes_in_band_and_goes_on(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    good = oip.ModelInferRequest(model_name="no-such-model").SerializeToString()
    call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
    replies = [oip.ModelStreamInferResponse.FromString(r) for r in call(iter([GARBAGE[1], good]))]
    assert replies[0].error_message.startswith("INVALID_ARGUMENT: request: not a valid")
    assert replies[1].error_message.startswith("NOT_FOUND: model 'no-such-model'")
    _no_traceback(caplog)


def _tensor(shape: list[int], data: bytes = b"") -> pb.Tensor:
    return pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=shape, data=data)


@pytest.mark.parametrize(
    ("shape", "data", "said"),
    [
        ([4294967296, 4294967296, 1], b"", "do not match shape"),
        ([1] * 65, b"\0" * 4, "65 axes, at most 8"),
        ([-1, 36, 64], b"", "negative extent"),
    ],
)
def test_overflowing_and_over_deep_shapes_are_invalid_argument_everywhere(
    channel: grpc.Channel,
    shape: list[int],
    data: bytes,
    said: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ok = _tensor([1, 2], b"\0" * 8)
    request = pb.PredictRequest(
        model="tiny", video=_tensor(shape, data), behavior=ok, pupil_center=ok
    )
    code, details = _code(
        channel.unary_unary("/sensorium.v1.Predictor/Predict"), request.SerializeToString()
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("video: ")
    assert said in details
    tensor = oip.ModelInferRequest.InferInputTensor(name="video", datatype="FP32", shape=shape)
    infer = oip.ModelInferRequest(model_name="tiny", inputs=[tensor], raw_input_contents=[data])
    code, details = _code(
        channel.unary_unary("/inference.GRPCInferenceService/ModelInfer"), infer.SerializeToString()
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("video: ")
    frames = pb.StreamPredictRequest(
        frames=pb.StreamFrames(video=_tensor(shape, data), behavior=ok, pupil_center=ok)
    )
    opening = pb.StreamPredictRequest(open=pb.StreamOpen(model="tiny"))
    call = channel.stream_stream("/sensorium.v1.Predictor/StreamPredict")
    with pytest.raises(grpc.RpcError) as caught:
        list(call(iter([opening.SerializeToString(), frames.SerializeToString()]), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("video: ")
    _no_traceback(caplog)


def test_long_names_are_not_echoed_in_full(channel: grpc.Channel) -> None:
    request = pb.GetModelRequest(model="x" * 100_000).SerializeToString()
    code, details = _code(channel.unary_unary("/sensorium.v1.Predictor/GetModel"), request)
    assert code == grpc.StatusCode.NOT_FOUND
    assert len(details) < 600
    assert "(100000 characters)" in details


def test_metric_labels_take_only_served_names(server: ServerThread, channel: grpc.Channel) -> None:
    rng = np.random.default_rng(0)
    get_model = channel.unary_unary("/sensorium.v1.Predictor/GetModel")
    for _ in range(300):
        name = "".join(rng.choice(list("abcdefgh"), 4096))
        assert _code(get_model, pb.GetModelRequest(model=name).SerializeToString())[0] == (
            grpc.StatusCode.NOT_FOUND
        )
    url = f"http://localhost:{server.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        page = response.read().decode()
    assert len(page) < 100_000
    assert 'sensorium_request_errors_total{code="NOT_FOUND",model="unknown",rpc="GetModel"}' in page
    values = re.findall(r'="([^"]*)"', page)
    assert max(len(v) for v in values) < 100  # no client-chosen name became a label value


def test_get_model_names_datasets_without_paths(server: ServerThread, tiny_version: Path) -> None:
    with grpc.insecure_channel(server.target) as opened:
        stub = pb_grpc.PredictorStub(opened)
        for name in ("sensorium", "tiny"):
            training = stub.GetModel(pb.GetModelRequest(model=name), timeout=10).model.training
            assert training.datasets
            assert all("/" not in d for d in training.datasets)
            assert len(training.dataset_fingerprints) == len(training.datasets)
    written = json.loads((tiny_version / "manifest.json").read_text())["training"]["datasets"]
    assert [set(d) for d in written] == [{"name", "fingerprint"}]
    assert len(written[0]["fingerprint"]) == 64
    assert "/" not in json.dumps(written)


def test_internal_error_tracebacks_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    from sensorium_server import status

    status._window.update(start=0.0, logged=0, suppressed=0)
    for _ in range(25):
        assert status.status_of(RuntimeError("bug"), "Predict")[0] == grpc.StatusCode.INTERNAL
    logged = [r for r in caplog.records if r.getMessage() == "Predict failed"]
    assert len(logged) == status.LOG_PER_MINUTE
    assert all(r.exc_info for r in logged)
    status._window["start"] -= 61  # past the minute: the summary, then tracebacks again
    status.status_of(RuntimeError("bug"), "Predict")
    messages = [r.getMessage() for r in caplog.records]
    assert "15 more internal errors in the last minute (not logged)" in messages
    assert messages[-1] == "Predict failed"


def test_a_clip_request_over_a_megabyte_is_read_and_checked_like_a_small_one(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """Clips of 1 MB or more are parsed without copying their tensors (``lean_parser``)."""
    rng = np.random.default_rng(3)
    frames = 120  # float32 video: 1.1 MB, the lean path; uint8: 0.28 MB, protobuf's own
    video = rng.integers(0, 256, (frames, 36, 64)).astype(np.uint8)
    rows = [to_tensor(rng.random((frames, 2)).astype(np.float32)) for _ in range(2)]

    def request(video_tensor: pb.Tensor) -> bytes:
        message = pb.PredictRequest(
            model="tiny", video=video_tensor, behavior=rows[0], pupil_center=rows[1]
        )
        return message.SerializeToString()

    call = channel.unary_unary("/sensorium.v1.Predictor/Predict")
    large = request(to_tensor(video.astype(np.float32)))
    assert len(large) > wire.LARGE_BYTES > len(request(to_tensor(video)))
    lean = from_tensor(pb.PredictResponse.FromString(call(large, timeout=60)).responses)
    small = pb.PredictResponse.FromString(call(request(to_tensor(video)), timeout=60))
    assert lean.shape[0] == frames
    assert np.array_equal(lean, from_tensor(small.responses))
    short = to_tensor(video.astype(np.float32))
    short.shape[0] = frames + 1  # the bytes of 120 frames, a shape of 121
    for payload, said in [
        (large[:-3], "not a valid Predict request"),
        (request(short), "do not match shape"),
    ]:
        code, details = _code(call, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert said in details
    _no_traceback(caplog)
