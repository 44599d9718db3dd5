"""Manifests of versions built from a user's model (``export_model``, ``sensorium-export onnx``).

Such a version has a clip graph per mouse and, where the user has one, a step graph.
Its ``streaming`` entry tells the server how a stream runs:

- ``state``: the step graph carries state tensors from frame to frame (our models);
- ``window``: each step runs the clip graph on the last ``window_frames`` frames and
  answers frame t - ``latency_frames`` (a clip-only model whose window was checked);
- ``none``: clip only; streams are refused with a message saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sensorium_export.graphs import ExportError
from sensorium_export.properties import (
    PropertyResult,
    Runner,
    check_latency,
    check_window,
    probe_frames,
)
from sensorium_export.repository import FORMAT, INPUT_CHANNELS, file_records, io_spec

STREAMING_MODES = ("state", "window", "none")


@dataclass(frozen=True)
class Temporal:
    """What a user declared about time: causal, window and latency (checked on export)."""

    causal: bool = False
    window_frames: int = 0  # 0: no window declared
    latency_frames: int | None = None  # None: not declared (a causal model has 0)

    @classmethod
    def declared(cls, causal: bool, window: int | None, latency: int | None) -> Temporal:
        """Validate a declaration.

        Raises:
            ExportError: contradictory or impossible values.
        """
        if causal and latency not in (None, 0):
            raise ExportError(f"causal=True means latency_frames=0, got {latency}")
        if latency is not None and latency < 0:
            raise ExportError(f"latency_frames must be >= 0, got {latency}")
        if window is not None:
            if window < 1:
                raise ExportError(f"window_frames must be >= 1, got {window}")
            if not causal and latency is None:
                raise ExportError(
                    "window_frames of a model that is not causal needs latency_frames too: "
                    "how many frames after t its response at t needs (a window stream "
                    "answers frame t - latency_frames at frame t)"
                )
            if window < (latency or 0) + 1:
                raise ExportError(
                    f"window_frames={window} cannot hold a frame and the {latency} after it"
                )
        return cls(causal, window or 0, 0 if causal else latency)

    @property
    def latency(self) -> int:
        """Frames a window stream answers late (0 when causal or undeclared)."""
        return self.latency_frames or 0

    def mode(self, has_step: bool) -> str:
        """The streaming mode a version with these properties gets."""
        return "state" if has_step else "window" if self.window_frames else "none"

    def probe_frames(self) -> int:
        """Clip length the property checks use."""
        return probe_frames(self.window_frames or None, self.latency)

    def check(self, run: Runner, inputs: tuple[np.ndarray, ...]) -> list[PropertyResult]:
        """Check every declared property on ``run``; raises PropertyError on the first leak."""
        results = []
        video, behavior, pupil = inputs
        if self.causal or self.latency_frames is not None:
            results.append(check_latency(run, (video, behavior, pupil), self.latency))
        if self.window_frames:
            results.append(
                check_window(run, (video, behavior, pupil), self.window_frames, self.latency)
            )
        return results

    def manifest(self, has_step: bool) -> dict[str, Any]:
        """The manifest's ``streaming`` entry."""
        return {
            "mode": self.mode(has_step),
            "window_frames": self.window_frames,
            "latency_frames": self.latency,
        }


@dataclass(frozen=True)
class MouseEntry:
    """What the manifest records of one mouse (graphs at ``mice/<mouse>/``)."""

    neuron_ids: list[int]
    input_defaults: dict[str, list[float]] = field(default_factory=dict)
    has_step: bool = False


def custom_manifest(
    folder: Path,
    name: str,
    version: int,
    architecture: str,
    temporal: Temporal,
    frame_shape: tuple[int, int],
    burn_in_frames: int,
    mice: dict[str, MouseEntry],
    results: list[Any],
    source: dict[str, Any],
    state: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest of a version whose graphs ``folder`` already holds."""
    has_step = all(m.has_step for m in mice.values())
    if any(m.has_step for m in mice.values()) and not has_step:
        raise ExportError("either every mouse has a step graph or none has")
    h, w = frame_shape
    entries: list[dict[str, Any]] = []
    paths: list[str] = []
    for mouse, entry in mice.items():
        graphs = {"clip": f"mice/{mouse}/clip.onnx"}
        if has_step:
            graphs["step"] = f"mice/{mouse}/step.onnx"
        paths += graphs.values()
        entries.append(
            {
                "mouse": mouse,
                "neuron_count": len(entry.neuron_ids),
                "neuron_ids": [int(i) for i in entry.neuron_ids],
                "graphs": graphs,
                "input_defaults": {
                    k: [float(x) for x in v] for k, v in entry.input_defaults.items()
                },
            }
        )
    state = state or []
    shapes = [list(s["shape"]) for s in state]
    graphs_spec = {"clip": io_spec(h, w, "neurons", "time", [])}
    if has_step:
        graphs_spec["step"] = io_spec(h, w, "neurons", "frames", shapes)
    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "architecture": architecture,
        "causal": temporal.causal,
        "streaming": temporal.manifest(has_step),
        "frame": {"height": h, "width": w, "rate_hz": 30.0},
        "input_channels": INPUT_CHANNELS,
        "burn_in_frames": burn_in_frames,
        "receptive_field_frames": temporal.window_frames,
        "max_frames_per_step": 0,
        "mice": entries,
        "graphs": graphs_spec,
        "state": state,
        "state_bytes_per_stream": 4 * sum(int(np.prod(s)) for s in shapes),
        "parity": [_result(r) for r in results],
        "training": {"created": datetime.now(UTC).isoformat(timespec="seconds"), **source},
        "files": file_records(folder, paths),
    }


def _result(result: Any) -> dict[str, Any]:
    if isinstance(result, PropertyResult):
        return {"check": result.check, "inputs": "real-looking", "error": result.error}
    return {"check": result.check, "inputs": result.inputs, "error": result.error}
