"""Triton's extensions that its tools ask for, through tritonclient against a real server."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_reflection.v1alpha import reflection_pb2
from tritonclient.utils import InferenceServerException

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_api.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from sensorium_client import Client
from tests.serving import ServerThread

Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture
def triton_client(server: ServerThread) -> Any:
    client = triton.InferenceServerClient(server.target)
    yield client
    client.close()


def _inputs(video: np.ndarray, behavior: np.ndarray, pupil: np.ndarray, kind: str) -> list[Any]:
    tensors = []
    for name, array, dtype in (
        ("video", video, kind),
        ("behavior", behavior, "FP32"),
        ("pupil_center", pupil, "FP32"),
    ):
        tensor = triton.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        tensors.append(tensor)
    return tensors


def test_model_config_describes_what_is_served(server: ServerThread, triton_client: Any) -> None:
    config = triton_client.get_model_config("sensorium", as_json=True)["config"]
    assert config["name"] == "sensorium"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == server.settings.max_batch_size == 8
    inputs = {i["name"]: (i["data_type"], [int(d) for d in i["dims"]]) for i in config["input"]}
    assert inputs == {
        "video": ("TYPE_UINT8", [-1, 36, 64]),
        "behavior": ("TYPE_FP32", [-1, 2]),
        "pupil_center": ("TYPE_FP32", [-1, 2]),
    }
    [output] = config["output"]
    assert (output["name"], [int(d) for d in output["dims"]]) == ("responses", [-1, 8000])
    assert config["version_policy"] == {"all": {}}  # the shared server serves --versions all
    sequences = config["sequence_batching"]
    controls = {  # JSON leaves out the zero value, CONTROL_SEQUENCE_START
        c["name"]: c["control"][0].get("kind", "CONTROL_SEQUENCE_START")
        for c in sequences["control_input"]
    }
    assert controls == {
        "START": "CONTROL_SEQUENCE_START",
        "END": "CONTROL_SEQUENCE_END",
        "CORRID": "CONTROL_SEQUENCE_CORRID",
    }
    idle = int(sequences["max_sequence_idle_microseconds"])
    assert idle == int(server.settings.idle_timeout_s * 1e6)
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    with pytest.raises(InferenceServerException, match="not served"):
        triton_client.get_model_config("nope")


def test_uint8_and_fp32_video_give_the_same_responses(triton_client: Any, sample: Trial) -> None:
    video, behavior, pupil = (a[:20] for a in sample)
    as_uint8 = triton_client.infer("sensorium", _inputs(video, behavior, pupil, "UINT8"))
    as_fp32 = triton_client.infer(
        "sensorium", _inputs(video.astype(np.float32), behavior, pupil, "FP32")
    )
    np.testing.assert_array_equal(as_uint8.as_numpy("responses"), as_fp32.as_numpy("responses"))


@pytest.mark.parametrize(("model", "frames"), [("sensorium", 120), ("tiny", 30)])
def test_a_batch_of_clips_runs_together_and_equals_one_by_one(
    server: ServerThread, triton_client: Any, sample: Trial, model: str, frames: int
) -> None:
    """sensorium's 120 frames run as chunks of 50 with a batch of states; tiny's as one graph."""
    clips = [tuple(a[start : start + frames] for a in sample) for start in (0, 40, 90)]
    video, behavior, pupil = (np.stack([c[i] for c in clips]) for i in range(3))
    before = _stats(triton_client, model)
    batched = triton_client.infer(model, _inputs(video, behavior, pupil, "UINT8"))
    after = _stats(triton_client, model)
    responses = batched.as_numpy("responses")
    assert responses.shape[:2] == (3, frames)
    with Client(server.target) as client:
        for i, clip in enumerate(clips):
            alone = client.predict(*clip, model=model)
            assert np.abs(responses[i] - alone).max() <= 1e-5 * np.abs(alone).max()
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 3
    assert 3 in [int(b["batch_size"]) for b in after["batch_stats"]]


def test_batches_beyond_the_limit_or_in_a_sequence_are_refused(
    triton_client: Any, sample: Trial
) -> None:
    video, behavior, pupil = (np.stack([a[:10]] * 9) for a in sample)
    refused = "batch of 9 clips; this server takes 1 to 8"
    with pytest.raises(InferenceServerException, match=refused):
        triton_client.infer("tiny", _inputs(video, behavior, pupil, "UINT8"))
    two = _inputs(video[:2], behavior[:2], pupil[:2], "UINT8")
    with pytest.raises(InferenceServerException, match="a sequence is one stream"):
        triton_client.infer("tiny", two, sequence_id=41, sequence_start=True)
    mismatched = _inputs(video[:2], behavior[:3], pupil[:2], "UINT8")
    with pytest.raises(InferenceServerException, match="a batch axis leads every input"):
        triton_client.infer("tiny", mismatched)


def _stats(client: Any, name: str) -> dict[str, Any]:
    [entry] = client.get_inference_statistics(name, "1", as_json=True)["model_stats"]
    return dict(entry)


def _count(stats: dict[str, Any], key: str) -> int:
    return int(stats["inference_stats"][key].get("count", 0))


def test_statistics_count_successes_failures_and_durations(
    triton_client: Any, sample: Trial
) -> None:
    video, behavior, pupil = (a[:10] for a in sample)
    before = _stats(triton_client, "tiny")
    for _ in range(3):
        triton_client.infer("tiny", _inputs(video, behavior, pupil, "UINT8"))
    with pytest.raises(InferenceServerException):
        triton_client.infer("tiny", _inputs(video[:, :5], behavior, pupil, "UINT8"))  # bad shape
    after = _stats(triton_client, "tiny")
    assert after["name"] == "tiny"
    assert after["version"] == "1"
    assert _count(after, "success") - _count(before, "success") == 3
    assert _count(after, "fail") - _count(before, "fail") == 1
    assert int(after["execution_count"]) - int(before.get("execution_count", 0)) == 3
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 3
    compute = after["inference_stats"]["compute_infer"]
    assert int(compute["count"]) >= 3
    assert int(compute["ns"]) > 0
    assert int(after["last_inference"]) > 0
    assert 1 in [int(b["batch_size"]) for b in after["batch_stats"]]
    every = triton_client.get_inference_statistics(as_json=True)["model_stats"]
    assert {(e["name"], e["version"]) for e in every} == {("sensorium", "1"), ("tiny", "1")}


def test_repository_index_lists_served_and_broken_versions(triton_client: Any) -> None:
    index = triton_client.get_model_repository_index(as_json=True)["models"]
    states = {(m["name"], m["version"]): (m.get("state"), m.get("reason", "")) for m in index}
    assert states[("tiny", "1")] == ("READY", "")
    assert states[("sensorium", "1")] == ("READY", "")
    state, reason = states[("broken", "1")]
    assert state == "UNAVAILABLE"
    assert "step.onnx" in reason
    extensions = set(triton_client.get_server_metadata().extensions)
    assert {"sequence", "model_configuration", "statistics", "model_repository"} <= extensions


def test_repository_index_of_ready_models_only(server: ServerThread) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        ready = stub.RepositoryIndex(oip.RepositoryIndexRequest(ready=True), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryIndex(oip.RepositoryIndexRequest(repository_name="other"), timeout=10)
    assert {m.state for m in ready.models} == {"READY"}
    assert "broken" not in {m.name for m in ready.models}
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_answers_v1_and_v1alpha(server: ServerThread) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    symbol = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.reflection.v1.ServerReflection"
    )
    with grpc.insecure_channel(server.target) as channel:
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            listed, described = list(call(iter([request, symbol]), timeout=10))
            names = {s.name for s in listed.list_services_response.service}
            assert {
                "sensorium.v1.Predictor",
                "inference.GRPCInferenceService",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            } <= names
            assert described.file_descriptor_response.file_descriptor_proto
