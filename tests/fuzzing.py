"""Generators of malformed requests for every surface, and a way to fire one at a server.

Each case is (surface, payload): raw bytes (random, or a valid request with bits
flipped, cut or padded) or a structured message with hostile values (names of any
length and alphabet, unknown dtypes, shapes that overflow or go 65 axes deep, byte
counts that do not match, NaN and infinite behaviour, state snapshots of any shape).
:func:`fire` sends it and returns the status code names the server answered (several
for a stream: each in-band error too). Used by ``tests/server/test_fuzz.py`` (a few
hundred cases in CI) and ``make fuzz`` (20,000).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from hypothesis import strategies as st

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_api.v1 import predictor_pb2 as pb

UNARY = {
    "ListModels": "/sensorium.v1.Predictor/ListModels",
    "GetModel": "/sensorium.v1.Predictor/GetModel",
    "Predict": "/sensorium.v1.Predictor/Predict",
    "oip.ModelInfer": "/inference.GRPCInferenceService/ModelInfer",
    "oip.ModelMetadata": "/inference.GRPCInferenceService/ModelMetadata",
    "oip.ModelReady": "/inference.GRPCInferenceService/ModelReady",
}
STREAMS = {
    "StreamPredict": "/sensorium.v1.Predictor/StreamPredict",
    "oip.ModelStreamInfer": "/inference.GRPCInferenceService/ModelStreamInfer",
}
SURFACES = (*UNARY, *STREAMS)

names = st.one_of(
    st.sampled_from(["tiny", "sensorium", "", "broken", "tiny.x", "sensorium.dynamic"]),
    st.text(max_size=40),
    st.text(alphabet="x", min_size=1000, max_size=5000),
)
extents = st.one_of(
    st.sampled_from([0, 1, 2, 3, 36, 64, 40, 8000]),
    st.integers(-3, 2**40),
    st.just(2**32),
    st.integers(-(2**63), 2**63 - 1),
)
shapes = st.one_of(
    st.lists(extents, max_size=6),
    st.lists(st.just(1), min_size=60, max_size=70),
    st.just([4294967296, 4294967296, 1]),
)


@st.composite
def tensors(draw: st.DrawFn) -> pb.Tensor:
    """A Tensor that is plausible (right byte count, maybe NaN) or hostile."""
    if draw(st.booleans()):
        frames = draw(st.integers(0, 3))
        shape = draw(st.sampled_from([[frames, 36, 64], [frames, 2], [frames], [1, frames, 2]]))
        dtype = draw(
            st.sampled_from([pb.DATA_TYPE_UINT8, pb.DATA_TYPE_FLOAT16, pb.DATA_TYPE_FLOAT32])
        )
        item = {pb.DATA_TYPE_UINT8: 1, pb.DATA_TYPE_FLOAT16: 2, pb.DATA_TYPE_FLOAT32: 4}[dtype]
        fill = draw(st.sampled_from([b"\x00", b"\xff", b"\x7f\xc0\x00\x00"[::-1]]))  # 0, max, NaN
        size = int(np.prod(shape)) * item
        return pb.Tensor(dtype=dtype, shape=shape, data=(fill * size)[:size])
    return pb.Tensor(
        dtype=draw(st.integers(0, 12)), shape=draw(shapes), data=draw(st.binary(max_size=48))
    )


def _maybe(draw: st.DrawFn, value: Any) -> Any:
    return value if draw(st.booleans()) else None


@st.composite
def predict_requests(draw: st.DrawFn) -> pb.PredictRequest:
    """A PredictRequest with hostile fields."""
    fields = {
        "model": draw(names),
        "version": draw(st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1, 2])),
        "mouse": draw(names),
        "response_dtype": draw(st.integers(0, 9)),
    }
    for name in ("video", "behavior", "pupil_center"):
        tensor = _maybe(draw, draw(tensors()))
        if tensor is not None:
            fields[name] = tensor
    return pb.PredictRequest(**fields)


@st.composite
def stream_messages(draw: st.DrawFn) -> pb.StreamPredictRequest:
    """One message of a StreamPredict call."""
    kind = draw(st.sampled_from(["open", "snapshot_open", "frames", "reset", "snapshot", "resume"]))
    if kind == "open":
        return pb.StreamPredictRequest(open=pb.StreamOpen(model=draw(names), mouse=draw(names)))
    if kind == "resume":
        return pb.StreamPredictRequest(open=pb.StreamOpen(resume_session_id=draw(names)))
    if kind == "snapshot_open":
        state = [
            pb.NamedTensor(name=draw(names), tensor=draw(tensors()))
            for _ in range(draw(st.integers(0, 3)))
        ]
        snapshot = pb.StateSnapshot(
            model=draw(names),
            version=draw(st.integers(-5, 5)),
            mouse=draw(names),
            manifest_sha256=draw(names),
            next_frame=draw(extents),
            trial_count=draw(extents),
            state=state,
        )
        return pb.StreamPredictRequest(open=pb.StreamOpen(snapshot=snapshot))
    if kind == "frames":
        frames = pb.StreamFrames(
            video=draw(tensors()), behavior=draw(tensors()), pupil_center=draw(tensors())
        )
        if draw(st.booleans()):
            frames.frame_index = draw(extents)
        return pb.StreamPredictRequest(frames=frames)
    if kind == "reset":
        return pb.StreamPredictRequest(reset=pb.StreamReset())
    return pb.StreamPredictRequest(snapshot=pb.StreamSnapshotRequest())


@st.composite
def infer_requests(draw: st.DrawFn) -> Any:
    """An OIP ModelInferRequest with hostile inputs and parameters."""
    request = oip.ModelInferRequest(model_name=draw(names), model_version=draw(st.text(max_size=6)))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        tensor = request.inputs.add()
        tensor.name = draw(st.sampled_from(["video", "behavior", "pupil_center"]) | names)
        tensor.datatype = draw(
            st.sampled_from(["UINT8", "FP32", "FP16", "INT64", "BYTES", ""]) | st.text(max_size=8)
        )
        tensor.shape.extend(draw(shapes))
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=64)))
        else:
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
            tensor.contents.uint_contents.extend(
                draw(st.lists(st.integers(0, 2**32 - 1), max_size=8))
            )
    if draw(st.booleans()):
        request.parameters["sequence_id"].CopyFrom(
            draw(
                st.sampled_from(
                    [
                        oip.InferParameter(int64_param=7),
                        oip.InferParameter(string_param="s"),
                        oip.InferParameter(bool_param=True),
                    ]
                )
            )
        )
        request.parameters["sequence_start"].bool_param = draw(st.booleans())
    for _ in range(draw(st.integers(0, 2))):
        request.outputs.add().name = draw(names)
    return request


def mangled(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with bits flipped, cut short, or with bytes spliced in."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            if not data:
                break
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        if draw(st.booleans()):
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        return bytes(data)

    return build()


VALID = {
    "ListModels": pb.ListModelsRequest().SerializeToString(),
    "GetModel": pb.GetModelRequest(model="tiny").SerializeToString(),
    "Predict": pb.PredictRequest(
        model="tiny",
        video=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[2, 36, 64], data=bytes(2 * 36 * 64)),
        behavior=pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[2, 2], data=bytes(16)),
        pupil_center=pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[2, 2], data=bytes(16)),
    ).SerializeToString(),
    "oip.ModelInfer": oip.ModelInferRequest(model_name="tiny").SerializeToString(),
    "oip.ModelMetadata": oip.ModelMetadataRequest(name="tiny").SerializeToString(),
    "oip.ModelReady": oip.ModelReadyRequest(name="tiny").SerializeToString(),
}


def raw_bytes(surface: str) -> st.SearchStrategy[bytes]:
    """Random bytes, or a valid request of ``surface`` mangled."""
    valid = VALID.get(
        surface, pb.StreamPredictRequest(open=pb.StreamOpen(model="tiny")).SerializeToString()
    )
    return st.binary(max_size=96) | mangled(valid)


def structured(surface: str) -> st.SearchStrategy[bytes]:
    """A well-formed message of ``surface`` with hostile values, serialized."""
    if surface == "Predict":
        return predict_requests().map(lambda m: m.SerializeToString())
    if surface == "GetModel":
        return st.builds(
            lambda n, v: pb.GetModelRequest(model=n, version=v).SerializeToString(),
            names,
            st.integers(-(2**63), 2**63 - 1),
        )
    if surface == "oip.ModelInfer":
        return infer_requests().map(lambda m: m.SerializeToString())
    if surface in ("oip.ModelMetadata", "oip.ModelReady"):
        kind = oip.ModelMetadataRequest if surface == "oip.ModelMetadata" else oip.ModelReadyRequest
        return st.builds(
            lambda n, v: kind(name=n, version=v).SerializeToString(), names, st.text(max_size=8)
        )
    return raw_bytes(surface)


def cases(surface: str) -> st.SearchStrategy[list[bytes]]:
    """The payloads of one call: one message for a unary call, 1 to 4 for a stream."""
    if surface == "StreamPredict":
        message = stream_messages().map(lambda m: m.SerializeToString()) | raw_bytes(surface)
        return st.lists(message, min_size=1, max_size=4)
    if surface == "oip.ModelStreamInfer":
        message = infer_requests().map(lambda m: m.SerializeToString()) | raw_bytes(
            "oip.ModelInfer"
        )
        return st.lists(message, min_size=1, max_size=4)
    return (structured(surface) | raw_bytes(surface)).map(lambda b: [b])


def fire(channel: grpc.Channel, surface: str, payloads: list[bytes]) -> list[str]:
    """Send one case; the status code names answered (a stream's in-band errors too)."""
    if surface in UNARY:
        try:
            channel.unary_unary(UNARY[surface])(payloads[0], timeout=30)
        except grpc.RpcError as err:
            return [err.code().name]
        return ["OK"]
    codes = []
    try:
        for reply in channel.stream_stream(STREAMS[surface])(iter(payloads), timeout=30):
            if surface == "oip.ModelStreamInfer":
                message = oip.ModelStreamInferResponse.FromString(reply).error_message
                if message:
                    codes.append(message.split(":", 1)[0])
    except grpc.RpcError as err:
        codes.append(err.code().name)
    return codes or ["OK"]
