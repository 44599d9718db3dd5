"""The generated stubs match the .proto sources and describe the contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto/generate_stubs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_predictor_service_methods() -> None:
    service = pb.DESCRIPTOR.services_by_name["Predictor"]
    assert service.full_name == "sensorium.v1.Predictor"
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"ListModels", "GetModel", "Predict", "PredictChunks", "StreamPredict"}
    chunks = methods["PredictChunks"]
    assert not chunks.client_streaming
    assert chunks.server_streaming
    assert chunks.output_type.name == "PredictResponse"
    stream = methods["StreamPredict"]
    assert stream.client_streaming
    assert stream.server_streaming
    assert not methods["Predict"].client_streaming
    assert hasattr(predictor_pb2_grpc, "PredictorStub")
    assert hasattr(predictor_pb2_grpc, "add_PredictorServicer_to_server")


def test_stream_messages_are_a_oneof() -> None:
    request = pb.StreamPredictRequest(open=pb.StreamOpen(model="m", mouse="x"))
    assert request.WhichOneof("kind") == "open"
    request.frames.CopyFrom(pb.StreamFrames(frame_index=0))
    assert request.WhichOneof("kind") == "frames"
    assert request.frames.HasField("frame_index")
    assert not pb.StreamFrames().HasField("frame_index")


def test_descriptor_file_name_is_canonical() -> None:
    """Reflection clients resolve the file by its proto path."""
    assert pb.DESCRIPTOR.name == "sensorium/v1/predictor.proto"
    assert pb.DESCRIPTOR.package == "sensorium.v1"
