"""Import ONNX graphs a user already has (``sensorium-export onnx``), checked like an export.

The graphs must meet the served contract (the names are the manifest's):

- clip: inputs ``video`` (B, T, H, W), ``behavior`` (B, T, 2), ``pupil_center`` (B, T, 2),
  float32; output ``responses`` (B, T, N). Batch and time dynamic.
- step (optional): the same inputs with k frames plus ``state_<i>`` (B, ...) per state
  tensor, outputs ``responses`` and ``new_state_<i>`` of the same shapes; stepping from
  zero state must reproduce the clip graph.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sensorium_export.custom import real_looking, runner
from sensorium_export.graphs import INPUTS, ExportError
from sensorium_export.parity import (
    ParityResult,
    raise_failed,
    relative_error,
    run_clip,
    run_stream,
)
from sensorium_export.repository import stage_version
from sensorium_export.versions import MouseEntry, Temporal, custom_manifest

RANKS = {"video": 4, "behavior": 3, "pupil_center": 3}
FLOAT = "tensor(float)"


def _open(path: Path) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises several unrelated types
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({err})") from None


def _describe(args: Sequence[Any]) -> str:
    return ", ".join(f"{a.name} {a.type} {a.shape}" for a in args)


def check_contract(
    session: ort.InferenceSession, path: Path, neurons: int, frame_shape: tuple[int, int] | None
) -> tuple[tuple[int, int], list[str]]:
    """The frame shape and state inputs of a graph; ExportError naming every difference."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    faults = []
    missing = [n for n in INPUTS if n not in inputs]
    if missing:
        faults.append(f"inputs {missing} missing")
    state = sorted(n for n in inputs if n.startswith("state_"))
    extra = sorted(set(inputs) - set(INPUTS) - set(state))
    if extra:
        faults.append(f"inputs {extra} are not part of the contract")
    for name in (n for n in INPUTS if n in inputs):
        arg = inputs[name]
        if arg.type != FLOAT:
            faults.append(f"input {name} is {arg.type}, expected tensor(float)")
        if len(arg.shape) != RANKS[name]:
            faults.append(f"input {name} has rank {len(arg.shape)}, expected {RANKS[name]}")
        elif name != "video" and arg.shape[2] not in (2, None) and isinstance(arg.shape[2], int):
            faults.append(f"input {name} has {arg.shape[2]} values per frame, expected 2")
    frame = frame_shape or (36, 64)
    video = inputs.get("video")
    if video is not None and len(video.shape) == 4:
        fixed = [d for d in video.shape[2:] if isinstance(d, int)]
        if len(fixed) == 2:
            if frame_shape is not None and tuple(fixed) != frame_shape:
                faults.append(f"video frames are {tuple(fixed)}, --frame-shape says {frame_shape}")
            frame = (fixed[0], fixed[1])
    wanted = ["responses", *(f"new_{n}" for n in state)]
    if sorted(outputs) != sorted(wanted):
        faults.append(f"outputs {sorted(outputs)}, expected {wanted}")
    elif len(outputs["responses"].shape) != 3:
        faults.append(f"output responses has rank {len(outputs['responses'].shape)}, expected 3")
    elif (
        isinstance(outputs["responses"].shape[2], int) and outputs["responses"].shape[2] != neurons
    ):
        faults.append(
            f"output responses has {outputs['responses'].shape[2]} neurons, "
            f"{neurons} neuron ids were given"
        )
    for name in state:
        dims = inputs[name].shape[1:]
        if not all(isinstance(d, int) for d in dims):
            faults.append(f"state input {name} has shape {inputs[name].shape}; only batch may vary")
        out = outputs.get(f"new_{name}")
        if out is not None and out.shape[1:] != dims:
            faults.append(f"new_{name} has shape {out.shape}, its state input {inputs[name].shape}")
    if faults:
        raise ExportError(
            f"{path}: does not meet the served contract: "
            + "; ".join(faults)
            + f". The graph has inputs [{_describe(session.get_inputs())}] and outputs "
            f"[{_describe(session.get_outputs())}]"
        )
    return frame, state


def _check_step(
    step: ort.InferenceSession,
    clip: ort.InferenceSession,
    inputs: tuple[np.ndarray, ...],
    state_names: list[str],
) -> list[ParityResult]:
    specs = {i.name: i.shape for i in step.get_inputs()}
    whole = run_clip(clip, inputs)
    results = []
    for k in (1, 7):
        zero = [np.zeros((1, *specs[n][1:]), np.float32) for n in state_names]
        streamed = run_stream(step, inputs, zero, k)
        results.append(
            ParityResult(f"stream k={k} vs clip", "real-looking", relative_error(streamed, whole))
        )
    raise_failed(
        results, "the step graph, stepped from zero state, does not reproduce the clip graph"
    )
    return results


def import_onnx(
    clip: Path,
    repository: Path,
    name: str,
    mouse: str,
    neuron_ids: Sequence[int],
    *,
    step: Path | None = None,
    causal: bool = False,
    window_frames: int | None = None,
    latency_frames: int | None = None,
    input_defaults: Mapping[str, Sequence[float]] | None = None,
    frame_shape: tuple[int, int] | None = None,
    version: int | None = None,
    architecture: str = "imported",
    burn_in_frames: int = 50,
) -> tuple[Path, list[Any]]:
    """Check ``clip`` (and ``step``) against the contract and the declarations; write a version.

    Raises:
        ExportError: naming what differs from the contract, or the frame that leaked.
    """
    temporal = Temporal.declared(causal, window_frames, latency_frames)
    if step is not None and not causal:
        raise ExportError(
            "a step graph answers each frame as it arrives: declare the model causal "
            "(--causal; checked)"
        )
    neurons = len(neuron_ids)
    session = _open(clip)
    frame, state_in_clip = check_contract(session, clip, neurons, frame_shape)
    if state_in_clip:
        raise ExportError(f"{clip}: a clip graph takes no state inputs, it has {state_in_clip}")
    defaults = {k: list(v) for k, v in (input_defaults or {}).items()}
    frames = temporal.probe_frames()
    probe = real_looking(frame, defaults, 1, frames, seed=3)
    out = run_clip(session, probe)
    if out.shape != (1, frames, neurons):
        raise ExportError(
            f"{clip}: responses of shape {out.shape} for 1 x {frames} frames; expected "
            f"(1, {frames}, {neurons})"
        )
    if not np.isfinite(out).all():
        raise ExportError(f"{clip}: NaN or infinite responses on real-looking inputs")
    results: list[Any] = temporal.check(runner(session), probe)
    state: list[dict[str, Any]] = []
    if step is not None:
        step_session = _open(step)
        _, names = check_contract(step_session, step, neurons, frame)
        results += _check_step(step_session, session, probe, names)
        shapes = {i.name: i.shape[1:] for i in step_session.get_inputs()}
        state = [
            {
                "input": n,
                "output": f"new_{n}",
                "shape": list(shapes[n]),
                "dtype": "float32",
                "initial": "zeros",
            }
            for n in names
        ]

    def build(folder: Path, number: int) -> tuple[dict[str, Any], list[Any]]:
        target = folder / "mice" / mouse
        target.mkdir(parents=True)
        shutil.copyfile(clip, target / "clip.onnx")
        if step is not None:
            shutil.copyfile(step, target / "step.onnx")
        entries = {mouse: MouseEntry(list(neuron_ids), defaults, step is not None)}
        source = {"source": "sensorium-export onnx", "clip": clip.name}
        manifest = custom_manifest(
            folder,
            name,
            number,
            architecture,
            temporal,
            frame,
            burn_in_frames,
            entries,
            results,
            source,
            state,
        )
        return manifest, results

    return stage_version(repository, name, version, build)
