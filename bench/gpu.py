"""GPU figures of the streaming step (issue 15), on the embedded default model.

    bench/gpu.sh                          # installs the gpu extra, then runs this
    python bench/gpu.py --providers cpu   # the same figures on the CPU (a dry run)

Side by side in one run: the step at batch 1 in-process, with the state bound on the
device as the server runs it (IOBinding: only frames in and responses out) and with
host numpy state (copied in and out every step); how many 30 Hz streams one server
carries at p99 <= 10 ms; whole-clip ``Predict`` throughput. Needs no torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from served import ROOT, ServerProcess, ramp, trial

from sensorium_client import Client
from sensorium_server.ring import RingStepper
from sensorium_server.stepping import StateSpec, Stepper

STREAM_P99_MS = 10.0


def providers(kind: str) -> list[str]:
    """ONNX Runtime providers for ``kind`` ("cuda" or "cpu")."""
    if kind == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            sys.exit(f"no CUDA provider in this ONNX Runtime: {ort.get_available_providers()}")
        getattr(ort, "preload_dlls", lambda: None)()
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def in_process(version: Path, kind: str, steps: int) -> dict[str, float]:
    """Step p50/p99 (ms), interleaved: ring graph, step graph bound, step graph on host.

    Ring: the state written in place on the device; bound: the step graph's state
    kept on the device; host: numpy state in and out.
    """
    manifest = json.loads((version / "manifest.json").read_text())
    step_path = version / manifest["mice"][0]["graphs"]["step"]
    specs = StateSpec.of_manifest(manifest)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the server runs steps (--intra-op-threads)
    session = ort.InferenceSession(str(step_path), options, providers=providers(kind))
    stepper = Stepper(session, specs)
    graphs = manifest["mice"][0]["graphs"]
    ring = None
    if "ring" in graphs:
        opened = ort.InferenceSession(
            str(version / graphs["ring"]), options, providers=providers(kind)
        )
        ring = RingStepper(opened, specs)
    video, behavior, pupil = trial(300)
    frames = [
        {
            "video": video[None, t : t + 1].astype(np.float32),
            "behavior": behavior[None, t : t + 1],
            "pupil_center": pupil[None, t : t + 1],
        }
        for t in range(300)
    ]
    bound, host = stepper.initial_state(), [np.zeros((1, *s.shape), np.float32) for s in specs]
    names = [s.input for s in specs]
    times: dict[str, list[float]] = {"bound": [], "host": [], **({"ring": []} if ring else {})}
    rings = ring.initial_state() if ring else None
    for i in range(steps + 50):
        feeds = frames[i % 300]
        if ring is not None and rings is not None:
            start = time.perf_counter()
            ring.run(feeds, rings)
            if i >= 50:
                times["ring"].append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        _, bound = stepper.run(feeds, bound)
        middle = time.perf_counter()
        outputs = session.run(None, {**feeds, **dict(zip(names, host, strict=True))})
        host = outputs[1:]
        if i >= 50:
            times["bound"].append((middle - start) * 1e3)
            times["host"].append((time.perf_counter() - middle) * 1e3)
    return {
        f"{label} {q}": float(np.percentile(ms, 50 if q == "p50" else 99))
        for label, ms in times.items()
        for q in ("p50", "p99")
    }


def main() -> int:
    """Run everything and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--providers", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--ramp-duration", type=float, default=10.0)
    args = parser.parse_args()
    version = ROOT / "models" / "sensorium" / "1"
    print(f"ONNX Runtime {ort.__version__}, providers {ort.get_available_providers()}")
    steps = in_process(version, args.providers, args.steps)
    rows = [(f"in-process step, batch 1, state {k} (ms)", v) for k, v in steps.items()]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "sensorium").mkdir()
        (repo / "sensorium" / "1").symlink_to(version, target_is_directory=True)
        server = ServerProcess(repo, repo / "server.log", "--providers", args.providers)
        target = f"localhost:{server.port}"
        try:
            counts = (8, 16, 32, 64, 128, 256)
            largest = ramp(target, server, counts, STREAM_P99_MS, args.ramp_duration)
            rows.append(
                (f"largest number of 30 Hz streams at p99 <= {STREAM_P99_MS:g} ms", largest)
            )
            video, behavior, pupil = trial(300)
            with Client(target) as client:
                client.predict(video, behavior, pupil, model="sensorium")  # warm-up
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    client.predict(video, behavior, pupil, model="sensorium")
                    times.append(time.perf_counter() - start)
            rows.append(
                ("whole-clip Predict, 300 frames (frames/s)", 300 / statistics.median(times))
            )
        finally:
            server.stop()
    print(f"\n{'figure (' + args.providers + ')':62s} {'measured':>10s}")
    for label, value in rows:
        print(f"{label:62s} {value:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
