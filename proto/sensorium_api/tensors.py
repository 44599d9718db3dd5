"""numpy <-> ``sensorium.v1.Tensor``: raw little-endian bytes plus dtype and shape.

Raw bytes are 4-8x faster to encode and decode than repeated floats, and let a
frame cross the wire without a copy per element.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from google.protobuf.message import Message

from sensorium_api import wire
from sensorium_api.v1 import predictor_pb2 as pb

_TO_NUMPY: dict[pb.DataType, np.dtype] = {
    pb.DATA_TYPE_UINT8: np.dtype("u1"),
    pb.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    pb.DATA_TYPE_FLOAT32: np.dtype("<f4"),
}
_TO_WIRE: dict[np.dtype, pb.DataType] = {
    np.dtype(d).newbyteorder("="): code for code, d in _TO_NUMPY.items()
}


M = TypeVar("M", bound=Message)

_DATA_FIELD = pb.Tensor.DESCRIPTOR.fields_by_name["data"].number

MAX_DIMS = 8  # every tensor of the API has at most 5 axes


class TensorError(ValueError):
    """A tensor message or array that cannot cross the wire; names the field."""


def wire_dtype(dtype: np.dtype | type | str) -> pb.DataType:
    """Return the ``DataType`` code of a numpy dtype, or raise TensorError."""
    key = np.dtype(dtype).newbyteorder("=")
    try:
        return _TO_WIRE[key]
    except KeyError:
        names = ", ".join(str(d) for d in _TO_NUMPY.values())
        raise TensorError(f"dtype {np.dtype(dtype)} cannot be sent; use one of {names}") from None


def numpy_dtype(code: pb.DataType | int) -> np.dtype:
    """Return the little-endian numpy dtype of a ``DataType`` code, or raise TensorError."""
    try:
        return _TO_NUMPY[code]  # type: ignore[index]
    except KeyError:
        raise TensorError(f"unknown or unset tensor dtype code {code}") from None


def to_tensor(array: np.ndarray) -> pb.Tensor:
    """Encode an array (uint8, float16 or float32) as a ``Tensor`` message."""
    code = wire_dtype(array.dtype)
    data = np.ascontiguousarray(array, dtype=_TO_NUMPY[code])
    return pb.Tensor(dtype=code, shape=data.shape, data=data.tobytes())


def tensor_field(number: int, array: np.ndarray) -> list[wire.Piece]:
    """Field ``number`` holding ``array`` as a ``Tensor``, as pieces for :func:`wire.join`.

    Appended to a serialized message that leaves that field unset, it reads as the
    message with the field set to ``to_tensor(array)``; the array is not copied here.
    """
    code = wire_dtype(array.dtype)
    data = np.ascontiguousarray(array, dtype=_TO_NUMPY[code])
    header = pb.Tensor(dtype=code, shape=data.shape).SerializeToString()
    if data.nbytes:  # proto3 leaves empty bytes out
        header += wire.delimited(_DATA_FIELD, data.nbytes)
    return [wire.delimited(number, len(header) + data.nbytes) + header, data]


def check_shape(shape: tuple[int, ...], field: str) -> None:
    """Raise TensorError for more than ``MAX_DIMS`` axes or a negative extent."""
    if len(shape) > MAX_DIMS:
        raise TensorError(f"{field}: {len(shape)} axes, at most {MAX_DIMS}")
    if any(s < 0 for s in shape):
        raise TensorError(f"{field}: negative extent in shape {list(shape)}")


def from_tensor(
    tensor: pb.Tensor, field: str = "tensor", data: bytes | memoryview | None = None
) -> np.ndarray:
    """Decode a ``Tensor`` message into a read-only array in native byte order.

    Args:
        tensor: The message.
        field: Name of the message field, used in error messages.
        data: The elements when they were kept out of the message (:class:`Lean`);
            None: the message's own ``data`` (read once: each read is a copy).

    Raises:
        TensorError: unset dtype, negative extents, or a byte count that does not
            match the shape.
    """
    try:
        dtype = numpy_dtype(tensor.dtype)
    except TensorError as err:
        raise TensorError(f"{field}: {err}") from None
    shape = tuple(int(s) for s in tensor.shape)
    check_shape(shape, field)
    payload = tensor.data if data is None else data
    expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    if len(payload) != expected:
        raise TensorError(
            f"{field}: {len(payload)} bytes do not match shape {shape} of {dtype.name} "
            f"(expected {expected} bytes)"
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


class Lean:
    """A parsed message whose ``Tensor`` fields' elements stayed in the received bytes.

    Attributes read through to the message; :meth:`data` gives a tensor field's
    elements, a view of the received bytes (no copy).
    """

    def __init__(self, message: Message, payloads: dict[int, memoryview]) -> None:
        """``message`` without its tensors' data; ``payloads`` by field number."""
        self.message, self.payloads = message, payloads

    def __getattr__(self, name: str) -> Any:
        return getattr(self.message, name)

    def data(self, field: str) -> bytes | memoryview:
        """The elements of tensor field ``field``."""
        number = self.message.DESCRIPTOR.fields_by_name[field].number
        return self.payloads.get(number, b"")


def lean_parser(message_type: type[M]) -> Callable[[bytes], M | Lean]:
    """A request deserializer: large messages parse into :class:`Lean` ones.

    A message of ``wire.LARGE_BYTES`` or more (a clip) is parsed without its
    tensors' elements, which stay in the received bytes; a small one (a frame) and
    any not in the plain protobuf form parse as usual.
    """
    tensors = frozenset(
        f.number for f in message_type.DESCRIPTOR.fields if f.message_type == pb.Tensor.DESCRIPTOR
    )

    def parse(raw: bytes) -> M | Lean:
        split = (
            wire.split_payloads(raw, tensors, _DATA_FIELD) if len(raw) >= wire.LARGE_BYTES else None
        )
        if split is None:
            return message_type.FromString(raw)
        lean, payloads = split
        return Lean(message_type.FromString(lean), payloads)

    return parse


def tensor_of(message: Message | Lean, field: str) -> np.ndarray:
    """The array of tensor field ``field`` of a message (plain or :class:`Lean`)."""
    data = message.data(field) if isinstance(message, Lean) else None
    return from_tensor(getattr(message, field), field, data)
