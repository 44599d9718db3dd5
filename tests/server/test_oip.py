"""The Open Inference Protocol, exercised with Triton's own client, unmodified."""

from __future__ import annotations

import queue
import time
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_api.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from sensorium_client import Client
from tests.serving import ServerThread

Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


def _inputs(video: np.ndarray, behavior: np.ndarray, pupil: np.ndarray) -> list[Any]:
    tensors = []
    for name, array, kind in (
        ("video", video, "UINT8"),
        ("behavior", behavior, "FP32"),
        ("pupil_center", pupil, "FP32"),
    ):
        tensor = triton.InferInput(name, list(array.shape), kind)
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        tensors.append(tensor)
    return tensors


@pytest.fixture
def triton_client(server: ServerThread) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(server.target)
    yield client
    client.close()


def _mouse(server: ServerThread) -> str:
    return next(iter(server.server.plane.store.get("sensorium").mice))


def test_health_and_metadata(server: ServerThread, triton_client: Any) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("tiny")
    assert triton_client.is_model_ready(f"sensorium.{_mouse(server)}", "1")
    assert not triton_client.is_model_ready("nope")
    metadata = triton_client.get_server_metadata()
    assert metadata.name == "sensorium-serve"
    assert "sequence" in metadata.extensions
    model = triton_client.get_model_metadata("sensorium")
    assert list(model.versions) == ["1"]
    shapes = {t.name: (t.datatype, list(t.shape)) for t in model.inputs}
    assert shapes == {
        "video": ("UINT8", [-1, 36, 64]),  # FP32 in 0..255 is taken too
        "behavior": ("FP32", [-1, 2]),
        "pupil_center": ("FP32", [-1, 2]),
    }
    assert [(t.name, list(t.shape)) for t in model.outputs] == [("responses", [-1, 8000])]


def test_infer_whole_clip_equals_predict(
    server: ServerThread, triton_client: Any, sample: Trial
) -> None:
    video, behavior, pupil = (a[:60] for a in sample)
    result = triton_client.infer(
        "sensorium",
        _inputs(video, behavior, pupil),
        outputs=[triton.InferRequestedOutput("responses")],
    )
    with Client(server.target) as client:
        expected = client.predict(video, behavior, pupil, model="sensorium")
    np.testing.assert_array_equal(result.as_numpy("responses"), expected)
    batched = triton_client.infer("tiny", _inputs(video[None], behavior[None], pupil[None]))
    assert batched.as_numpy("responses").shape == (1, 60, 40)


def _stream_predict(server: ServerThread, model: str, trial: Trial) -> np.ndarray:
    with Client(server.target) as client, client.stream(model=model) as session:
        return np.concatenate(
            [session.step(*(a[t : t + 1] for a in trial)) for t in range(len(trial[0]))]
        )


def test_sequence_of_infer_calls_equals_stream_predict(
    server: ServerThread, triton_client: Any, sample: Trial
) -> None:
    trial = tuple(a[:20] for a in sample)
    expected = _stream_predict(server, "sensorium", trial)
    got = []
    for t in range(20):
        result = triton_client.infer(
            "sensorium",
            _inputs(*(a[t : t + 1] for a in trial)),
            sequence_id=1001,
            sequence_start=t == 0,
            sequence_end=t == 19,
        )
        got.append(result.as_numpy("responses"))
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=1e-5, atol=1e-6)
    assert len(server.server.inference.sequences) == 0  # sequence_end closed it


def test_stream_infer_over_a_sequence_equals_stream_predict(
    server: ServerThread, triton_client: Any, sample: Trial
) -> None:
    trial = tuple(a[:15] for a in sample)
    expected = _stream_predict(server, "tiny", trial)
    results: queue.SimpleQueue[Any] = queue.SimpleQueue()
    triton_client.start_stream(callback=lambda result, error: results.put((result, error)))
    for t in range(15):
        triton_client.async_stream_infer(
            "tiny",
            _inputs(*(a[t : t + 1] for a in trial)),
            sequence_id="rig-7",
            sequence_start=t == 0,
            sequence_end=t == 14,
        )
    triton_client.async_stream_infer("nope", _inputs(*(a[:1] for a in trial)))
    replies = [results.get(timeout=30) for _ in range(16)]
    triton_client.stop_stream()
    for _result, error in replies[:15]:
        assert error is None
    got = np.concatenate([r.as_numpy("responses") for r, _ in replies[:15]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    failed, error = replies[15]
    assert failed is None
    assert "NOT_FOUND: model 'nope' is not served" in str(error)


@pytest.mark.parametrize(
    ("model", "change", "status", "needle"),
    [
        ("nope", {}, "StatusCode.NOT_FOUND", "OIP models are '<model>.<mouse>'"),
        ("sensorium", {"frames": 0}, "StatusCode.INVALID_ARGUMENT", "video: 0 frames"),
        (
            "tiny",
            {"sequence": 99},
            "StatusCode.FAILED_PRECONDITION",
            "sequence 99 of model 'tiny' is not open",
        ),
        ("sensorium", {"version": "x"}, "StatusCode.INVALID_ARGUMENT", "model_version: 'x'"),
    ],
)
def test_errors_map_to_the_native_status_codes(
    triton_client: Any, sample: Trial, model: str, change: dict[str, Any], status: str, needle: str
) -> None:
    frames = change.get("frames", 3)
    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer(
            model,
            _inputs(*(a[:frames] for a in sample)),
            model_version=change.get("version", ""),
            sequence_id=change.get("sequence", 0),
        )
    assert caught.value.status() == status
    assert needle in caught.value.message()


def test_typed_contents_are_accepted(server: ServerThread, sample: Trial) -> None:
    video, behavior, pupil = (a[:4] for a in sample)
    tensor = oip.ModelInferRequest.InferInputTensor
    request = oip.ModelInferRequest(
        model_name="tiny",
        inputs=[
            tensor(
                name="video",
                datatype="UINT8",
                shape=list(video.shape),
                contents=oip.InferTensorContents(uint_contents=video.ravel().tolist()),
            ),
            tensor(
                name="behavior",
                datatype="FP32",
                shape=[4, 2],
                contents=oip.InferTensorContents(fp32_contents=behavior.ravel().tolist()),
            ),
            tensor(
                name="pupil_center",
                datatype="FP32",
                shape=[4, 2],
                contents=oip.InferTensorContents(fp32_contents=pupil.ravel().tolist()),
            ),
        ],
    )
    with grpc.insecure_channel(server.target) as channel:
        reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    got = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(list(reply.outputs[0].shape))
    with Client(server.target) as client:
        np.testing.assert_array_equal(got, client.predict(video, behavior, pupil, model="tiny"))


def test_abandoned_sequence_is_freed(strict_server: ServerThread, sample: Trial) -> None:
    client = triton.InferenceServerClient(strict_server.target)
    client.infer("tiny", _inputs(*(a[:1] for a in sample)), sequence_id=5, sequence_start=True)
    assert strict_server.sessions == 1
    deadline = time.monotonic() + 5
    while strict_server.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert strict_server.sessions == 0
    with pytest.raises(InferenceServerException, match="not open"):
        client.infer("tiny", _inputs(*(a[1:2] for a in sample)), sequence_id=5)
    client.close()
