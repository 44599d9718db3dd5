"""The exporter writes a ring graph beside each step graph, or says why it cannot."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from sensorium_export.ring import HEAD, NoRingError, write_ring


def test_every_mouse_has_a_checked_ring_graph(tiny_version: Path) -> None:
    manifest = json.loads((tiny_version / "manifest.json").read_text())
    (mouse,) = manifest["mice"]
    ring = tiny_version / mouse["graphs"]["ring"]
    assert mouse["graphs"]["ring"] in manifest["files"]
    checks = {p["check"]: p["error"] for p in manifest["parity"]}
    assert checks["ring vs stream k=1"] < 1e-5
    session = ort.InferenceSession(str(ring), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    for state in manifest["state"]:
        channels, frames, height, width = state["shape"]
        suffix = state["input"].split("_", 1)[1]
        assert inputs[f"ring_{suffix}"] == [frames + 1, 1, channels, height, width]
    assert inputs[HEAD] == []
    assert inputs["video"][:2] == [1, 1]  # one frame of one stream
    # Out come the responses and each state's new frame only: no state is handed back.
    outputs = [o.name for o in onnx.load(str(ring)).graph.output]
    assert outputs == ["responses", *(f"frame_{i}" for i in range(len(manifest["state"])))]


def test_a_graph_without_state_in_that_form_has_no_ring(tiny_version: Path, tmp_path: Path) -> None:
    clip = next(tiny_version.glob("mice/*/clip.onnx"))
    with pytest.raises(NoRingError, match="no state inputs"):
        write_ring(clip, tmp_path / "ring.onnx")
    assert not (tmp_path / "ring.onnx").exists()
