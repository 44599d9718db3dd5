"""Serialized messages with array payloads written by ``sensorium_api.wire``."""

from __future__ import annotations

import numpy as np
import pytest

from sensorium_api import wire
from sensorium_api.tensors import from_tensor, tensor_field, to_tensor
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
