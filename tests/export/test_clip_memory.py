"""The committed whole-clip graph keeps little alive at once: a 300-frame clip fits the budget.

The figure is the graph's live set, not the allocator's: the run is a process of its
own whose allocator hands every buffer of 1 MiB or more straight back to the system
(``MALLOC_MMAP_THRESHOLD_``), so its peak resident memory is what ONNX Runtime held at
once. 231 MB on 2026-12-03 (the core's features, the readout's positions and kernels,
one tap's products and two tap terms); 304 MB when ONNX Runtime ran all 16 tap terms
before adding any (``sensorium_train.tiled.TiledReadout._by_taps``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIVE_BUDGET_MB = 265

PROBE = """
import json, sys
import numpy as np
import onnxruntime as ort

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

options = ort.SessionOptions()
options.enable_cpu_mem_arena = False  # as the server opens clip graphs
options.intra_op_num_threads = 2
options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
frames = 300
feed = {
    "video": (rng.random((1, frames, 36, 64)) * 255).astype(np.float32),
    "behavior": rng.random((1, frames, 2)).astype(np.float32),
    "pupil_center": (100 + rng.random((1, frames, 2)) * 20).astype(np.float32),
}
before = peak_mb()
responses = session.run(None, feed)[0]
print(json.dumps({"before": before, "after": peak_mb(), "shape": list(responses.shape),
                  "finite": bool(np.isfinite(responses).all())}))
"""


def test_a_300_frame_whole_clip_holds_at_most_the_budget_at_once() -> None:
    clip = next((REPO / "models" / "sensorium" / "1").rglob("clip.onnx"))
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(clip)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["shape"] == [1, 300, 8000]
    assert figures["finite"]
    live = figures["after"] - figures["before"]
    assert 100 < live <= LIVE_BUDGET_MB, f"{live:.0f} MB alive at once (budget {LIVE_BUDGET_MB})"
