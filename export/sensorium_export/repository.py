"""Write a checked model version into a model repository (``<repo>/<model>/<version>/``).

The version is built in a temporary folder beside its destination and renamed into
place only after every graph passed its checks, so a failed export leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sensorium_data import SCORED_FROM_FRAME, Session
from sensorium_data.provenance import dataset_record
from sensorium_export.graphs import (
    INPUTS,
    check_dynamic_axes,
    example_inputs,
    export_clip,
    export_step,
)
from sensorium_export.parity import ParityResult, check_parity, check_previous, check_ring
from sensorium_export.ring import NoRingError, write_ring
from sensorium_train.model import MouseModel, SensoriumModel, summarize

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "sensorium-serve model v1"
INPUT_CHANNELS = ["video", "pupil_dilation", "running_speed", "pupil_center_x", "pupil_center_y"]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def next_version(model_dir: Path) -> int:
    """One more than the highest integer version folder (1 for a new model)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def io_spec(h: int, w: int, n: str, frames: str, state: list[list[int]]) -> dict[str, Any]:
    """Inputs and outputs of a graph (frames axis named ``frames``; state tensors last)."""
    inputs: list[dict[str, Any]] = [
        {"name": "video", "dtype": "float32", "shape": ["batch", frames, h, w]},
        {"name": "behavior", "dtype": "float32", "shape": ["batch", frames, 2]},
        {"name": "pupil_center", "dtype": "float32", "shape": ["batch", frames, 2]},
    ]
    outputs: list[dict[str, Any]] = [
        {"name": "responses", "dtype": "float32", "shape": ["batch", frames, n]}
    ]
    for i, shape in enumerate(state):
        inputs.append({"name": f"state_{i}", "dtype": "float32", "shape": ["batch", *shape]})
        outputs.append({"name": f"new_state_{i}", "dtype": "float32", "shape": ["batch", *shape]})
    return {"inputs": inputs, "outputs": outputs}


def file_records(folder: Path, paths: list[str]) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of each file (relative to ``folder``), as the manifest lists them."""
    return {
        rel: {"sha256": sha256(folder / rel), "bytes": (folder / rel).stat().st_size}
        for rel in paths
    }


def _cases(
    model: SensoriumModel, mouse: str, session: Session | None
) -> dict[str, tuple[np.ndarray, ...]]:
    mouse_model = model.mouse(mouse)
    cases = {"random": tuple(t.numpy() for t in example_inputs(mouse_model, 2, 45))}
    if session is not None:
        trial = next(session.trials(("oracle", "live_test_main", "train")))
        cases[f"trial {trial.index} of {session.name}"] = (
            trial.video_frames()[None],
            trial.behavior_frames()[None],
            trial.pupil_center_frames()[None],
        )
    return cases


def write_version(
    model: SensoriumModel,
    checkpoint: dict[str, Any],
    repository: Path,
    name: str,
    sessions: dict[str, Session] | None = None,
    version: int | None = None,
    previous: Path | None = None,
    readout: str = "tiled",
) -> tuple[Path, list[ParityResult]]:
    """Export every mouse of ``model``, check it, and write the version.

    Args:
        model: The trained model (eval mode).
        checkpoint: Its checkpoint dict (training provenance goes into the manifest).
        repository: Root of the model repository.
        name: Model name (folder under the repository).
        sessions: Session per mouse, for parity on real inputs (optional).
        version: Version number; default: the next free integer.
        previous: A version folder this export replaces (a re-export): every graph
            must compute what the previous one did (``check_previous``).
        readout: Graph form of the readout, "tiled" (fast) or "grid" (grid sampling).

    Returns:
        The version folder and every parity result.
    """

    def build(staging: Path, number: int) -> tuple[dict[str, Any], list[ParityResult]]:
        return _build(model, checkpoint, staging, name, number, sessions or {}, previous, readout)

    return stage_version(repository, name, version, build)


Builder = Callable[[Path, int], tuple[dict[str, Any], list[Any]]]


def stage_version(
    repository: Path, name: str, version: int | None, build: Builder
) -> tuple[Path, list[Any]]:
    """Run ``build(folder, version)`` in a staging folder; rename it into place if it passes.

    ``build`` writes the graphs into the folder and returns the manifest and its check
    results; it raises to refuse (nothing is left behind).
    """
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_dir)
    target = model_dir / str(version)
    if target.exists():
        raise FileExistsError(f"{target} exists; versions are never overwritten")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
    try:
        manifest, results = build(staging, version)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, results


def _build(
    model: SensoriumModel,
    checkpoint: dict[str, Any],
    folder: Path,
    name: str,
    version: int,
    sessions: dict[str, Session],
    previous: Path | None = None,
    readout: str = "tiled",
) -> tuple[dict[str, Any], list[ParityResult]]:
    model.eval()
    mice, files, results = [], {}, []
    first = next(iter(model.specs))
    summary = summarize(model, first)
    state = [shape[1:] for shape in summary.state_shapes]
    for mouse, spec in model.specs.items():
        mouse_model = model.mouse(mouse)
        graph_dir = folder / "mice" / mouse
        graph_dir.mkdir(parents=True)
        clip, step = graph_dir / "clip.onnx", graph_dir / "step.onnx"
        export_clip(mouse_model, clip, readout)
        check_dynamic_axes(clip, {n: {0: "batch", 1: "time"} for n in INPUTS})
        export_step(mouse_model, step, readout)
        check_dynamic_axes(step, {n: {0: "batch", 1: "frames"} for n in INPUTS})
        cases = _cases(model, mouse, sessions.get(mouse))
        results += check_parity(mouse_model, clip, step, cases)
        if previous is not None:
            old = previous / "mice" / mouse
            zero = _zero_state(mouse_model)
            results += check_previous(
                (old / "clip.onnx", old / "step.onnx"), clip, step, cases, zero
            )
        graphs = {"clip": f"mice/{mouse}/clip.onnx", "step": f"mice/{mouse}/step.onnx"}
        try:
            write_ring(step, graph_dir / "ring.onnx")
        except NoRingError as err:  # streams then step the step graph
            logger.warning("%s: no ring graph (%s)", mouse, err)
        else:
            results += check_ring(graph_dir / "ring.onnx", step, cases)
            graphs["ring"] = f"mice/{mouse}/ring.onnx"
        mice.append(
            {
                "mouse": mouse,
                "neuron_count": spec.n_neurons,
                "neuron_ids": spec.unit_ids,
                "graphs": graphs,
                # Mean behaviour of the training data: what clients may send when a
                # recording lacks behaviour (and say so).
                "input_defaults": {
                    "behavior": spec.behavior_mean,
                    "pupil_center": spec.pupil_mean,
                },
            }
        )
        files.update(file_records(folder, list(graphs.values())))
    h, w = model.specs[first].frame_shape
    n = "neurons"
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "architecture": model.core_config.kind,
        "readout_form": readout,
        "causal": True,
        "frame": {"height": h, "width": w, "rate_hz": 30.0},
        "input_channels": INPUT_CHANNELS,
        "burn_in_frames": SCORED_FROM_FRAME,
        "receptive_field_frames": summary.receptive_field,
        "max_frames_per_step": 0,
        "parameters": summary.parameters,
        "mice": mice,
        "graphs": {
            "clip": io_spec(h, w, n, "time", []),
            "step": io_spec(h, w, n, "frames", state),
        },
        "state": [
            {
                "input": f"state_{i}",
                "output": f"new_state_{i}",
                "shape": shape,
                "dtype": "float32",
                "initial": "zeros",
            }
            for i, shape in enumerate(state)
        ],
        "state_bytes_per_stream": summary.state_bytes,
        "parity": [{"check": r.check, "inputs": r.inputs, "error": r.error} for r in results],
        "training": {
            "datasets": [dataset_record(d) for d in checkpoint.get("data", [])],
            "metrics": _flat_metrics(checkpoint.get("metrics", {}).get("oracle", {})),
            "git_revision": checkpoint.get("git_revision", "unknown"),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "trained": checkpoint.get("created", ""),
            "config": checkpoint.get("config", {}),
            **{k: checkpoint[k] for k in ("rebuilt_from",) if k in checkpoint},
        },
        "files": files,
    }
    if previous is not None:
        # Checked above: the state of a stream on the previous graphs continues here.
        old = json.loads((previous / MANIFEST).read_text())
        manifest["state_compatible_with"] = [
            sha256(previous / MANIFEST),
            *old.get("state_compatible_with", []),
        ]
    return manifest, results


def _zero_state(model: MouseModel) -> Callable[[int], list[np.ndarray]]:
    def zero(batch: int) -> list[np.ndarray]:
        return [s.numpy() for s in model.initial_state(batch)]

    return zero


def _flat_metrics(oracle: dict[str, Any]) -> dict[str, float]:
    return {
        f"oracle/{metric}/{agg}": float(value)
        for metric, values in oracle.items()
        for agg, value in values.items()
        if agg != "per_mouse"
    }
