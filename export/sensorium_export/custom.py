"""Bring your own model: export any PyTorch module of one mouse into a model repository.

The contract of a served clip graph (and so of the module) is the one our own models
meet: ``module(video, behavior, pupil_center)`` maps raw inputs, video (B, T, H, W)
in 0..255, behaviour (B, T, 2) and pupil centre (B, T, 2), to responses (B, T, N) of
one mouse. Everything a model needs beyond that (its normalisation, channel
stacking, padding, a data key of a multi-mouse model) lives inside the module.

:func:`export_model` traces the clip graph with dynamic batch and time axes, runs it
in ONNX Runtime against the module on real-looking inputs, checks every declared
temporal property on the exported graph (:mod:`sensorium_export.properties`), and
writes a version the server loads like ours. Nothing is written unless all passed.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from sensorium_export.graphs import INPUTS, ExportError, check_dynamic_axes
from sensorium_export.parity import ParityResult, raise_failed, relative_error
from sensorium_export.repository import stage_version
from sensorium_export.rewrite import rewrite
from sensorium_export.versions import MouseEntry, Temporal, custom_manifest

# Typical Sensorium 2023 inputs (pupil dilation, running speed; pupil centre in
# pixels): what the checks feed when a mouse gives no input defaults of its own.
TYPICAL_BEHAVIOR = (20.0, 5.0)
TYPICAL_PUPIL_CENTER = (160.0, 110.0)
CHECK_BATCH = 2


@dataclass(frozen=True)
class MouseModule:
    """One mouse of a version: its module, neuron ids and (optional) input defaults.

    ``input_defaults`` holds the training data's mean ``behavior`` and ``pupil_center``
    (two values each): what clients without a behaviour recording may send.
    """

    module: nn.Module
    neuron_ids: Sequence[int]
    input_defaults: Mapping[str, Sequence[float]] = field(default_factory=dict)
    example: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # a real trial, (T, ...)


class _Clip(nn.Module):
    """The user's module under the graph's input names."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> torch.Tensor:
        return self.module(video, behavior, pupil_center)


def real_looking(
    frame_shape: tuple[int, int],
    defaults: Mapping[str, Sequence[float]],
    batch: int,
    frames: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth random video in 0..255 and behaviour wandering around its defaults."""
    rng = np.random.default_rng(seed)
    h, w = frame_shape
    coarse = rng.uniform(0, 255, (batch, frames, max(h // 4, 1), max(w // 4, 1)))
    video = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)[:, :, :h, :w]
    video = np.pad(video, ((0, 0), (0, 0), (0, h - video.shape[2]), (0, w - video.shape[3])))
    behavior = np.asarray(defaults.get("behavior", TYPICAL_BEHAVIOR), np.float64)
    pupil = np.asarray(defaults.get("pupil_center", TYPICAL_PUPIL_CENTER), np.float64)
    walk = np.cumsum(rng.normal(0, 0.3, (2, batch, frames, 2)), axis=2)
    return (
        video.astype(np.float32),
        (behavior + walk[0] * np.maximum(np.abs(behavior), 1) * 0.1).astype(np.float32),
        (pupil + walk[1] * 2).astype(np.float32),
    )


def _export_clip(module: nn.Module, path: Path, args: tuple[torch.Tensor, ...]) -> str:
    """Trace ``module`` to ``path``; returns the exporter that succeeded."""
    wrapped = _Clip(module).eval()
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    shapes = tuple({0: batch, 1: time} for _ in INPUTS)
    errors = []
    for dynamo in (True, False):
        try:
            with (
                torch.no_grad(),
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                options: dict[str, Any] = (
                    {"dynamic_shapes": shapes, "optimize": True}
                    if dynamo
                    else {"dynamic_axes": {n: {0: "batch", 1: "time"} for n in INPUTS}}
                    | {"opset_version": 18}
                )
                torch.onnx.export(
                    wrapped,
                    args,
                    str(path),
                    dynamo=dynamo,
                    input_names=list(INPUTS),
                    output_names=["responses"],
                    external_data=False,
                    **options,
                )
            rewrite(path)
            return "torch.export" if dynamo else "torchscript"
        except Exception as err:  # exporters raise many unrelated types
            cause = err.__cause__ or err  # torch.export wraps the reason
            reason = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else repr(cause)
            errors.append(f"{'torch.export' if dynamo else 'torchscript'}: {reason}")
    raise ExportError("the module could not be exported to ONNX; " + " | ".join(errors))


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def runner(session: ort.InferenceSession) -> Any:
    """A clip graph session as a function of (video, behavior, pupil_center) arrays."""

    def run(video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        feed = {"video": video, "behavior": behavior, "pupil_center": pupil_center}
        return np.asarray(session.run(["responses"], feed)[0])

    return run


def check_module(
    module: nn.Module,
    clip: Path,
    cases: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    neurons: int,
) -> list[ParityResult]:
    """ONNX Runtime against the module on every case, and the output shape (B, T, N).

    Raises:
        ExportError: a wrong output shape, or an error over the parity tolerance.
    """
    run = runner(_session(clip))
    results = []
    for label, inputs in cases.items():
        with torch.no_grad():
            reference = module(*(torch.from_numpy(a) for a in inputs))
        if not isinstance(reference, torch.Tensor):
            raise ExportError(f"the module returned {type(reference).__name__}, not a tensor")
        expected = (*inputs[0].shape[:2], neurons)
        if tuple(reference.shape) != expected:
            raise ExportError(
                f"the module returned responses of shape {tuple(reference.shape)} for "
                f"{label}; expected (batch, time, neurons) = {expected} "
                f"({neurons} neuron ids given)"
            )
        error = relative_error(run(*inputs), reference.numpy())
        results.append(ParityResult("torch vs onnx (clip)", label, error))
    raise_failed(results, "ONNX Runtime does not reproduce the module")
    return results


def _export_mouse(
    entry: MouseModule,
    clip: Path,
    temporal: Temporal,
    frame_shape: tuple[int, int],
    exporters: set[str],
) -> list[Any]:
    """Export one mouse's module to ``clip`` and run every check on the graph."""
    module = entry.module.eval()
    defaults = dict(entry.input_defaults)
    trace = real_looking(frame_shape, defaults, CHECK_BATCH, 24, seed=1)
    exporters.add(_export_clip(module, clip, tuple(torch.from_numpy(a) for a in trace)))
    check_dynamic_axes(clip, {n: {0: "batch", 1: "time"} for n in INPUTS})
    frames = temporal.probe_frames()
    cases = {
        f"real-looking, {CHECK_BATCH} x {frames} frames": real_looking(
            frame_shape, defaults, CHECK_BATCH, frames
        ),
        "real-looking, 1 x 7 frames": real_looking(frame_shape, defaults, 1, 7, seed=2),
    }
    if entry.example is not None:
        video, behavior, pupil = (np.asarray(a, np.float32)[None] for a in entry.example)
        cases["the example trial"] = (video, behavior, pupil)
    results: list[Any] = check_module(module, clip, cases, len(entry.neuron_ids))
    probe = real_looking(frame_shape, defaults, 1, frames, seed=3)
    return results + temporal.check(runner(_session(clip)), probe)


def export_mice(
    mice: Mapping[str, MouseModule],
    repository: str | Path,
    name: str,
    *,
    causal: bool = False,
    window_frames: int | None = None,
    latency_frames: int | None = None,
    frame_shape: tuple[int, int] = (36, 64),
    version: int | None = None,
    architecture: str | None = None,
    burn_in_frames: int = 50,
) -> tuple[Path, list[Any]]:
    """:func:`export_model` for several mice in one version (one module per mouse)."""
    temporal = Temporal.declared(causal, window_frames, latency_frames)
    first = next(iter(mice.values())).module
    kind = architecture or type(first).__name__

    def build(folder: Path, number: int) -> tuple[dict[str, Any], list[Any]]:
        entries: dict[str, MouseEntry] = {}
        results: list[Any] = []
        exporters: set[str] = set()
        for mouse, entry in mice.items():
            clip = folder / "mice" / mouse / "clip.onnx"
            clip.parent.mkdir(parents=True)
            results += _export_mouse(entry, clip, temporal, frame_shape, exporters)
            entries[mouse] = MouseEntry(
                list(entry.neuron_ids),
                {k: list(v) for k, v in entry.input_defaults.items()},
            )
        source = {
            "source": "export_model",
            "module": f"{type(first).__module__}.{type(first).__qualname__}",
            "exporter": sorted(exporters),
        }
        manifest = custom_manifest(
            folder,
            name,
            number,
            kind,
            temporal,
            frame_shape,
            burn_in_frames,
            entries,
            results,
            source,
        )
        manifest["parameters"] = sum(p.numel() for p in first.parameters())
        return manifest, results

    return stage_version(Path(repository), name, version, build)


def export_model(
    module: nn.Module,
    repository: str | Path,
    name: str,
    mouse: str,
    neuron_ids: Sequence[int],
    *,
    causal: bool = False,
    window_frames: int | None = None,
    latency_frames: int | None = None,
    input_defaults: Mapping[str, Sequence[float]] | None = None,
    frame_shape: tuple[int, int] = (36, 64),
    version: int | None = None,
    architecture: str | None = None,
    burn_in_frames: int = 50,
    example: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[Path, list[Any]]:
    """Export ``module`` (one mouse) into ``repository/name/version``, checked; see the module doc.

    Args:
        module: ``module(video, behavior, pupil_center)`` -> responses (B, T, N), raw
            inputs as the server receives them (video 0..255).
        repository: Root of the model repository.
        name: Model name (a folder of the repository).
        mouse: The mouse's session name (what clients ask for).
        neuron_ids: Unit ids of the N responses, in order.
        causal: Declare that the response at frame t needs no frame after t (checked).
        window_frames: Declare that the W frames ending at t + latency determine the
            response at t (checked); the server then streams by window.
        latency_frames: For a model that is not causal: the response at t needs no frame
            after t + L (checked); a window stream answers frame t - L at frame t.
        input_defaults: Mean ``behavior`` and ``pupil_center`` of the training data.
        frame_shape: (height, width) of a frame the module takes.
        version: Version number (default: the next free one).
        architecture: Recorded in the manifest (default: the module's class name).
        burn_in_frames: Frames before predictions are meaningful (Sensorium scores from 50).
        example: A real trial (video (T, H, W), behaviour (T, 2), pupil centre (T, 2)) to
            check on besides the generated inputs.

    Returns:
        The version folder and every check's result.

    Raises:
        ExportError: the module cannot be exported, ONNX Runtime disagrees with it, or a
            declared property does not hold (the message names the frame that leaked).
    """
    entry = MouseModule(module, list(neuron_ids), dict(input_defaults or {}), example)
    return export_mice(
        {mouse: entry},
        repository,
        name,
        causal=causal,
        window_frames=window_frames,
        latency_frames=latency_frames,
        frame_shape=frame_shape,
        version=version,
        architecture=architecture,
        burn_in_frames=burn_in_frames,
    )
