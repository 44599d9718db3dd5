"""Streams outlive connections: resume after a break, replay once, age, unread replies, lanes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from sensorium_api.tensors import from_tensor, to_tensor
from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from sensorium_client import Client
from tests.proxy import Proxy
from tests.serving import ServerThread, local_settings

Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


def _trial(frames: int, seed: int = 5) -> Trial:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (frames, 36, 64), dtype=np.uint8),
        rng.uniform(0, 10, (frames, 2)).astype(np.float32),
        rng.normal(0, 3, (frames, 2)).astype(np.float32),
    )


@pytest.fixture
def resumable(repository: Path) -> Iterator[ServerThread]:
    """A server with a 2 s idle timeout (the resume window) and 1 s connection age."""
    settings = local_settings(
        repository, versions="specific:1", idle_timeout_s=2.0, max_connection_age_s=1.0
    )
    running = ServerThread(settings).start()
    yield running
    running.stop()


def _frames(trial: Trial, t: int) -> pb.StreamPredictRequest:
    video, behavior, pupil = (a[t : t + 1] for a in trial)
    return pb.StreamPredictRequest(
        frames=pb.StreamFrames(
            video=to_tensor(video),
            behavior=to_tensor(behavior),
            pupil_center=to_tensor(pupil),
            frame_index=t,
        )
    )


class Raw:
    """A native stream driven message by message."""

    def __init__(self, target: str, first: pb.StreamOpen) -> None:
        self.channel = grpc.insecure_channel(target)
        self.requests: queue.SimpleQueue[pb.StreamPredictRequest | None] = queue.SimpleQueue()
        self.requests.put(pb.StreamPredictRequest(open=first))
        self.replies = pb_grpc.PredictorStub(self.channel).StreamPredict(
            iter(self.requests.get, None)
        )
        self.opened = next(self.replies).opened

    def send(self, request: pb.StreamPredictRequest) -> pb.StreamPredictResponse:
        self.requests.put(request)
        return next(self.replies)

    def close(self) -> None:
        self.requests.put(None)
        self.channel.close()


def test_native_resume_keeps_state_and_replays_a_lost_reply_once(resumable: ServerThread) -> None:
    trial = _trial(12)
    with Client(resumable.target) as client:
        expected = client.predict(*trial, model="tiny")
    proxy = Proxy(("localhost", resumable.server.port))
    try:
        first = Raw(proxy.address, pb.StreamOpen(model="tiny"))
        assert first.opened.origin == pb.STREAM_ORIGIN_NEW
        got = [from_tensor(first.send(_frames(trial, t)).responses.responses) for t in range(5)]
        proxy.swallow_replies()  # frame 5 arrives and is answered; the reply is lost
        first.requests.put(_frames(trial, 5))
        time.sleep(0.5)
        proxy.cut()
        with pytest.raises(grpc.RpcError) as broken:
            next(first.replies)
        assert broken.value.code() == grpc.StatusCode.UNAVAILABLE
        first.close()
        second = Raw(proxy.address, pb.StreamOpen(resume_session_id=first.opened.session_id))
        assert second.opened.origin == pb.STREAM_ORIGIN_RESUMED
        assert second.opened.next_frame == 6  # the server had stepped frame 5
        again = second.send(_frames(trial, 5)).responses
        assert again.replayed
        got.append(from_tensor(again.responses))
        for t in range(6, 12):
            reply = second.send(_frames(trial, t)).responses
            assert not reply.replayed
            got.append(from_tensor(reply.responses))
        assert np.allclose(np.concatenate(got), expected, rtol=1e-4, atol=1e-5)
        changed = _frames(trial, 11)
        changed.frames.video.data = bytes(len(changed.frames.video.data))
        with pytest.raises(grpc.RpcError) as caught:
            second.send(changed)  # the same index with other inputs is not a replay
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        second.close()
    finally:
        proxy.close()


def test_a_break_during_a_step_keeps_the_step_once(resumable: ServerThread) -> None:
    """The call breaks while its frame steps (the default model's ring graph writes the
    state in place): the step is kept, and the frame sent again after the resume is its
    replay, so the stream's answers stay those of one Predict. Breaks land before,
    during and just after steps of about 2 ms."""
    trial = _trial(45, seed=8)
    with Client(resumable.target) as client:
        expected = client.predict(*trial, model="sensorium")
    stream = Raw(resumable.target, pb.StreamOpen(model="sensorium"))
    session_id, got, replayed = stream.opened.session_id, [], 0
    for t in range(45):
        if t % 3 == 2:
            stream.requests.put(_frames(trial, t))
            time.sleep((t % 5) * 0.0007)
            stream.replies.cancel()
            stream.close()
            time.sleep(0.05)
            stream = Raw(resumable.target, pb.StreamOpen(resume_session_id=session_id))
            assert stream.opened.next_frame in (t, t + 1)
        reply = stream.send(_frames(trial, t)).responses
        replayed += reply.replayed
        got.append(from_tensor(reply.responses))
    stream.close()
    assert replayed > 0  # some breaks came after the step had begun
    relative = np.abs(np.concatenate(got) - expected).max() / np.abs(expected).max()
    assert relative < 1e-4


def test_resume_refusals_name_the_reason(resumable: ServerThread, sample: Trial) -> None:
    stream = Raw(resumable.target, pb.StreamOpen(model="tiny"))
    session_id = stream.opened.session_id
    stream.replies.cancel()  # the client vanished: the session waits for a resume
    stream.close()
    time.sleep(0.3)
    assert resumable.sessions == 1
    time.sleep(2.5)  # past the 2 s resume window
    assert resumable.sessions == 0
    for session, code, needle in (
        (session_id, grpc.StatusCode.NOT_FOUND, "has ended or expired"),
        ("0123456789ab.feed", grpc.StatusCode.UNAVAILABLE, "not held by this replica"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            Raw(resumable.target, pb.StreamOpen(resume_session_id=session))
        assert caught.value.code() == code
        assert needle in caught.value.details()


def test_sdk_steps_on_through_connection_breaks(resumable: ServerThread) -> None:
    trial = _trial(40)
    proxy = Proxy(("localhost", resumable.server.port))
    try:
        with Client(proxy.address) as client:
            expected = client.predict(*trial, model="tiny")
            with client.stream(model="tiny") as session:
                got = []
                for t in range(40):
                    if t in (10, 25):
                        proxy.cut()
                    if t == 30:
                        proxy.swallow_replies()
                        threading.Timer(0.3, proxy.cut).start()
                    got.append(session.step(*(a[t] for a in trial)))
                assert session.recovery.resumes == 3
                assert session.info.origin == "resumed"
        assert np.allclose(np.concatenate(got), expected, rtol=1e-4, atol=1e-5)
    finally:
        proxy.close()


def test_sdk_reports_the_server_timing_of_each_step(resumable: ServerThread) -> None:
    """Each step's server queue and graph time, its frame, and whether it was a replay."""
    trial = _trial(12)
    proxy = Proxy(("localhost", resumable.server.port))
    try:
        with Client(proxy.address) as client, client.stream(model="tiny") as session:
            assert session.timing is None
            for t in range(12):
                if t == 8:  # the reply to frame 8 is lost: it comes again, from the replay buffer
                    proxy.swallow_replies()
                    threading.Timer(0.3, proxy.cut).start()
                session.step(*(a[t] for a in trial))
                timing = session.timing
                assert timing is not None
                assert timing.frame_index == t
                assert timing.replayed == (t == 8)
                assert timing.compute_ms > 0
                assert timing.queue_ms >= 0
            session.reset()  # a reset is not a step: the last step's timing stays
            assert session.timing is timing
    finally:
        proxy.close()

    async def steps() -> list[tuple[int, float]]:
        from sensorium_client import AsyncClient

        async with (
            AsyncClient(resumable.target) as client,
            await client.stream(model="tiny") as session,
        ):
            seen = []
            for t in range(3):
                await session.step(*(a[t] for a in trial))
                assert session.timing is not None
                seen.append((session.timing.frame_index, session.timing.compute_ms))
            return seen

    seen = asyncio.run(steps())
    assert [frame for frame, _ in seen] == [0, 1, 2]
    assert all(ms > 0 for _, ms in seen)


def test_streams_outlive_connection_age(resumable: ServerThread) -> None:
    """With a 1 s connection age, a 3 s stream and unary calls beside it all succeed."""
    trial = _trial(60)
    with Client(resumable.target) as client:
        expected = client.predict(*trial, model="tiny")
        with client.stream(model="tiny") as session:
            got = []
            for t in range(60):
                got.append(session.step(*(a[t] for a in trial)))
                if t % 10 == 0:
                    assert client.predict(*(a[:3] for a in trial), model="tiny").shape == (3, 40)
                time.sleep(0.05)
            assert session.recovery.resumes == 0
            assert session.recovery.handoffs == 0
    assert np.allclose(np.concatenate(got), expected, rtol=1e-4, atol=1e-5)


def test_a_client_that_never_reads_is_ended_and_freed(repository: Path) -> None:
    settings = local_settings(repository, versions="specific:1", idle_timeout_s=1.0)
    running = ServerThread(settings).start()
    try:
        video, behavior, pupil = _trial(20)
        big = pb.StreamPredictRequest(
            frames=pb.StreamFrames(
                video=to_tensor(video), behavior=to_tensor(behavior), pupil_center=to_tensor(pupil)
            )
        )
        requests = [pb.StreamPredictRequest(open=pb.StreamOpen(model="sensorium"))]
        requests += [big] * 400  # 400 replies of 20 x 8,000 floats that nobody reads
        with grpc.insecure_channel(running.target) as channel:
            call = pb_grpc.PredictorStub(channel).StreamPredict(iter(requests))
            deadline = time.monotonic() + 20
            while running.sessions == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert running.sessions == 1
            while running.sessions and time.monotonic() < deadline:
                time.sleep(0.1)
            assert running.sessions == 0, "a stream with unread replies was kept open"
            with pytest.raises(grpc.RpcError) as caught:
                for _ in call:
                    pass
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "replies unread for 1 s" in caught.value.details()
    finally:
        running.stop()


def test_steps_have_their_own_lane(repository: Path) -> None:
    """One clip worker and a queue of one per lane: clips in flight never refuse a step."""
    settings = local_settings(
        repository, versions="specific:1", clip_workers=1, max_queue=1, clip_chunk_frames=50
    )
    running = ServerThread(settings).start()
    try:
        trial = _trial(300)
        with (
            Client(running.target, retries=0) as client,
            client.stream(model="tiny") as session,
            concurrent.futures.ThreadPoolExecutor(3) as pool,
        ):
            clips = [pool.submit(client.predict, *trial, model="sensorium") for _ in range(3)]
            steps = 0
            while not all(c.done() for c in clips):
                session.step(*(a[steps % 300] for a in trial))
                steps += 1
            outcomes = [c.exception() for c in clips]
        assert steps > 0
        assert any(e is None for e in outcomes)  # clips ran
        assert any(e is not None and "1 clip requests" in str(e) for e in outcomes)
    finally:
        running.stop()


def test_a_closed_session_is_freed_at_once_and_cannot_resume(resumable: ServerThread) -> None:
    with Client(resumable.target) as client:
        session = client.stream(model="tiny")
        session_id = session.info.session_id
        session.close()
        assert resumable.sessions == 0
        with pytest.raises(grpc.RpcError) as caught:
            Raw(resumable.target, pb.StreamOpen(resume_session_id=session_id))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _policies() -> dict[int, int]:
    """Scheduling policy of each thread of this process (Linux)."""
    policies = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        policies[int(task.name)] = int(fields[38])  # field 41: policy
    return policies


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_clip_threads_run_at_idle_priority(repository: Path) -> None:
    """ONNX Runtime's threads for clips are SCHED_IDLE; the step threads are not."""
    import os

    before = _policies()
    settings = local_settings(repository, versions="specific:1", clip_threads=2)
    running = ServerThread(settings).start()
    try:
        new = {tid: p for tid, p in _policies().items() if tid not in before}
        idle = [tid for tid, p in new.items() if p == os.SCHED_IDLE]
        assert idle, f"no SCHED_IDLE thread among {new}"
        assert any(p == os.SCHED_OTHER for p in new.values())
        with Client(running.target) as client:  # clips still run
            assert client.predict(*_trial(120), model="sensorium").shape == (120, 8000)
    finally:
        running.stop()


class _BrokenWrites:
    """gRPC's side of a call whose connection died: reads wait, writes fail."""

    async def read(self) -> object:
        await asyncio.Event().wait()  # until cancelled

    async def write(self, message: object) -> None:
        raise RuntimeError('Failed "execute_batch"')  # what grpc.aio raises there

    def cancelled(self) -> bool:
        return False


def test_a_drain_notice_that_cannot_be_written_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The notice task ends quietly: no 'Task exception was never retrieved' at exit."""
    from types import SimpleNamespace

    from sensorium_server.streams import DRAINING, StreamCall

    async def scenario() -> None:
        plane = SimpleNamespace(settings=SimpleNamespace(idle_timeout_s=5.0))
        context = _BrokenWrites()
        call = StreamCall(plane, context)  # type: ignore[arg-type]
        call.drain(lambda: context.write("draining"))  # type: ignore[arg-type,return-value]
        reader = asyncio.create_task(call.read())
        await asyncio.sleep(0.05)  # the call waits for its next message
        call.attachment.interrupt(DRAINING)
        assert call.notice is not None
        await asyncio.wait_for(asyncio.shield(call.notice), 5)
        assert call.notice.exception() is None
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    with caplog.at_level(logging.INFO, logger="sensorium_server.streams"):
        asyncio.run(scenario())
    assert "notice was not delivered (RuntimeError)" in caplog.text
