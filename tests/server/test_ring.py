"""Streams stepped with a ring graph: the step graph's answers and state, in place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sensorium_client import Client
from sensorium_server.ring import RingState, RingStepper
from sensorium_server.stepping import StateSpec, Stepper
from tests.serving import DEFAULT_MODEL, ServerThread, local_settings


def _steppers(version: Path) -> tuple[Stepper, RingStepper]:
    manifest = json.loads((version / "manifest.json").read_text())
    specs = StateSpec.of_manifest(manifest)
    graphs = manifest["mice"][0]["graphs"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1

    def session(kind: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(version / graphs[kind]), options, ["CPUExecutionProvider"])

    return Stepper(session("step"), specs), RingStepper(session("ring"), specs)


def _frames(count: int, shape: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "video": rng.uniform(0, 255, (1, count, *shape)).astype(np.float32),
        "behavior": rng.uniform(0, 10, (1, count, 2)).astype(np.float32),
        "pupil_center": rng.normal(0, 3, (1, count, 2)).astype(np.float32),
    }


def _part(frames: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {name: array[:, start:stop] for name, array in frames.items()}


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_ring_steps_answer_and_hold_what_the_step_graph_does(tiny_version: Path) -> None:
    step, ring = _steppers(tiny_version)
    frames = _frames(45, (36, 64))
    state, rings = step.initial_state(), ring.initial_state()
    assert isinstance(rings, RingState)
    expected, got = [], []
    # One frame at a time past the rings' length (17 slots), then a 3-frame message.
    for t in range(40):
        responses, state = step.run(_part(frames, t, t + 1), state)
        expected.append(responses)
        answered, after = ring.run(_part(frames, t, t + 1), rings)
        assert after is rings  # written in place
        got.append(answered)
    responses, state = step.run(_part(frames, 40, 43), state)
    answered, _ = ring.run(_part(frames, 40, 43), rings)
    assert answered.shape == responses.shape == (1, 3, 40)
    together = np.concatenate([*got, answered], 1)
    assert _relative(together, np.concatenate([*expected, responses], 1)) < 1e-5
    # The ring read in order is the step graph's state: a snapshot of either continues on the other.
    for mine, theirs in zip(ring.arrays(rings), step.arrays(state), strict=True):
        assert mine.shape == theirs.shape
        assert not mine.flags.writeable
        assert np.abs(mine - theirs).max() <= 1e-5 * np.abs(theirs).max()
    moved_to_ring = ring.adopt(step.arrays(state))
    moved_to_step = step.adopt([np.array(a) for a in ring.arrays(rings)])
    last = _part(frames, 43, 45)
    reference = step.run(last, state)[0]
    assert _relative(ring.run(last, moved_to_ring)[0], reference) < 1e-5
    assert _relative(step.run(last, moved_to_step)[0], reference) < 1e-5


def test_a_ring_stepper_refuses_what_it_cannot_step(tiny_version: Path) -> None:
    step, ring = _steppers(tiny_version)
    with pytest.raises(ValueError, match="batch 1"):
        ring.initial_state(2)
    with pytest.raises(TypeError, match="the state it made"):
        ring.run(_part(_frames(1, (36, 64)), 0, 1), step.initial_state())
    with pytest.raises(ValueError, match="not a ring of"):
        RingStepper(step.session, step.specs)  # the step graph has no rings


def test_snapshots_move_between_ring_and_step_graph_servers(repository: Path) -> None:
    ring = ServerThread(local_settings(repository, versions="all")).start()
    plain = ServerThread(local_settings(repository, versions="all", ring=False)).start()
    try:
        rng = np.random.default_rng(4)
        video = rng.integers(0, 256, (60, 36, 64), dtype=np.uint8)
        behavior = rng.uniform(0, 10, (60, 2)).astype(np.float32)
        pupil = rng.normal(0, 3, (60, 2)).astype(np.float32)
        with Client(ring.target) as a, Client(plain.target) as b:
            expected = a.predict(video, behavior, pupil, model="tiny")
            parts = []
            with a.stream(model="tiny") as first:
                parts += [first.step(video[t], behavior[t], pupil[t]) for t in range(20)]
                snapshot = first.snapshot()
            with b.stream(snapshot=snapshot) as second:  # ring -> step graph
                parts.append(second.step(video[20:40], behavior[20:40], pupil[20:40]))
                snapshot = second.snapshot()
            with a.stream(snapshot=snapshot) as third:  # step graph -> ring
                assert third.info.next_frame == 40
                parts += [third.step(video[t], behavior[t], pupil[t]) for t in range(40, 60)]
        assert _relative(np.concatenate(parts), expected) <= 1e-4
    finally:
        ring.stop()
        plain.stop()


def test_the_committed_model_streams_with_its_ring_graph() -> None:
    manifest = json.loads((DEFAULT_MODEL / "manifest.json").read_text())
    (mouse,) = manifest["mice"]
    assert mouse["graphs"]["ring"] in manifest["files"]
    assert any(p["check"] == "ring vs stream k=1" and p["error"] < 1e-5 for p in manifest["parity"])
