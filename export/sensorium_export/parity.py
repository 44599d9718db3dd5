"""Parity checks an export must pass before a version is written.

Error is normwise: max |a - b| / max |b|, with b the reference; the limit is 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from sensorium_export.graphs import INPUTS, ExportError
from sensorium_export.ring import HEAD
from sensorium_train.model import MouseModel

TOLERANCE = 1e-4
REEXPORT_TOLERANCE = 1e-5  # a re-export must compute what the version it replaces did


@dataclass(frozen=True)
class ParityResult:
    """One comparison."""

    check: str
    inputs: str
    error: float
    tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        """Whether the error is under the tolerance."""
        return self.error < self.tolerance


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """Max |actual - reference| / max |reference| (0 when both are all zero)."""
    scale = float(np.abs(reference).max())
    diff = float(np.abs(actual - reference).max())
    return diff / scale if scale > 0 else diff


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_clip(session: ort.InferenceSession, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    """Whole-clip graph on raw inputs (B, T, ...)."""
    return session.run(["responses"], dict(zip(INPUTS, inputs, strict=True)))[0]


def run_stream(
    session: ort.InferenceSession,
    inputs: tuple[np.ndarray, ...],
    state: list[np.ndarray],
    k: int,
) -> np.ndarray:
    """Step graph over the clip, ``k`` frames per call, from the given initial state."""
    return stream_with_state(session, inputs, state, k)[0]


def stream_with_state(
    session: ort.InferenceSession,
    inputs: tuple[np.ndarray, ...],
    state: list[np.ndarray],
    k: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """:func:`run_stream`, and the state after the last step."""
    names = [i.name for i in session.get_inputs()][len(INPUTS) :]
    outputs, frames = [], inputs[0].shape[1]
    for start in range(0, frames, k):
        feed = {name: a[:, start : start + k] for name, a in zip(INPUTS, inputs, strict=True)}
        feed.update(zip(names, state, strict=True))
        result = session.run(None, feed)
        outputs.append(result[0])
        state = result[1:]
    return np.concatenate(outputs, axis=1), state


def check_parity(
    model: MouseModel,
    clip_path: Path,
    step_path: Path,
    cases: dict[str, tuple[np.ndarray, ...]],
    ks: tuple[int, ...] = (1, 7),
) -> list[ParityResult]:
    """Torch vs ONNX Runtime on whole clips, and streaming (each k) vs the whole clip.

    Raises:
        ExportError: listing every failed comparison.
    """
    clip, step = _session(clip_path), _session(step_path)
    results = []
    for label, inputs in cases.items():
        with torch.no_grad():
            reference = model(*(torch.from_numpy(a) for a in inputs)).numpy()
        whole = run_clip(clip, inputs)
        results.append(
            ParityResult("torch vs onnx (clip)", label, relative_error(whole, reference))
        )
        zero = [s.numpy() for s in model.initial_state(inputs[0].shape[0])]
        for k in ks:
            streamed = run_stream(step, inputs, zero, k)
            results.append(
                ParityResult(f"stream k={k} vs clip", label, relative_error(streamed, whole))
            )
    raise_failed(results)
    return results


def run_ring(session: ort.InferenceSession, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    """Ring graph (``sensorium_export.ring``) over the clip of one stream, frame by frame.

    Each new frame goes into its ring's free slot by hand here; the server binds it there.
    """
    names = [i for i in session.get_inputs() if i.name.startswith("ring_") and i.name != HEAD]
    rings = {i.name: np.zeros(i.shape, np.float32) for i in names}
    outputs = []
    for t in range(inputs[0].shape[1]):
        feed = {name: a[:1, t : t + 1] for name, a in zip(INPUTS, inputs, strict=True)}
        result = session.run(None, {**feed, **rings, HEAD: np.array(t, np.int64)})
        outputs.append(result[0])
        for ring, frame in zip(rings.values(), result[1:], strict=True):
            ring[(t + len(ring) - 1) % len(ring)] = frame[0]
    return np.concatenate(outputs, axis=1)


def check_ring(
    ring_path: Path, step_path: Path, cases: dict[str, tuple[np.ndarray, ...]]
) -> list[ParityResult]:
    """The ring graph against the step graph, frame by frame (the first stream of each case).

    Raises:
        ExportError: listing every failed comparison.
    """
    ring, step = _session(ring_path), _session(step_path)
    zero = [np.zeros([1, *i.shape[1:]], np.float32) for i in step.get_inputs()[len(INPUTS) :]]
    results = []
    for label, inputs in cases.items():
        first = tuple(a[:1] for a in inputs)
        reference = run_stream(step, first, zero, 1)
        error = relative_error(run_ring(ring, first), reference)
        results.append(ParityResult("ring vs stream k=1", label, error))
    raise_failed(results)
    return results


def check_previous(
    previous: tuple[Path, Path],
    clip_path: Path,
    step_path: Path,
    cases: dict[str, tuple[np.ndarray, ...]],
    zero_state: Callable[[int], list[np.ndarray]],
) -> list[ParityResult]:
    """New graphs against the (clip, step) graphs they replace, on the same inputs.

    Responses of both graphs and, stepped frame by frame, the state: a stream's state
    taken on the old graphs then continues on the new ones.

    Raises:
        ExportError: when any output differs by ``REEXPORT_TOLERANCE`` or more.
    """
    pairs = (
        ("clip", _session(previous[0]), _session(clip_path)),
        ("step", _session(previous[1]), _session(step_path)),
    )
    results = []
    for label, inputs in cases.items():
        for graph, old, new in pairs:
            if graph == "clip":
                before, after = run_clip(old, inputs), run_clip(new, inputs)
            else:
                state = zero_state(inputs[0].shape[0])
                before, old_state = stream_with_state(old, inputs, state, 1)
                after, new_state = stream_with_state(new, inputs, state, 1)
                error = max(relative_error(b, a) for a, b in zip(old_state, new_state, strict=True))
                results.append(
                    ParityResult("previous vs new (state)", label, error, REEXPORT_TOLERANCE)
                )
            error = relative_error(after, before)
            results.append(
                ParityResult(f"previous vs new ({graph})", label, error, REEXPORT_TOLERANCE)
            )
    raise_failed(results)
    return results


def raise_failed(results: list[ParityResult], what: str = "parity failed") -> None:
    """Raise ExportError listing every comparison over its tolerance, if any."""
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "; ".join(
            f"{r.check} on {r.inputs}: {r.error:.2e} (limit {r.tolerance:g})" for r in failed
        )
        raise ExportError(f"{what}: {lines}")
