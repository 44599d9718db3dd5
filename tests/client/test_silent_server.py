"""A peer that takes a stream and never answers: the SDK gives up in bounded time.

The peer answers ``GetModel`` with what our real server says, then reads the stream's
requests and says nothing (as a stalled call did once, on an overloaded machine).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_client import AsyncClient, Client
from sensorium_client.errors import DeadlineExceededError
from tests.serving import ServerThread

SERVICE = "sensorium.v1.Predictor"


@pytest.fixture
def silent(server: ServerThread) -> Iterator[str]:
    with Client(server.target) as client:
        model = client._stub.GetModel(pb.GetModelRequest(model="sensorium"), timeout=30)
    release = threading.Event()

    def get_model(request: Any, context: Any) -> Any:
        return model

    def stream_predict(requests: Any, context: Any) -> Any:
        for _ in requests:  # reads, never answers
            if release.wait(0.05):
                return
        return
        yield  # a generator: a streaming handler

    handlers = {
        "GetModel": grpc.unary_unary_rpc_method_handler(
            get_model,
            request_deserializer=pb.GetModelRequest.FromString,
            response_serializer=pb.GetModelResponse.SerializeToString,
        ),
        "StreamPredict": grpc.stream_stream_rpc_method_handler(
            stream_predict,
            request_deserializer=pb.StreamPredictRequest.FromString,
            response_serializer=pb.StreamPredictResponse.SerializeToString,
        ),
    }
    peer = grpc.server(futures.ThreadPoolExecutor(4))
    peer.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = peer.add_insecure_port("localhost:0")
    peer.start()
    yield f"localhost:{port}"
    release.set()
    peer.stop(0)


def test_a_stream_never_opened_fails_after_the_timeout(silent: str) -> None:
    with Client(silent, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="did not open the stream within 5 s"):
            client.stream(model="sensorium")
        assert time.monotonic() - started < 15


def test_the_asyncio_sdk_too(silent: str) -> None:
    async def main() -> float:
        async with AsyncClient(silent, timeout=1.0) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError, match="within 5 s"):
                await client.stream(model="sensorium")
            return time.monotonic() - started

    assert asyncio.run(main()) < 15


def test_a_new_stream_refused_by_a_draining_replica_opens_on_the_other(repository: Any) -> None:
    from tests.serving import local_settings

    replicas = [ServerThread(local_settings(repository)).start() for _ in range(2)]
    try:
        replicas[0].server.plane.draining = True  # refuses new streams: UNAVAILABLE
        target = "ipv4:" + ",".join(f"127.0.0.1:{r.server.port}" for r in replicas)
        with Client(target) as client:
            for _ in range(6):  # round-robin sends about half of the opens to the first
                with client.stream(model="tiny") as session:
                    assert session.info.replica_id == replicas[1].server.plane.sessions.replica_id

        async def aio() -> None:
            async with AsyncClient(target) as client:
                for _ in range(6):
                    session = await client.stream(model="tiny")
                    assert session.info.replica_id == replicas[1].server.plane.sessions.replica_id
                    await session.close()

        asyncio.run(aio())
    finally:
        for replica in replicas:
            replica.stop()
