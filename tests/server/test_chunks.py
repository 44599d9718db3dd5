"""PredictChunks: a whole clip answered in parts as they are computed."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from sensorium_api.tensors import from_tensor, to_tensor
from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from sensorium_client import Client, messages
from sensorium_client.errors import ResourceExhaustedError
from tests.serving import ServerThread, local_settings

Code = grpc.StatusCode
Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


def _request(trial: Trial, frames: int, **fields: object) -> pb.PredictRequest:
    video, behavior, pupil = (a[:frames] for a in trial)
    message = pb.PredictRequest(
        model="sensorium",
        video=to_tensor(video),
        behavior=to_tensor(behavior),
        pupil_center=to_tensor(pupil),
    )
    for name, value in fields.items():
        if isinstance(value, pb.Tensor):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


CHANNEL = [("grpc.max_receive_message_length", 64 * 2**20)]


@pytest.fixture
def stub(server: ServerThread) -> Iterator[pb_grpc.PredictorStub]:
    with grpc.insecure_channel(server.target, CHANNEL) as channel:
        yield pb_grpc.PredictorStub(channel)


def test_parts_follow_the_chunks_and_join_to_predict(
    stub: pb_grpc.PredictorStub, sample: Trial
) -> None:
    request = _request(sample, 254)  # chunks of 50 frames on the shared server
    parts = list(stub.PredictChunks(request, timeout=60))
    whole = stub.Predict(request, timeout=60)
    assert [p.first_frame for p in parts] == [0, 50, 100, 150, 200, 250]
    assert [p.total_frames for p in parts] == [254] * 6
    assert [from_tensor(p.responses).shape for p in parts] == [(50, 8000)] * 5 + [(4, 8000)]
    assert {(p.model, p.version, p.mouse) for p in parts} == {
        (whole.model, whole.version, whole.mouse)
    }
    assert all(p.timing.compute_ms > 0 for p in parts)
    joined = np.concatenate([from_tensor(p.responses) for p in parts])
    assert np.array_equal(joined, from_tensor(whole.responses))  # the same graph, same chunks
    assert whole.total_frames == 254
    assert whole.first_frame == 0


def test_a_short_clip_is_one_part_from_the_clip_graph(
    stub: pb_grpc.PredictorStub, sample: Trial
) -> None:
    request = _request(sample, 30, response_dtype=pb.DATA_TYPE_FLOAT16)
    [part] = list(stub.PredictChunks(request, timeout=60))
    whole = stub.Predict(request, timeout=60)
    assert (part.first_frame, part.total_frames) == (0, 30)
    responses = from_tensor(part.responses)
    assert responses.dtype == np.float16
    assert np.array_equal(responses, from_tensor(whole.responses))


def test_bad_requests_fail_before_any_part(stub: pb_grpc.PredictorStub, sample: Trial) -> None:
    video = sample[0][:20].astype(np.float32)
    video[3, 4, 5] = np.nan
    bad = _request(sample, 20, video=to_tensor(video))
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.PredictChunks(bad, timeout=30))
    assert caught.value.code() == Code.INVALID_ARGUMENT
    assert "video" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.PredictChunks(_request(sample, 10, model="nope"), timeout=30))
    assert caught.value.code() == Code.NOT_FOUND
    assert len(list(stub.PredictChunks(_request(sample, 10), timeout=30))) == 1  # still serving


@pytest.fixture
def small_messages(repository: Path) -> Iterator[ServerThread]:
    """Messages of at most 4 MB: a 254-frame reply (8 MB) does not fit in one."""
    settings = local_settings(
        repository, versions="specific:1", max_message_mb=4, clip_chunk_frames=100
    )
    running = ServerThread(settings).start()
    yield running
    running.stop()


def test_clips_beyond_the_message_limit_come_in_parts(
    small_messages: ServerThread, sample: Trial
) -> None:
    """Predict refuses a reply over --max-message-mb; PredictChunks and the SDK serve it."""
    with grpc.insecure_channel(small_messages.target, CHANNEL) as channel:
        stub = pb_grpc.PredictorStub(channel)
        request = _request(sample, 254)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=60)
        assert caught.value.code() == Code.RESOURCE_EXHAUSTED
        parts = list(stub.PredictChunks(request, timeout=60))
    assert [p.first_frame for p in parts] == [0, 100, 200]
    with Client(small_messages.target) as client:
        responses = client.predict(*sample, model="sensorium")
        short = client.predict(*(a[:30] for a in sample), model="sensorium")  # unary: 1 MB
    assert responses.shape == (254, 8000)
    assert np.array_equal(responses, np.concatenate([from_tensor(p.responses) for p in parts]))
    assert short.shape == (30, 8000)
    assert messages.chunked(254, 8000, "float32")
    assert not messages.chunked(30, 8000, "float32")


@pytest.fixture
def unchunked(repository: Path) -> Iterator[ServerThread]:
    """Messages of at most 4 MB and clips never chunked: a part is the whole clip."""
    settings = local_settings(
        repository, versions="specific:1", max_message_mb=4, clip_chunk_frames=0
    )
    running = ServerThread(settings).start()
    yield running
    running.stop()


def test_a_part_over_the_message_limit_is_refused(unchunked: ServerThread, sample: Trial) -> None:
    with (
        Client(unchunked.target) as client,
        pytest.raises(ResourceExhaustedError, match="4 MiB message limit"),
    ):
        client.predict(*sample, model="sensorium")
    with Client(unchunked.target) as client:
        assert client.predict(*(a[:30] for a in sample), model="sensorium").shape == (30, 8000)


class _OldPredictor(pb_grpc.PredictorServicer):
    """A server of a release before PredictChunks: it answers Predict only."""

    def __init__(self, reply: pb.PredictResponse) -> None:
        self.reply = reply
        self.calls = 0

    def Predict(  # noqa: N802
        self, request: pb.PredictRequest, context: grpc.ServicerContext
    ) -> pb.PredictResponse:
        self.calls += 1
        return self.reply

    def GetModel(  # noqa: N802
        self, request: pb.GetModelRequest, context: grpc.ServicerContext
    ) -> pb.GetModelResponse:
        return self.model

    model: pb.GetModelResponse


def test_the_sdk_falls_back_to_predict_on_an_older_server(
    server: ServerThread, sample: Trial
) -> None:
    with grpc.insecure_channel(server.target, CHANNEL) as channel:
        stub = pb_grpc.PredictorStub(channel)
        manifest = stub.GetModel(pb.GetModelRequest(model="sensorium"), timeout=30)
        reply = stub.Predict(_request(sample, 254), timeout=60)
    old = _OldPredictor(reply)
    old.model = manifest
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(2), options=[("grpc.max_send_message_length", 64 * 2**20)]
    )
    pb_grpc.add_PredictorServicer_to_server(old, grpc_server)
    port = grpc_server.add_insecure_port("localhost:0")
    grpc_server.start()
    try:
        with Client(f"localhost:{port}") as client:
            first = client.predict(*sample, model="sensorium")
            second = client.predict(*sample, model="sensorium")
    finally:
        grpc_server.stop(None)
    assert old.calls == 2
    assert np.array_equal(first, from_tensor(reply.responses))
    assert np.array_equal(second, first)


def test_parts_out_of_order_are_refused() -> None:
    def part(first: int, frames: int) -> pb.PredictResponse:
        data = to_tensor(np.full((frames, 3), first, np.float32))
        return pb.PredictResponse(responses=data, first_frame=first, total_frames=10)

    parts = messages.Parts()
    parts.add(part(0, 4))
    with pytest.raises(ValueError, match=r"frames 6\.\.10 after 4"):
        parts.add(part(6, 4))
    with pytest.raises(ValueError, match="ended after 4 of 10"):
        parts.result()
    parts.add(part(4, 6))
    assert np.array_equal(parts.result()[:, 0], [0] * 4 + [4] * 6)
