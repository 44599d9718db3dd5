"""Writing sessions in the Sensorium 2023 layout, one trial at a time.

Trials go to disk as they are added; only running statistics stay in memory, so a
full-scale mouse can be written with a few hundred MB.
"""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from sensorium_data import layout
from sensorium_data.session import Session


@dataclass
class RunningStats:
    """Count, mean, M2, min and max over a leading sample axis, merged per batch (Chan)."""

    count: int = 0
    mean: np.ndarray | float = 0.0
    m2: np.ndarray | float = 0.0
    min: np.ndarray | float = field(default=np.inf)
    max: np.ndarray | float = field(default=-np.inf)

    def update(self, samples: np.ndarray) -> None:
        """Merge ``samples`` (n x ...) into the running statistics."""
        n = samples.shape[0]
        if n == 0:
            return
        samples = samples.astype(np.float64)
        mean = samples.mean(axis=0)
        m2 = ((samples - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.min = np.minimum(self.min, samples.min(axis=0))
        self.max = np.maximum(self.max, samples.max(axis=0))
        self.count = total

    def arrays(self) -> dict[str, np.ndarray]:
        """The statistics as float32 arrays (std with ddof 0)."""
        std = np.sqrt(np.asarray(self.m2) / max(self.count, 1))
        return {
            "mean": np.asarray(self.mean, dtype=np.float32),
            "std": std.astype(np.float32),
            "min": np.asarray(self.min, dtype=np.float32),
            "max": np.asarray(self.max, dtype=np.float32),
        }


class SessionWriter:
    """Write one session folder; use as a context manager.

    Example:
        >>> with SessionWriter(root, "dynamic1-1-1-Video-x", unit_ids, coords) as w:
        ...     w.add_trial("train", video, behavior, pupil_center, responses)

    Videos are stored as H x W x ``max_frames`` float32 and every array is
    NaN-padded to ``max_frames``, as in the real release.
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        unit_ids: np.ndarray,
        cell_motor_coordinates: np.ndarray,
        *,
        frame_shape: tuple[int, int] = (layout.FRAME_HEIGHT, layout.FRAME_WIDTH),
        max_frames: int = layout.MAX_FRAMES,
        config: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Create ``root/name`` (refusing an existing folder unless ``overwrite``)."""
        self.path = Path(root) / name
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(
                    errno.EEXIST,
                    "session folder exists (overwrite=True replaces it)",
                    str(self.path),
                )
            shutil.rmtree(self.path)
        unit_ids = np.asarray(unit_ids)
        coords = np.asarray(cell_motor_coordinates, dtype=np.float32)
        if unit_ids.ndim != 1 or coords.shape != (unit_ids.shape[0], 3):
            raise ValueError(
                f"unit_ids must be (N,), coordinates (N, 3); got "
                f"{unit_ids.shape} and {coords.shape}"
            )
        self.n_neurons = int(unit_ids.shape[0])
        self.frame_shape = frame_shape
        self.max_frames = max_frames
        self.config = {"data_keys": list(layout.VARIABLES), **(config or {})}
        self.tiers: list[str] = []
        self.trial_meta: dict[str, list[str]] = {}
        self.stats = {v: RunningStats() for v in layout.VARIABLES}
        for variable in layout.VARIABLES:
            (self.path / "data" / variable).mkdir(parents=True)
        neurons = self.path / "meta/neurons"
        neurons.mkdir(parents=True)
        np.save(neurons / "unit_ids.npy", unit_ids)
        np.save(neurons / "cell_motor_coordinates.npy", coords)

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()

    def _pad(self, array: np.ndarray) -> np.ndarray:
        padded = np.full((*array.shape[:-1], self.max_frames), np.nan, dtype=np.float32)
        padded[..., : array.shape[-1]] = array
        return padded

    def add_trial(
        self,
        tier: str,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        responses: np.ndarray | None = None,
        **meta: str,
    ) -> int:
        """Write one trial and return its index.

        Args:
            tier: One of ``layout.TIERS``.
            video: H x W x T, 0..255.
            behavior: 2 x T, [pupil dilation, running speed].
            pupil_center: 2 x T, [horizontal, vertical].
            responses: N x T, or None for a trial without recorded responses (its file
                then holds NaN, as every trial of the layout has a responses file).
            **meta: Per-trial strings, each stored in ``meta/trials/<key>.npy``,
                e.g. ``clip_ids="clip7"``, ``stimulus_types="gabor"``.
        """
        if tier not in layout.TIERS:
            raise ValueError(f"tier {tier!r} is not one of {layout.TIERS}")
        t = video.shape[-1]
        expected = {
            "video": (video, (*self.frame_shape, t)),
            "behavior": (behavior, (2, t)),
            "pupil_center": (pupil_center, (2, t)),
        }
        if responses is not None:
            expected["responses"] = (responses, (self.n_neurons, t))
        for name, (array, shape) in expected.items():
            if array.shape != shape:
                raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
        if not 0 < t <= self.max_frames:
            raise ValueError(f"trial has {t} frames; expected 1..{self.max_frames}")
        index = len(self.tiers)
        arrays = {
            layout.VIDEOS: video,
            layout.BEHAVIOR: behavior,
            layout.PUPIL_CENTER: pupil_center,
        }
        if responses is not None:
            arrays[layout.RESPONSES] = responses
        if responses is None:  # every trial has the file; NaN: not recorded
            unrecorded = np.full((self.n_neurons, t), np.nan, dtype=np.float32)
            np.save(self.path / layout.data_file(layout.RESPONSES, index), self._pad(unrecorded))
        for variable, array in arrays.items():
            np.save(self.path / layout.data_file(variable, index), self._pad(array))
            samples = np.moveaxis(array, -1, 0)
            if variable == layout.VIDEOS:
                samples = samples.reshape(-1)
            self.stats[variable].update(samples)
        self.tiers.append(tier)
        for key in set(meta) | set(self.trial_meta):
            self.trial_meta.setdefault(key, [""] * index).append(str(meta.get(key, "")))
        return index

    def close(self) -> Session:
        """Write tiers, per-trial metadata, statistics and config.json; return the session."""
        trials = self.path / "meta/trials"
        trials.mkdir(parents=True, exist_ok=True)
        np.save(trials / "tiers.npy", np.asarray(self.tiers, dtype=str))
        for key, values in self.trial_meta.items():
            np.save(trials / f"{key}.npy", np.asarray(values, dtype=str))
        for variable, stats in self.stats.items():
            if stats.count == 0:
                continue
            folder = self.path / layout.statistics_file(variable, "mean").rsplit("/", 1)[0]
            folder.mkdir(parents=True, exist_ok=True)
            for name, value in stats.arrays().items():
                np.save(folder / f"{name}.npy", value)
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
        return Session(self.path)
