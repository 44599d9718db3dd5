"""Unary and streaming prediction through a real server on port 0, with real ONNX models."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sensorium_client import Client
from tests.serving import ServerThread

Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_lists_served_models_and_skips_the_broken_one(server: ServerThread) -> None:
    with Client(server.target) as client:
        served = {(m.name, m.version): m for m in client.models()}
    assert set(served) == {("sensorium", 1), ("tiny", 1)}
    default = served[("sensorium", 1)]
    assert default.frame_shape == (36, 64)
    assert [m.neuron_count for m in default.mice] == [8000]
    assert len(default.manifest_sha256) == 64
    failures = server.server.plane.store.failures
    assert len(failures) == 1
    [(path, reason)] = failures.items()
    assert "broken" in path
    assert "step.onnx" in reason


def test_unary_equals_streaming_frame_by_frame_and_in_chunks(
    server: ServerThread, sample: Trial
) -> None:
    video, behavior, pupil = (a[:90] for a in sample)
    with Client(server.target) as client:
        clip = client.predict(video, behavior, pupil, model="sensorium")
        with client.stream(model="sensorium") as session:
            single = np.concatenate(
                [session.step(video[t], behavior[t], pupil[t]) for t in range(45)]
            )
            chunks = [
                session.step(video[t : t + 15], behavior[t : t + 15], pupil[t : t + 15])
                for t in range(45, 90, 15)
            ]
    assert clip.shape == (90, 8000)
    assert clip.dtype == np.float32
    assert np.all(clip > 0)
    assert _relative(np.concatenate([single, *chunks]), clip) < 1e-4


def test_reset_starts_a_new_trial(server: ServerThread, sample: Trial) -> None:
    video, behavior, pupil = (a[:10] for a in sample)
    with Client(server.target) as client, client.stream(model="tiny") as session:
        first = session.step(video, behavior, pupil)
        assert session.step(video, behavior, pupil, frame_index=10).shape == first.shape
        assert session.reset() == 2
        again = session.step(video, behavior, pupil, frame_index=0)
    np.testing.assert_array_equal(first, again)


def test_float16_responses(server: ServerThread, sample: Trial) -> None:
    video, behavior, pupil = (a[:20] for a in sample)
    with Client(server.target) as client:
        full = client.predict(video, behavior, pupil, model="sensorium")
        half = client.predict(video, behavior, pupil, model="sensorium", dtype="float16")
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), full, rtol=2e-3, atol=1e-3)


def test_concurrent_streams_do_not_mix_state(server: ServerThread, sample: Trial) -> None:
    video, behavior, pupil = (a[:30] for a in sample)
    rng = np.random.default_rng(3)
    trials = [(rng.permutation(video), behavior, pupil) for _ in range(4)]
    results: dict[int, np.ndarray] = {}

    def run(i: int, client: Client) -> None:
        v, b, p = trials[i]
        with client.stream(model="sensorium") as session:
            results[i] = np.concatenate([session.step(v[t], b[t], p[t]) for t in range(30)])

    with Client(server.target) as client:
        threads = [threading.Thread(target=run, args=(i, client)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        expected = [client.predict(*trial, model="sensorium") for trial in trials]
    for i in range(4):
        assert _relative(results[i], expected[i]) < 1e-4
    assert not np.allclose(results[0], results[1])


def test_cancel_mid_stream_frees_the_session_after_the_resume_window(
    strict_server: ServerThread, sample: Trial
) -> None:
    """A vanished client's session waits the idle timeout (0.5 s here) for a resume."""
    server = strict_server
    video, behavior, pupil = sample
    with Client(server.target) as client:
        session = client.stream(model="sensorium")
        session.step(video[0], behavior[0], pupil[0])
        assert server.sessions == 1
        session.cancel()
        time.sleep(0.2)
        assert server.sessions == 1  # detached, resumable
        deadline = time.monotonic() + 5
        while server.sessions and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.sessions == 0
        # The server keeps serving.
        assert client.predict(video[:5], behavior[:5], pupil[:5], model="tiny").shape == (5, 40)


@pytest.mark.parametrize("model", ["sensorium", "tiny"])
def test_async_client_matches_sync_client(server: ServerThread, sample: Trial, model: str) -> None:
    import asyncio

    from sensorium_client import AsyncClient

    video, behavior, pupil = (a[:12] for a in sample)

    async def run() -> tuple[np.ndarray, np.ndarray]:
        async with AsyncClient(server.target) as client:
            clip = await client.predict(video, behavior, pupil, model=model)
            async with await client.stream(model=model) as session:
                steps = [await session.step(video[t], behavior[t], pupil[t]) for t in range(12)]
            return clip, np.concatenate(steps)

    clip, stepped = asyncio.run(run())
    with Client(server.target) as client:
        np.testing.assert_array_equal(clip, client.predict(video, behavior, pupil, model=model))
    assert _relative(stepped, clip) < 1e-4


def test_dns_target_balances_round_robin(server: ServerThread, sample: Trial) -> None:
    """dns:/// targets (a headless Service) resolve every address and work as one client."""
    video, behavior, pupil = (a[:5] for a in sample)
    with Client(f"dns:///localhost:{server.server.port}") as client:
        for _ in range(4):  # calls spread over the resolved addresses
            assert client.predict(video, behavior, pupil, model="tiny").shape == (5, 40)


def test_long_clips_run_in_chunks_equal_to_the_clip_graph(
    server: ServerThread, sample: Trial
) -> None:
    """Predict of a clip longer than --clip-chunk-frames steps through the stream graph."""
    video, behavior, pupil = sample  # 254 frames, chunks of 50
    assert server.settings.clip_chunk_frames == 50
    runtime = server.server.plane.store.mouse(server.server.plane.store.get("sensorium"), "")
    feeds = {
        "video": video[None].astype(np.float32),
        "behavior": behavior[None],
        "pupil_center": pupil[None],
    }
    whole = runtime.clip.run(None, feeds)[0][0]
    with Client(server.target) as client:
        chunked = client.predict(video, behavior, pupil, model="sensorium")
    assert _relative(chunked, whole) < 1e-4


def test_stream_state_stays_bound_where_the_step_graph_runs(
    server: ServerThread, sample: Trial
) -> None:
    """The state lives as ONNX Runtime values (IOBinding), equal to plain numpy stepping.

    Streams step the ring graph (its rings written in place); the reference is the
    step graph run with numpy state in and out.
    """
    import onnxruntime as ort

    from sensorium_server.ring import RingState, RingStepper

    video, behavior, pupil = sample
    plane = server.server.plane
    runtime = plane.store.mouse(plane.store.get("sensorium"), "")
    assert isinstance(runtime.step, RingStepper)
    assert runtime.step.device == "cpu"  # "cuda" with --providers cuda on a GPU
    assert runtime.chunks is not None
    session_run = runtime.chunks.session  # the step graph
    names = [i.name for i in session_run.get_inputs()]
    state = [np.zeros((1, *spec.shape), np.float32) for spec in runtime.state]
    with Client(server.target) as client, client.stream(model="sensorium") as stream:
        for t in range(6):
            served = stream.step(video[t], behavior[t], pupil[t])
            feeds = {
                "video": video[None, t : t + 1].astype(np.float32),
                "behavior": behavior[None, t : t + 1],
                "pupil_center": pupil[None, t : t + 1],
            }
            outputs = session_run.run(None, {**feeds, **dict(zip(names[3:], state, strict=True))})
            state = outputs[1:]
            assert _relative(served, outputs[0][0]) < 1e-5
        kept = plane.sessions.find(stream.info.session_id).state
        assert isinstance(kept, RingState)
        assert all(isinstance(value, ort.OrtValue) for value in kept)
        for bound, plain in zip(runtime.step.arrays(kept), state, strict=True):
            assert np.abs(bound - plain).max() <= 1e-5 * np.abs(plain).max()


def _minor_faults() -> int:
    """Minor page faults of the calling thread so far (Linux)."""
    stat = Path(f"/proc/self/task/{threading.get_native_id()}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_new_streams_step_without_faulting_in_fresh_memory(server: ServerThread) -> None:
    """New trials' state is in memory before they step, and the step arena is grown at load.

    So the first steps of 8 new streams on the step lane's 2 threads touch almost no
    fresh pages (before: about 12,700 page faults, 50 MB, on the step threads, where
    they waited on the kernel's memory lock held by clip threads at idle priority).
    Step-graph trials share one zero state; ring-graph trials each have their own
    rings, touched when made (by the event loop, at open or reset).
    """
    from sensorium_server.ring import RingStepper
    from sensorium_server.stepping import Stepper

    plane = server.server.plane
    runtime = plane.store.mouse(plane.store.get("sensorium"), "")
    assert isinstance(runtime.chunks, Stepper)
    first, second = runtime.chunks.initial_state(), runtime.chunks.initial_state()
    assert [id(v) for v in first] == [id(v) for v in second]  # one zero state, shared
    stepper = runtime.step
    assert isinstance(stepper, RingStepper)
    first, second = stepper.initial_state(), stepper.initial_state()
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(first, second, strict=True))
    assert not any(a.flags.writeable for a in stepper.arrays(first))
    assert not any(a.any() for a in stepper.arrays(first))
    frame = {
        "video": np.full((1, 1, 36, 64), 128, np.float32),
        "behavior": np.zeros((1, 1, 2), np.float32),
        "pupil_center": np.zeros((1, 1, 2), np.float32),
    }
    faults: list[int] = []

    def four_streams() -> None:
        states = [stepper.initial_state() for _ in range(4)]
        before = _minor_faults()
        for _ in range(5):
            states = [stepper.run(frame, state)[1] for state in states]
        faults.append(_minor_faults() - before)

    threads = [threading.Thread(target=four_streams) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # About 200 usually; a fresh thread's own first pages (stack, malloc arena) have
    # reached 1,563 on a loaded CI machine. Without the warm-up: 12,965.
    assert sum(faults) < 4000, faults
    assert not any(a.any() for a in stepper.arrays(stepper.initial_state()))  # still zero
