"""Per-frame cost of streaming by window vs by step graph (``make bench-window``).

The default architecture (8,000 neurons, untrained weights: the cost is the same)
is exported both ways: its step graph as ``sensorium-export`` writes it, and its
clip graph as a user's clip-only model (``export_model`` on the torch module,
``causal=True``, ``window_frames`` = its receptive field, both checked); the
DwiseNeuro-style example (not causal) streams by window with its latency. Each
stream runs in-process through the server's own steppers with the step lane's
settings (1 ONNX Runtime thread), one frame per call; rounds are interleaved so that
drift on a shared machine hits all rows alike. Printed beside the 30 Hz budget.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from dwiseneuro_style import LATENCY, WINDOW, DwiseStyle  # noqa: E402
from streaming_budget import random_model  # noqa: E402

from sensorium_export import export_model  # noqa: E402
from sensorium_export.graphs import ClipGraph, export_step  # noqa: E402
from sensorium_server.repository import read_version  # noqa: E402
from sensorium_server.stepping import StateSpec, Stepper  # noqa: E402
from sensorium_server.windowing import WindowStepper  # noqa: E402
from sensorium_train.model import summarize  # noqa: E402

NEURONS = 8000
BUDGET_MS = 1000 / 30
FRAMES_PER_ROUND = 60
ROUNDS = 5


def _session(path: Path) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _frames(count: int, shape: tuple[int, int]) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "video": rng.uniform(0, 255, (1, 1, *shape)).astype(np.float32),
            "behavior": rng.normal(10, 2, (1, 1, 2)).astype(np.float32),
            "pupil_center": rng.normal((160, 110), 3, (1, 1, 2)).astype(np.float32),
        }
        for _ in range(count)
    ]


Stream = Callable[[], list[float]]


def stream(stepper: Stepper | WindowStepper, frames: list[dict[str, np.ndarray]]) -> Stream:
    """A function that steps a full ring (warm) then times ``frames`` one by one (ms each)."""
    state = stepper.initial_state()
    for frame in frames:  # fill the window: every timed step runs a full window
        _, state = stepper.run(frame, state)

    def once() -> list[float]:
        nonlocal state
        times = []
        for frame in frames:
            start = time.perf_counter()
            _, state = stepper.run(frame, state)
            times.append((time.perf_counter() - start) * 1e3)
        return times

    return once


def export_both(scratch: Path) -> dict[str, Stepper | WindowStepper]:
    """The default model's step graph, its window export, and the DwiseNeuro example."""
    model = random_model(NEURONS)
    mouse = next(iter(model.specs))
    summary = summarize(model, mouse)
    window = summary.receptive_field
    step_path = scratch / "step.onnx"
    export_step(model.mouse(mouse), step_path)
    states = [
        StateSpec(f"state_{i}", f"new_state_{i}", tuple(s[1:]))
        for i, s in enumerate(summary.state_shapes)
    ]
    target, _ = export_model(
        ClipGraph(model.mouse(mouse)),
        scratch,
        "default-window",
        mouse,
        list(range(NEURONS)),
        causal=True,
        window_frames=window,
    )
    version = read_version(target)
    dwise, _ = export_model(
        DwiseStyle().eval(),
        scratch,
        "dwise",
        "m",
        list(range(1, 81)),
        window_frames=WINDOW,
        latency_frames=LATENCY,
    )
    shape = (36, 64)
    return {
        "default, step graph (state)": Stepper(_session(step_path), states),
        f"default, clip graph by window (W={window})": WindowStepper(
            _session(next(iter(version.mice.values())).clip),
            window,
            0,
            shape,
            NEURONS,
        ),
        f"DwiseNeuro-style example by window (W={WINDOW}, L={LATENCY})": WindowStepper(
            _session(next(dwise.glob("mice/*/clip.onnx"))), WINDOW, LATENCY, shape, 80
        ),
    }


def main() -> int:
    """Export, time interleaved rounds, print the table."""
    with tempfile.TemporaryDirectory() as scratch:
        print("exporting the default model as a clip-only model (checked) ...", flush=True)
        steppers = export_both(Path(scratch))
        frames = _frames(FRAMES_PER_ROUND, (36, 64))
        runs = {label: stream(s, frames) for label, s in steppers.items()}
        times: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(ROUNDS):
            for label, run in runs.items():
                times[label] += run()
    base = statistics.median(times["default, step graph (state)"])
    load = os.getloadavg()
    print(
        f"\nper-frame cost, 1 thread, {ROUNDS} x {FRAMES_PER_ROUND} frames interleaved; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(f"{'stream':58s} {'p50 ms':>8s} {'p99 ms':>8s} {'x state':>8s} {'of 33.3 ms':>10s}")
    for label, values in times.items():
        p50 = statistics.median(values)
        p99 = float(np.percentile(values, 99))
        share = f"{100 * p50 / BUDGET_MS:.0f} %"
        print(f"{label:58s} {p50:8.2f} {p99:8.2f} {p50 / base:8.1f} {share:>10s}")
    latency_ms = LATENCY * BUDGET_MS
    print(
        f"\nthe DwiseNeuro-style model also answers {LATENCY} frames late: "
        f"{latency_ms:.0f} ms at 30 Hz before its compute"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
