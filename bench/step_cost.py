"""The streaming step against this CPU's compute floor, graph forms and batching.

Helpers of ``streaming_budget.py`` (``make bench-streaming``); every figure is a
median of interleaved rounds, so that drift on a shared machine hits all alike.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from sensorium_server.ring import RingStepper
from sensorium_server.stepping import StateSpec, Stepper

MATMUL_SIZE = 2048
STEP_TO_MATMUL = 120  # budget: a step costs at most 1/120 of a 1-thread 2048^3 sgemm


def matmul_1thread_ms(rounds: int = 5) -> float:
    """Median ms of one 2048^3 float32 matrix product on one thread (PyTorch's BLAS)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.rand(MATMUL_SIZE, MATMUL_SIZE)
        a @ a  # warm-up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            a @ a
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    finally:
        torch.set_num_threads(previous)


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with ``threads`` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feeds(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for item in session.get_inputs():
        shape = [batch, 1 if isinstance(item.shape[1], str) else item.shape[1], *item.shape[2:]]
        feeds[item.name] = rng.random(shape, dtype=np.float32)
    feeds["video"] *= 255
    feeds["pupil_center"] += np.array([160, 110], np.float32)
    return feeds


def _round(session: ort.InferenceSession, feeds: dict[str, np.ndarray], calls: int) -> float:
    """Median ms of ``calls`` runs after a short warm-up."""
    for _ in range(10):
        session.run(None, feeds)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def interleaved(
    graphs: dict[str, Path], rounds: int = 7, calls: int = 100, batch: int = 1
) -> dict[str, float]:
    """Median step ms (k = 1, one thread) of each graph, rounds alternating between them."""
    sessions = {label: session(path) for label, path in graphs.items()}
    feeds = {label: _feeds(s, batch) for label, s in sessions.items()}
    medians: dict[str, list[float]] = {label: [] for label in graphs}
    for _ in range(rounds):
        for label, opened in sessions.items():
            medians[label].append(_round(opened, feeds[label], calls))
    return {label: statistics.median(values) for label, values in medians.items()}


def batching_curve(step: Path, batches: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict[int, float]:
    """Per-stream ms of one step call that carries ``B`` streams (k = 1, one thread)."""
    stepper = session(step)
    feeds = {b: _feeds(stepper, b) for b in batches}
    per_stream: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(5):
        for b in batches:
            per_stream[b].append(_round(stepper, feeds[b], max(20, 200 // b)) / b)
    return {b: statistics.median(values) for b, values in per_stream.items()}


def steppers_of(version: Path) -> dict[str, Stepper]:
    """The version's step graph and ring graph as the server steps them (1 thread)."""
    manifest = json.loads((version / "manifest.json").read_text())
    specs = StateSpec.of_manifest(manifest)
    graphs = manifest["mice"][0]["graphs"]
    steppers = {"step graph": Stepper(session(version / graphs["step"]), specs)}
    if "ring" in graphs:
        steppers["ring graph"] = RingStepper(session(version / graphs["ring"]), specs)
    return steppers


def served_steps(
    versions: dict[str, Path], gap_s: float = 0.0, rounds: int = 7, calls: int = 100
) -> dict[str, float]:
    """Median ms of one stream step as the server runs it, per version and graph form.

    Keys are "<label> step graph" and "<label> ring graph". The state is fed back
    (the ring written in place); every stepper is timed in every round, in an order
    that reverses from round to round, so drift hits all alike; ``gap_s`` of idle
    before each step (0.03: a 30 Hz rig's pace, where a step finds its core's caches
    cold).
    """
    steppers = {
        f"{label} {graph}": stepper
        for label, version in versions.items()
        for graph, stepper in steppers_of(version).items()
    }
    frame_shape = next(iter(steppers.values())).session.get_inputs()[0].shape[2:]
    rng = np.random.default_rng(0)
    inputs = {
        "video": rng.uniform(0, 255, (1, 1, *frame_shape)).astype(np.float32),
        "behavior": rng.uniform(0, 10, (1, 1, 2)).astype(np.float32),
        "pupil_center": rng.normal(0, 3, (1, 1, 2)).astype(np.float32),
    }
    states = {label: s.initial_state() for label, s in steppers.items()}
    medians: dict[str, list[float]] = {label: [] for label in steppers}
    for round_ in range(rounds):
        order = list(steppers) if round_ % 2 == 0 else list(reversed(steppers))
        for label in order:
            stepper, times = steppers[label], []
            for _ in range(calls):
                if gap_s:
                    time.sleep(gap_s)
                start = time.perf_counter()
                states[label] = stepper.run(inputs, states[label])[1]
                times.append((time.perf_counter() - start) * 1e3)
            medians[label].append(statistics.median(times))
    return {label: statistics.median(values) for label, values in medians.items()}
