"""Export writes checked ONNX graphs, with dynamic axes, and refuses a broken model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sensorium_export.graphs import ExportError
from sensorium_export.parity import run_clip, run_stream
from sensorium_export.repository import write_version
from sensorium_train.model import MouseModel, SensoriumModel
from sensorium_train.train import load_checkpoint


def test_version_layout_and_manifest(tiny_version: Path, tiny_mouse: Path) -> None:
    manifest = json.loads((tiny_version / "manifest.json").read_text())
    assert tiny_version.name == "1"
    assert manifest["version"] == 1
    (mouse,) = manifest["mice"]
    assert mouse["mouse"] == tiny_mouse.name
    assert mouse["neuron_count"] == 40
    assert len(manifest["state"]) == 3
    assert manifest["receptive_field_frames"] == 29
    assert manifest["state_bytes_per_stream"] <= 2 * 1024 * 1024
    checks = {(p["check"], p["inputs"].split()[0]) for p in manifest["parity"]}
    assert ("stream k=1 vs clip", "trial") in checks
    assert ("torch vs onnx (clip)", "random") in checks
    assert all(p["error"] < 1e-4 for p in manifest["parity"])
    assert set(manifest["files"]) == set(mouse["graphs"].values())
    assert not list(tiny_version.rglob("*.data"))  # weights are embedded


def test_graphs_run_with_other_batch_and_time(tiny_version: Path) -> None:
    clip = next(tiny_version.rglob("clip.onnx"))
    step = next(tiny_version.rglob("step.onnx"))
    manifest = json.loads((tiny_version / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    inputs = (
        rng.uniform(0, 255, (3, 17, 36, 64)).astype(np.float32),
        rng.uniform(0, 5, (3, 17, 2)).astype(np.float32),
        rng.normal(160, 3, (3, 17, 2)).astype(np.float32),
    )
    whole = run_clip(ort.InferenceSession(str(clip)), inputs)
    assert whole.shape == (3, 17, 40)
    state = [np.zeros((3, *s["shape"]), np.float32) for s in manifest["state"]]
    streamed = run_stream(ort.InferenceSession(str(step)), inputs, state, k=5)
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-5)


class _DriftingMouse(MouseModel):
    """A deliberately broken model: its step path disagrees with its clip path."""

    def step(self, video, behavior, pupil_center, state):  # type: ignore[no-untyped-def]
        responses, state = super().step(video, behavior, pupil_center, state)
        return responses * 1.01, state


class _BrokenModel(SensoriumModel):
    def mouse(self, name: str, normalized: bool = False) -> MouseModel:
        return _DriftingMouse(self.core, self.heads[name], normalized)  # type: ignore[arg-type]


def test_refuses_to_write_a_version_that_fails_parity(
    tiny_checkpoint: Path, tiny_mouse: Path, tmp_path: Path
) -> None:
    model, checkpoint = load_checkpoint(tiny_checkpoint)
    broken = _BrokenModel(model.core_config, list(model.specs.values()))
    broken.load_state_dict(model.state_dict())
    broken.eval()
    with pytest.raises(ExportError, match=r"parity failed: .*stream k=1 vs clip"):
        write_version(broken, checkpoint, tmp_path, "broken", {})
    assert not [p for p in (tmp_path / "broken").iterdir()]  # nothing left behind


def test_versions_increment(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model, checkpoint = load_checkpoint(tiny_checkpoint)
    first, _ = write_version(model, checkpoint, tmp_path, "m", {})
    second, _ = write_version(model, checkpoint, tmp_path, "m", {})
    assert (first.name, second.name) == ("1", "2")
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_version(model, checkpoint, tmp_path, "m", {}, version=2)
