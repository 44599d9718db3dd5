"""Declared temporal properties of a model, checked by perturbing its inputs.

A user declares how a model depends on time; the exporter checks it before writing:

- **latency L** (0 for a causal model): the response at frame t depends on no frame
  after t + L. ``causal=True`` declares L = 0.
- **window W**: the response at frame t depends on no frame before t + L - W + 1, so
  the W frames ending at t + L determine it (what window streaming feeds the clip
  graph at each step).

Each check runs the model (any callable on numpy arrays: an ONNX Runtime session or a
torch module) on a base clip, then on copies where some frames hold other values, and
compares the responses that must not change. A failure names the response frame and
the input frame that leaked into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensorium_export.graphs import ExportError

# video (B, T, H, W), behavior (B, T, 2), pupil_center (B, T, 2) -> responses (B, T, N)
Runner = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Inputs = tuple[np.ndarray, np.ndarray, np.ndarray]
TOLERANCE = 1e-6  # relative to the largest response; frames that do not matter move nothing (0.0)
SEARCH_LIMIT = 48  # single-frame runs spent naming the frame that leaked


class PropertyError(ExportError):
    """A declared property does not hold; the message names the frame that leaked."""


@dataclass(frozen=True)
class PropertyResult:
    """One property that held: the check, and the largest change seen where none may be."""

    check: str
    error: float


def probe_frames(window: int | None, latency: int) -> int:
    """Frames of the clip the checks use: room for splits before, in and after a window."""
    return max(2 * (window or 16) + latency + 8, 3 * latency + 24)


def frame_changes(base: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per frame, the largest |change| of any response, relative to max |base| (shape (T,))."""
    scale = max(float(np.abs(base).max()), 1e-12)
    return np.abs(other - base).reshape(base.shape[0], base.shape[1], -1).max(axis=(0, 2)) / scale


def _replace(inputs: Inputs, frames: list[int], seed: int) -> Inputs:
    """A copy of ``inputs`` whose ``frames`` hold other real-looking values."""
    rng = np.random.default_rng(seed)
    video, behavior, pupil = (a.copy() for a in inputs)
    for t in frames:
        video[:, t] = rng.uniform(0, 255, video[:, t].shape)
        behavior[:, t] += rng.normal(0, 1 + np.abs(behavior[:, t]) * 0.2)
        pupil[:, t] += rng.normal(0, 1 + np.abs(pupil[:, t]) * 0.05)
    return video, behavior, pupil


def _leaking_frame(
    run: Runner, inputs: Inputs, base: np.ndarray, response: int, candidates: range
) -> int | None:
    """The first single frame among ``candidates`` whose change moves ``response``."""
    for frame in list(candidates)[:SEARCH_LIMIT]:
        if frame_changes(base, run(*_replace(inputs, [frame], frame)))[response] > TOLERANCE:
            return frame
    return None


def check_latency(run: Runner, inputs: Inputs, latency: int) -> PropertyResult:
    """Raise PropertyError when a response depends on a frame more than ``latency`` after it.

    Frames from a split point on are replaced (at a third, half and two thirds of the
    clip); every response more than ``latency`` frames before the split must stay.
    """
    frames = inputs[0].shape[1]
    base = run(*inputs)
    worst = 0.0
    for split in sorted({frames // 3, frames // 2, 2 * frames // 3}):
        kept = split - latency  # responses [0, kept) may not move
        if kept < 1:
            continue
        changes = frame_changes(base, run(*_replace(inputs, list(range(split, frames)), split)))
        moved = np.flatnonzero(changes[:kept] > TOLERANCE)
        if moved.size:
            response = int(moved[0])
            leak = _leaking_frame(run, inputs, base, response, range(split, frames))
            source = f"frame {leak}" if leak is not None else f"frames {split}..{frames - 1}"
            need = "" if leak is None else f"; declare latency_frames >= {leak - response}"
            declared = "causal" if latency == 0 else f"latency_frames={latency}"
            raise PropertyError(
                f"declared {declared}, but the response at frame {response} changes when "
                f"{source} changes ({float(changes[response]):.2e} relative): {source} leaked "
                f"into an earlier response{need}"
            )
        worst = max(worst, float(changes[:kept].max()))
    label = "causal" if latency == 0 else f"latency {latency}"
    return PropertyResult(f"{label}: no response depends on later frames", worst)


def check_window(run: Runner, inputs: Inputs, window: int, latency: int) -> PropertyResult:
    """Raise PropertyError unless the response at frame T-1-latency needs only the last W frames.

    Every frame before the window (the ``window`` frames ending at T-1) is replaced; the
    response at frame T-1-latency must stay.
    """
    frames = inputs[0].shape[1]
    if window < latency + 1:
        raise PropertyError(
            f"window_frames={window} cannot hold a response and the {latency} frames after it"
        )
    if frames <= window:
        raise PropertyError(f"the window check needs more than {window} frames, got {frames}")
    start, response = frames - window, frames - 1 - latency
    base = run(*inputs)
    changes = frame_changes(base, run(*_replace(inputs, list(range(start)), 7)))
    if changes[response] > TOLERANCE:
        leak = _leaking_frame(run, inputs, base, response, range(start - 1, -1, -1))
        source = f"frame {leak}" if leak is not None else f"frames 0..{start - 1}"
        need = "" if leak is None else f"; declare window_frames >= {frames - leak}"
        raise PropertyError(
            f"declared window_frames={window}, but the response at frame {response} changes "
            f"when {source} changes ({float(changes[response]):.2e} relative), before its "
            f"window (frames {start}..{frames - 1}){need}"
        )
    return PropertyResult(
        f"window {window}: earlier frames do not matter", float(changes[response])
    )
