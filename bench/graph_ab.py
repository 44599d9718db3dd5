"""Is step graph B faster than step graph A? Interleaved, with A/A and B/B controls.

    python bench/graph_ab.py OLD/step.onnx NEW/step.onnx      # make bench-ab A=... B=...

This machine's speed swings by 2x within minutes, and two sessions of one graph can
differ by several per cent (memory placement), so a graph change is judged here: two
sessions of each graph (A1, B1, B2, A2, opened in that order), each round steps every
session ``--steps`` times with its state fed back (k = 1, one thread), in an order
rotated and reversed from round to round; each round gives B/A (the mean of B1 and
B2 over that of A1 and A2) and the controls A2/A1 and B2/B1. The medians over the
rounds are printed: a B/A further from 1 than the controls are is a difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from step_cost import _feeds, session


def _steps(opened: ort.InferenceSession, feeds: dict[str, np.ndarray], steps: int) -> float:
    """Median ms of ``steps`` steps of one stream, each step's state fed to the next."""
    names = [o.name for o in opened.get_outputs()]
    state, times = dict(feeds), []
    for _ in range(steps):
        start = time.perf_counter()
        outputs = opened.run(None, state)
        times.append((time.perf_counter() - start) * 1e3)
        for name, value in zip(names, outputs, strict=True):
            if name.startswith("new_"):
                state[name[len("new_") :]] = value
    return statistics.median(times)


def compare(a: Path, b: Path, rounds: int, steps: int) -> dict[str, list[float]]:
    """Per round: B/A, A2/A1, B2/B1, and A's and B's step ms."""
    sessions = {"A1": session(a), "B1": session(b), "B2": session(b), "A2": session(a)}
    feeds = _feeds(sessions["A1"], 1)
    for opened in sessions.values():
        _steps(opened, feeds, 50)  # warm-up
    labels = list(sessions)
    out: dict[str, list[float]] = {k: [] for k in ("B/A", "A2/A1", "B2/B1", "A", "B")}
    for r in range(rounds):
        order = labels[r % 4 :] + labels[: r % 4]
        if r % 2:
            order.reverse()
        ms = {label: _steps(sessions[label], feeds, steps) for label in order}
        a_ms, b_ms = (ms["A1"] + ms["A2"]) / 2, (ms["B1"] + ms["B2"]) / 2
        out["B/A"].append(b_ms / a_ms)
        out["A2/A1"].append(ms["A2"] / ms["A1"])
        out["B2/B1"].append(ms["B2"] / ms["B1"])
        out["A"].append(a_ms)
        out["B"].append(b_ms)
    return out


def main() -> int:
    """Print the medians (and B/A's quartiles) over the rounds."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("a", type=Path, help="the step graph to compare against (before)")
    parser.add_argument("b", type=Path, help="the step graph under test (after)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300, help="steps per session per round")
    args = parser.parse_args()
    for path in (args.a, args.b):
        if not path.is_file():
            parser.error(f"{path}: no such file")
    load = os.getloadavg()[0]
    out = compare(args.a, args.b, args.rounds, args.steps)
    q1, q3 = np.percentile(out["B/A"], [25, 75])
    print(f"{args.rounds} rounds of {args.steps} steps per session (load {load:.2f} before)")
    a_ms, b_ms = statistics.median(out["A"]), statistics.median(out["B"])
    print(f"step A p50 {a_ms:.3f} ms, B {b_ms:.3f} ms")
    print(f"B/A   {statistics.median(out['B/A']):.3f}  (quartiles {q1:.3f} to {q3:.3f})")
    print(
        f"controls: A2/A1 {statistics.median(out['A2/A1']):.3f}, "
        f"B2/B1 {statistics.median(out['B2/B1']):.3f}  (load {os.getloadavg()[0]:.2f} after)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
