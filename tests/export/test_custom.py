"""export_model and `sensorium-export onnx`: declared properties are checked, not trusted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from sensorium_export import ExportError, PropertyError, export_model
from tests.conftest import run_console_script

NEURONS = 9


class Shifted(nn.Module):
    """Responses at frame t from frames t - back .. t + ahead (a banded temporal filter)."""

    def __init__(self, back: int, ahead: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.back, self.ahead = back, ahead
        self.filter = nn.Conv1d(1, 4, back + ahead + 1)
        self.readout = nn.Linear(4 + 4, NEURONS)

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil: torch.Tensor
    ) -> torch.Tensor:
        luminance = video.mean(dim=(2, 3)).unsqueeze(1) / 255.0  # (B, 1, T)
        padded = nn.functional.pad(luminance, (self.back, self.ahead))
        x = torch.tanh(self.filter(padded)).transpose(1, 2)  # (B, T, 4)
        return nn.functional.softplus(self.readout(torch.cat([x, behavior, pupil / 100], -1)))


class WholeClipNorm(nn.Module):
    """Normalises by the clip's mean: every response depends on every frame."""

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil: torch.Tensor
    ) -> torch.Tensor:
        x = video.mean(dim=(2, 3)) - video.mean(dim=(1, 2, 3)).unsqueeze(1)
        return x.unsqueeze(-1).expand(-1, -1, NEURONS) + behavior[..., :1]


def _ids() -> list[int]:
    return list(range(1, NEURONS + 1))


def test_writes_a_version_with_its_checks(tmp_path: Path) -> None:
    target, results = export_model(
        Shifted(3, 0), tmp_path, "mine", "mouse-a", _ids(), causal=True, window_frames=4
    )
    manifest = json.loads((target / "manifest.json").read_text())
    assert target == tmp_path / "mine" / "1"
    assert manifest["streaming"] == {"mode": "window", "window_frames": 4, "latency_frames": 0}
    assert manifest["causal"] is True
    assert set(manifest["graphs"]) == {"clip"}
    assert manifest["mice"][0]["neuron_ids"] == _ids()
    assert manifest["training"]["module"].endswith("Shifted")
    checks = {r["check"] for r in manifest["parity"]}
    assert "causal: no response depends on later frames" in checks
    assert "window 4: earlier frames do not matter" in checks
    assert all(r.error < 1e-4 for r in results)


def test_a_model_that_sees_the_future_declared_causal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PropertyError) as caught:
        export_model(Shifted(2, 3), tmp_path, "leaky", "m", _ids(), causal=True)
    message = str(caught.value)
    # The response at t uses frames up to t + 3: the first leak is 3 frames ahead.
    assert "declared causal, but the response at frame" in message
    response = int(message.split("response at frame ")[1].split()[0])
    leaked = int(message.split("changes when frame ")[1].split()[0])
    assert leaked == response + 3
    assert "declare latency_frames >= 3" in message
    assert not (tmp_path / "leaky" / "1").exists()


def test_latency_and_window_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(PropertyError, match="declared latency_frames=2"):
        export_model(Shifted(2, 3), tmp_path, "a", "m", _ids(), window_frames=8, latency_frames=2)
    with pytest.raises(PropertyError, match="declare window_frames >= 6"):
        export_model(Shifted(2, 3), tmp_path, "b", "m", _ids(), window_frames=5, latency_frames=3)
    target, _ = export_model(
        Shifted(2, 3), tmp_path, "c", "m", _ids(), window_frames=6, latency_frames=3
    )
    streaming = json.loads((target / "manifest.json").read_text())["streaming"]
    assert streaming == {"mode": "window", "window_frames": 6, "latency_frames": 3}
    with pytest.raises(PropertyError, match="latency_frames=29, but the response at frame 0 "):
        export_model(
            WholeClipNorm(), tmp_path, "d", "m", _ids(), window_frames=30, latency_frames=29
        )


def test_contradictions_and_wrong_outputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="needs latency_frames too"):
        export_model(Shifted(1, 0), tmp_path, "x", "m", _ids(), window_frames=4)
    with pytest.raises(ExportError, match="causal=True means latency_frames=0"):
        export_model(Shifted(1, 0), tmp_path, "x", "m", _ids(), causal=True, latency_frames=2)
    with pytest.raises(ExportError, match=r"expected \(batch, time, neurons\) = \(2, \d+, 5\)"):
        export_model(Shifted(1, 0), tmp_path, "x", "m", [1, 2, 3, 4, 5])
    assert not any((tmp_path / "x").glob("[0-9]*"))


def _neuron_ids(tmp_path: Path) -> Path:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in _ids()))
    return ids


def test_onnx_import_checks_and_writes_a_version(tmp_path: Path) -> None:
    source, _ = export_model(Shifted(2, 2), tmp_path / "src", "src", "m", _ids())
    clip = next(source.glob("mice/*/clip.onnx"))
    args = ("--clip", str(clip), "--mouse", "rig-mouse", "--neuron-ids", str(_neuron_ids(tmp_path)))
    where = ("--repository", str(tmp_path / "repo"), "--name", "imported")
    refused = run_console_script("sensorium-export", "onnx", *args, *where, "--causal")
    assert refused.returncode == 2
    assert "declared causal, but the response at frame" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = run_console_script(
        "sensorium-export", "onnx", *args, *where, "--window-frames", "5", "--latency-frames", "2"
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "repo/imported/1/manifest.json").read_text())
    assert manifest["mice"][0]["mouse"] == "rig-mouse"
    assert manifest["streaming"]["mode"] == "window"


def test_onnx_import_names_what_differs_from_the_contract(tmp_path: Path) -> None:
    source, _ = export_model(Shifted(1, 0), tmp_path / "src", "src", "m", _ids())
    model = onnx.load(str(next(source.glob("mice/*/clip.onnx"))))
    model.graph.input[1].name = "behaviour"
    for node in model.graph.node:
        node.input[:] = ["behaviour" if i == "behavior" else i for i in node.input]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    result = run_console_script(
        "sensorium-export",
        "onnx",
        "--clip",
        str(renamed),
        "--mouse",
        "m",
        "--neuron-ids",
        str(_neuron_ids(tmp_path)),
        "--repository",
        str(tmp_path / "r"),
        "--name",
        "n",
    )
    assert result.returncode == 2
    assert "inputs ['behavior'] missing" in result.stderr
    assert "['behaviour'] are not part of the contract" in result.stderr


def test_onnx_import_of_a_step_graph_checks_stepping(tiny_version: Path, tmp_path: Path) -> None:
    mouse_dir = next(tiny_version.glob("mice/*"))
    manifest = json.loads((tiny_version / "manifest.json").read_text())
    ids = tmp_path / "ids.npy"
    np.save(ids, np.array(manifest["mice"][0]["neuron_ids"]))
    common = (
        "--clip",
        str(mouse_dir / "clip.onnx"),
        "--step",
        str(mouse_dir / "step.onnx"),
        "--mouse",
        "m",
        "--neuron-ids",
        str(ids),
        "--repository",
        str(tmp_path),
        "--name",
        "s",
    )
    no_causal = run_console_script("sensorium-export", "onnx", *common)
    assert no_causal.returncode == 2
    assert "declare the model causal" in no_causal.stderr
    done = run_console_script("sensorium-export", "onnx", *common, "--causal")
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "s/1/manifest.json").read_text())
    assert written["streaming"]["mode"] == "state"
    assert [s["input"] for s in written["state"]] == [s["input"] for s in manifest["state"]]
    assert "stream k=7 vs clip" in done.stdout
