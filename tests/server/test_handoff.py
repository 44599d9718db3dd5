"""Drain hands each open stream's state to another replica: the rig sees no gap."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sensorium_client import Client
from tests.serving import ServerProcess

FLAGS = ("--versions", "specific:1", "--drain-delay-s", "0.5", "--drain-grace-s", "30")


def _trial(frames: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (frames, 36, 64), dtype=np.uint8)
    behavior = rng.uniform(0, 10, (frames, 2)).astype(np.float32)
    pupil = rng.normal(0, 3, (frames, 2)).astype(np.float32)
    return video, behavior, pupil


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_sigterm_moves_a_300_frame_stream_to_the_other_server(repository: Path) -> None:
    servers = [ServerProcess(repository, *FLAGS) for _ in range(2)]
    try:
        by_replica = {s.replica: s for s in servers}
        video, behavior, pupil = _trial(300)
        target = "ipv4:" + ",".join(s.address for s in servers)
        with Client(target) as client:
            expected = client.predict(video, behavior, pupil, model="sensorium")
            responses = []
            with client.stream(model="sensorium") as session:
                holder = by_replica[session.info.replica_id]
                for t in range(300):
                    responses.append(session.step(video[t], behavior[t], pupil[t]))
                    if t == 99:
                        holder.terminate()
                assert session.recovery.handoffs == 1
                assert session.info.origin == "snapshot"
                assert session.info.replica_id != holder.replica
        got = np.concatenate(responses)
        assert got.shape == expected.shape == (300, 8000)
        assert _relative(got, expected) <= 1e-4
        assert holder.wait(30) == 0
        assert "draining: 1 open streams told to move" in "".join(holder.log)
        _assert_clean_drain(holder, "ERROR")
    finally:
        for server in servers:
            server.kill()


def test_drain_exits_once_streams_and_watchers_have_moved(repository: Path) -> None:
    """Only a stream and a health watcher open: exit right after they move, not at the grace."""
    servers = [ServerProcess(repository, *FLAGS) for _ in range(2)]
    try:
        by_replica = {s.replica: s for s in servers}
        statuses: list[str] = []
        video, behavior, pupil = _trial(20)
        target = "ipv4:" + ",".join(s.address for s in servers)
        with Client(target) as client, client.stream(model="tiny") as session:
            session.step(video[:5], behavior[:5], pupil[:5])
            holder = by_replica[session.info.replica_id]

            def watch() -> None:
                with grpc.insecure_channel(holder.address) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    request = health_pb2.HealthCheckRequest(service="")
                    for reply in stub.Watch(request, timeout=60):
                        statuses.append(
                            health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                        )

            watcher = threading.Thread(target=watch)
            watcher.start()
            time.sleep(0.5)
            started = time.monotonic()
            holder.terminate()
            time.sleep(0.2)
            session.step(video[5:10], behavior[5:10], pupil[5:10])  # reads the notice, moves
            assert session.recovery.handoffs == 1
            assert holder.wait(30) == 0
            took = time.monotonic() - started
        watcher.join(10)
        assert not watcher.is_alive(), "the health Watch stream did not end at drain"
        assert statuses[0] == "SERVING"
        assert statuses[-1] == "NOT_SERVING"
        assert took < 4, f"exit took {took:.1f} s with a 30 s grace"
        _assert_clean_drain(holder, "CancelledError")
    finally:
        for server in servers:
            server.kill()


@pytest.mark.parametrize("use_async", [False, True])
def test_snapshot_continues_a_stream_and_is_checked(repository: Path, use_async: bool) -> None:
    from sensorium_client import AsyncClient

    server = ServerProcess(repository, *FLAGS)
    try:
        video, behavior, pupil = _trial(40)
        with Client(server.address) as client:
            expected = client.predict(video, behavior, pupil, model="tiny")
            with client.stream(model="tiny") as first:
                head = first.step(video[:25], behavior[:25], pupil[:25])
                snapshot = first.snapshot()
            if use_async:
                import asyncio

                async def rest() -> np.ndarray:
                    async with AsyncClient(server.address) as aclient:
                        stream = await aclient.stream(snapshot=snapshot)
                        async with stream:
                            assert stream.info.origin == "snapshot"
                            return await stream.step(video[25:], behavior[25:], pupil[25:])

                tail = asyncio.run(rest())
            else:
                with client.stream(snapshot=snapshot) as second:
                    assert second.info.origin == "snapshot"
                    assert second.info.next_frame == 25
                    tail = second.step(video[25:], behavior[25:], pupil[25:])
            assert _relative(np.concatenate([head, tail]), expected) <= 1e-4
        _refused(
            server.address,
            grpc.StatusCode.FAILED_PRECONDITION,
            "snapshot: its model",
            model="sensorium",
            snapshot=snapshot,
        )
        for bad in (
            _with(snapshot, mouse="dynamic12345-1-1-Video-another-mouse"),
            _with(snapshot, version=2),
            _with(snapshot, manifest_sha256="0" * 64),
        ):
            _refused(server.address, grpc.StatusCode.FAILED_PRECONDITION, "snapshot", snapshot=bad)
        truncated = _with(snapshot)
        truncated.state[0].tensor.shape[1] += 1
        _refused(server.address, grpc.StatusCode.INVALID_ARGUMENT, "snapshot", snapshot=truncated)
    finally:
        server.kill()


def _with(snapshot, **fields):  # type: ignore[no-untyped-def]
    copy = type(snapshot)()
    copy.CopyFrom(snapshot)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def _refused(address: str, code: grpc.StatusCode, needle: str, **open_fields) -> None:  # type: ignore[no-untyped-def]
    from sensorium_api.v1 import predictor_pb2 as pb
    from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        call = pb_grpc.PredictorStub(channel).StreamPredict(
            iter([pb.StreamPredictRequest(open=pb.StreamOpen(**open_fields))]), timeout=10
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
    assert caught.value.code() == code, caught.value.details()
    assert needle in caught.value.details()


def test_a_clip_that_would_outlast_the_drain_is_refused_for_a_retry(repository: Path) -> None:
    """Past the grace's deadline a chunked clip stops with UNAVAILABLE; the server exits 0."""
    import concurrent.futures

    from sensorium_client import UnavailableError

    flags = ("--versions", "specific:1", "--drain-delay-s", "0", "--drain-grace-s", "1")
    server = ServerProcess(repository, *flags, "--clip-chunk-frames", "10")
    try:
        video, behavior, pupil = _trial(3000)
        with (
            Client(server.address, retries=0, timeout=120) as client,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            clip = pool.submit(client.predict, video, behavior, pupil, model="sensorium")
            time.sleep(1.0)
            assert not clip.done()
            server.terminate()
            with pytest.raises(UnavailableError, match="draining"):
                clip.result(60)
        assert server.wait(30) == 0
        _assert_clean_drain(server)
    finally:
        server.kill()


def _assert_clean_drain(server: ServerProcess, *also: str) -> None:
    """No traceback (nor any of ``also``) in the log from the drain on."""
    log = "".join(server.log)
    drain = log[log.index("draining") :]
    for needle in ("Traceback", *also):
        assert needle not in drain, drain


def test_a_stream_whose_server_died_is_lost_after_recovery_s(repository: Path) -> None:
    """Past ``recovery_s`` of failed reattaching, a step raises StreamLostError."""
    from sensorium_client.recovery import StreamLostError

    server = ServerProcess(repository, *FLAGS)
    try:
        video, behavior, pupil = _trial(4)
        with Client(server.address, retries=0) as client:
            session = client.stream(model="tiny", recovery_s=1.0)
            session.step(video[:2], behavior[:2], pupil[:2])
            server.kill()
            started = time.monotonic()
            with pytest.raises(StreamLostError, match="could not be reattached or moved"):
                session.step(video[2:], behavior[2:], pupil[2:])
            assert 1.0 <= time.monotonic() - started < 10
            session.cancel()
    finally:
        server.kill()


def test_a_snapshot_continues_on_the_re_export_of_its_version(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A rollout of a re-exported version (same state, new graphs) carries streams over."""
    from sensorium_export.repository import write_version
    from sensorium_train.train import load_checkpoint

    model, checkpoint = load_checkpoint(tiny_checkpoint)
    old, new = tmp_path / "old", tmp_path / "new"
    before, _ = write_version(model, checkpoint, old, "tiny", {}, readout="grid")
    write_version(model, checkpoint, new, "tiny", {}, version=1, previous=before)
    servers = [ServerProcess(root, *FLAGS) for root in (old, new)]
    try:
        video, behavior, pupil = _trial(40)
        with Client(servers[0].address) as client:
            expected = client.predict(video, behavior, pupil, model="tiny")
            with client.stream(model="tiny") as first:
                head = first.step(video[:25], behavior[:25], pupil[:25])
                snapshot = first.snapshot()
        with Client(servers[1].address) as client, client.stream(snapshot=snapshot) as second:
            assert second.info.origin == "snapshot"
            tail = second.step(video[25:], behavior[25:], pupil[25:])
        assert _relative(np.concatenate([head, tail]), expected) <= 1e-4
        # The other way round is refused: the old version does not know the new graphs.
        with Client(servers[1].address) as client, client.stream(model="tiny") as stream:
            stream.step(video[:5], behavior[:5], pupil[:5])
            newer = stream.snapshot()
        _refused(
            servers[0].address,
            grpc.StatusCode.FAILED_PRECONDITION,
            "state_compatible_with",
            snapshot=newer,
        )
    finally:
        for server in servers:
            server.kill()
