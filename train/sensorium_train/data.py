"""Training data: random windows from the train tier of each mouse, held in memory.

Trials are read once through the lazy reader and cached compactly (float16 video
and normalised responses): about 1.7 GB for a full-scale mouse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from sensorium_data import Session
from sensorium_train.model import MouseSpec


@dataclass
class Batch:
    """One batch of windows of one mouse; all tensors are time second (B, T, ...)."""

    mouse: str
    video: torch.Tensor  # B, T, H, W  (raw 0..255)
    behavior: torch.Tensor  # B, T, 2
    pupil_center: torch.Tensor  # B, T, 2
    responses: torch.Tensor  # B, T, N  (normalised by the response std)


class MouseWindows:
    """The train-tier trials of one mouse, ready for window sampling."""

    def __init__(
        self,
        session: Session,
        spec: MouseSpec,
        tiers: tuple[str, ...] = ("train",),
        progress: bool = True,
    ) -> None:
        """Read every trial of ``tiers`` that has responses."""
        self.name = session.name
        std = np.asarray(spec.response_std, dtype=np.float32)
        self.videos: list[np.ndarray] = []
        self.behavior: list[np.ndarray] = []
        self.pupil: list[np.ndarray] = []
        self.responses: list[np.ndarray] = []
        trials = list(session.trials(tiers))
        for trial in tqdm(trials, desc=f"load {session.name[:20]}", disable=not progress):
            if not trial.has_responses:
                continue
            self.videos.append(trial.video_frames().astype(np.float16))
            self.behavior.append(trial.behavior_frames())
            self.pupil.append(trial.pupil_center_frames())
            self.responses.append((trial.response_frames() / std).astype(np.float16))
        if not self.videos:
            raise ValueError(f"{session.name}: no trials with responses in tiers {tiers}")
        self.lengths = np.array([len(v) for v in self.videos])

    def sample(self, rng: np.random.Generator, batch: int, window: int) -> Batch:
        """``batch`` random windows of ``window`` frames (trials weighted by length)."""
        usable = np.maximum(self.lengths - window + 1, 0)
        if usable.sum() == 0:
            raise ValueError(f"{self.name}: no trial is {window} frames long")
        picks = rng.choice(len(self.lengths), size=batch, p=usable / usable.sum())
        starts = [int(rng.integers(0, usable[i])) for i in picks]

        def stack(arrays: list[np.ndarray]) -> torch.Tensor:
            windows = [arrays[i][s : s + window] for i, s in zip(picks, starts, strict=True)]
            return torch.from_numpy(np.stack(windows).astype(np.float32))

        return Batch(
            self.name,
            stack(self.videos),
            stack(self.behavior),
            stack(self.pupil),
            stack(self.responses),
        )
