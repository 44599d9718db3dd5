"""Serialized messages with array payloads written by ``sensorium_api.wire``."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from sensorium_api import wire
from sensorium_api.tensors import Lean, from_tensor, lean_parser, tensor_field, tensor_of, to_tensor
from sensorium_api.v1 import predictor_pb2 as pb

RESPONSES = pb.PredictResponse.DESCRIPTOR.fields_by_name["responses"].number


def _head() -> bytes:
    return pb.PredictResponse(
        model="sensorium", version=3, mouse="m", timing=pb.Timing(queue_ms=1.5, compute_ms=2.0)
    ).SerializeToString()


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((1200, 8000), "<f4"),  # 38 MB: the large path (memmove without the GIL)
        ((300, 8000), "<f2"),  # 4.8 MB in float16
        ((3, 5), "<f4"),  # small: the plain path
        ((0, 8000), "<f4"),  # no frames
        ((2, 36, 64), "u1"),
    ],
)
def test_join_reads_as_the_message_protobuf_writes(shape: tuple[int, ...], dtype: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 200).astype(dtype)
    data = wire.join([_head(), *tensor_field(RESPONSES, array)])
    expected = pb.PredictResponse.FromString(_head())
    expected.responses.CopyFrom(to_tensor(array))
    parsed = pb.PredictResponse.FromString(data)
    assert parsed == expected
    assert len(data) == expected.ByteSize()
    decoded = from_tensor(parsed.responses)
    assert decoded.dtype == np.dtype(dtype)
    assert np.array_equal(decoded, array)


def test_join_copies_the_array_as_it_is_then() -> None:
    array = np.arange(2**19, dtype=np.float32).reshape(512, 1024)  # 2 MiB: large path
    data = wire.join([b"\x01\x02", array])
    array[:] = -1  # the result holds its own copy
    assert data[:2] == b"\x01\x02"
    assert np.array_equal(np.frombuffer(data, "<f4", offset=2), np.arange(2**19, dtype=np.float32))


def test_join_refuses_strided_arrays() -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        wire.join([np.zeros((4, 4), np.float32)[:, ::2]])


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**21, 2**35 + 7])
def test_varint_matches_protobuf(value: int) -> None:
    encoded = pb.Tensor(shape=[value]).SerializeToString()  # packed: key, length, varint
    assert encoded.endswith(wire.varint(value))
    assert len(encoded) == 2 + len(wire.varint(value))


def _request(frames: int, dtype: str = "u1") -> pb.PredictRequest:
    rng = np.random.default_rng(1)
    return pb.PredictRequest(
        model="sensorium",
        version=2,
        mouse="m",
        video=to_tensor((rng.random((frames, 36, 64)) * 255).astype(dtype)),
        behavior=to_tensor(rng.random((frames, 2)).astype(np.float32)),
        pupil_center=to_tensor(rng.random((frames, 2)).astype(np.float32)),
        response_dtype=pb.DATA_TYPE_FLOAT16,
    )


def _same_request(parsed: pb.PredictRequest | Lean, expected: pb.PredictRequest) -> None:
    for name in ("model", "version", "mouse", "response_dtype"):
        assert getattr(parsed, name) == getattr(expected, name)
    for name in ("video", "behavior", "pupil_center"):
        assert parsed.HasField(name)
        assert np.array_equal(tensor_of(parsed, name), from_tensor(getattr(expected, name)))


@pytest.mark.parametrize("dtype", ["u1", "<f4"])
def test_a_clip_request_parses_without_copying_its_tensors(dtype: str) -> None:
    request = _request(600, dtype)  # 1.4 / 5.5 MB: over LARGE_BYTES
    raw = request.SerializeToString()
    parsed = lean_parser(pb.PredictRequest)(raw)
    assert isinstance(parsed, Lean)
    _same_request(parsed, request)
    video = parsed.data("video")
    assert isinstance(video, memoryview)
    assert video.obj is raw  # a view of the received bytes, not a copy
    assert parsed.message.ByteSize() < 200  # the rest of the message
    array = tensor_of(parsed, "video")
    assert not array.flags.writeable


def test_a_small_request_parses_as_usual() -> None:
    request = _request(2)
    parsed = lean_parser(pb.PredictRequest)(request.SerializeToString())
    assert isinstance(parsed, pb.PredictRequest)
    assert parsed == request


def test_requests_not_in_the_plain_form_parse_as_protobuf_reads_them() -> None:
    parse = lean_parser(pb.PredictRequest)
    raw = _request(600).SerializeToString()
    # A tensor field twice: protobuf merges the two; so does the fallback.
    again = pb.PredictRequest(video=to_tensor(np.ones((600, 36, 64), np.uint8)))
    twice = raw + again.SerializeToString()
    parsed = parse(twice)
    assert isinstance(parsed, pb.PredictRequest)
    assert parsed == pb.PredictRequest.FromString(twice)
    # Unknown fields (a newer client) at the top and inside a tensor are kept.
    extra = raw + bytes([99 << 3 & 0x7F | 0x80, 99 >> 4, 5])  # field 99, varint 5
    inner = wire.delimited(5, 2) + bytes([15 << 3, 1])  # behavior with a field 15
    for variant in (extra, raw + inner):
        lean = parse(variant)
        _same_request(lean, pb.PredictRequest.FromString(variant))
    # Cut bytes: the plain parser's error, as the gate reports it.
    with pytest.raises(DecodeError):
        pb.PredictRequest.FromString(raw[:-3])
    with pytest.raises(DecodeError):
        parse(raw[:-3])
