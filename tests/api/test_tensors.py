from __future__ import annotations

import numpy as np
import pytest

from sensorium_api.tensors import TensorError, from_tensor, to_tensor
from sensorium_api.v1 import predictor_pb2 as pb


@pytest.mark.parametrize("dtype", ["u1", "<f2", "<f4", ">f4"])
def test_round_trip(dtype: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.uniform(0, 255, size=(3, 36, 64))).astype(dtype)
    tensor = to_tensor(array)
    assert list(tensor.shape) == [3, 36, 64]
    back = from_tensor(tensor)
    np.testing.assert_array_equal(back, array)
    assert back.dtype.isnative


def test_bytes_are_little_endian_c_order() -> None:
    array = np.arange(6, dtype=">f4").reshape(2, 3).T  # big-endian, not C-contiguous
    tensor = to_tensor(array)
    assert tensor.dtype == pb.DATA_TYPE_FLOAT32
    assert tensor.data == np.ascontiguousarray(array, dtype="<f4").tobytes()


def test_unsupported_dtype_is_named() -> None:
    with pytest.raises(TensorError, match="float64 cannot be sent"):
        to_tensor(np.zeros(3))


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (pb.Tensor(shape=[2], data=b"\0\0"), "video: unknown or unset tensor dtype"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[2, 3], data=b"\0" * 20), "expected 24"),
        (pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[-1, 2], data=b""), "negative extent"),
    ],
)
def test_malformed_tensor(tensor: pb.Tensor, message: str) -> None:
    with pytest.raises(TensorError, match=message) as info:
        from_tensor(tensor, field="video")
    assert str(info.value).startswith("video:")
