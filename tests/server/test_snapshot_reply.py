"""A stream's state serialized for a drain notice or a snapshot reply, read back by protobuf."""

from __future__ import annotations

import numpy as np
import pytest

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_server import convert
from sensorium_server.dataplane import Snapshot


def _snapshot(shapes: list[tuple[int, ...]]) -> Snapshot:
    rng = np.random.default_rng(0)
    state = {
        f"state_{i}": rng.normal(size=(1, *s)).astype(np.float32) for i, s in enumerate(shapes)
    }
    return Snapshot("sensorium", 3, "mouse-a", "ab" * 32, 117, 4, state, "r1.s1")


@pytest.mark.parametrize(
    "shapes",
    [
        [(32, 4, 18, 32), (24, 8, 18, 32), (32, 16, 18, 32)],  # the default model: 1.9 MB
        [(2, 3, 4, 5)],  # small: the plain path of wire.join
        [],  # a model without state
    ],
)
@pytest.mark.parametrize("draining", [None, "this replica is draining"])
def test_snapshot_reply_reads_as_the_message(
    shapes: list[tuple[int, ...]], draining: str | None
) -> None:
    snapshot = _snapshot(shapes)
    data = convert.snapshot_reply(snapshot, draining)
    message = convert.snapshot_message(snapshot)
    if draining is None:
        expected = pb.StreamPredictResponse(snapshot=message)
    else:
        expected = pb.StreamPredictResponse(
            draining=pb.StreamDraining(reason=draining, snapshot=message)
        )
    parsed = pb.StreamPredictResponse.FromString(data)
    assert parsed == expected
    assert len(data) == expected.ByteSize()
    back = convert.snapshot_of(parsed.draining.snapshot if draining else parsed.snapshot)
    assert back.next_frame == 117
    assert back.session_id == "r1.s1"
    for name, array in snapshot.state.items():
        np.testing.assert_array_equal(back.state[name], array)
