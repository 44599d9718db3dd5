"""Per-mouse parts: input normalisation, Gaussian readout, shifter, modulator.

Everything here is keyed by mouse (session) in the model; all of it is exported
inside that mouse's graphs, so served models take raw inputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class InputNormalizer(nn.Module):
    """Raw inputs -> normalised core input and behaviour features.

    Video (x - mean) / std; behaviour x / std (not centred); pupil centre z-scored,
    as the reference baselines do. Statistics come from ``meta/statistics``.
    """

    video_mean: torch.Tensor
    video_std: torch.Tensor
    behavior_std: torch.Tensor
    pupil_mean: torch.Tensor
    pupil_std: torch.Tensor

    def __init__(
        self,
        video_mean: float,
        video_std: float,
        behavior_std: np.ndarray,
        pupil_mean: np.ndarray,
        pupil_std: np.ndarray,
    ) -> None:
        """Store the statistics as buffers (exported with the graph)."""
        super().__init__()
        self.register_buffer("video_mean", torch.tensor(float(video_mean)))
        self.register_buffer("video_std", torch.tensor(max(float(video_std), 1e-6)))
        self.register_buffer("behavior_std", torch.tensor(np.maximum(behavior_std, 1e-6)).float())
        self.register_buffer("pupil_mean", torch.tensor(pupil_mean).float())
        self.register_buffer("pupil_std", torch.tensor(np.maximum(pupil_std, 1e-6)).float())

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalise raw inputs.

        Video (B, T, H, W), behaviour and pupil centre (B, T, 2) become the core
        input (B, 3, T, H, W) and normalised behaviour and pupil centre (B, T, 2).
        """
        frames = (video - self.video_mean) / self.video_std
        behavior = behavior / self.behavior_std
        pupil = (pupil_center - self.pupil_mean) / self.pupil_std
        b, t, h, w = frames.shape
        planes = behavior.permute(0, 2, 1)[:, :, :, None, None].expand(b, 2, t, h, w)
        return torch.cat([frames.unsqueeze(1), planes], dim=1), behavior, pupil


class Shifter(nn.Module):
    """Pupil centre (B, T, 2) -> shift of every readout position (B, T, 2)."""

    bound = 0.5  # |shift| < bound (grid units): a tanh scaled by it

    def __init__(self, hidden: int = 16) -> None:
        """A small MLP, initialised to shift nothing."""
        super().__init__()
        last = nn.Linear(hidden, 2)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), last, nn.Tanh())

    def forward(self, pupil: torch.Tensor) -> torch.Tensor:
        """Shift in normalised grid units (-1..1)."""
        return self.net(pupil) * self.bound


class Modulator(nn.Module):
    """Behaviour (B, T, 2) -> per-neuron multiplicative gain (B, T, N), 1 at init."""

    def __init__(self, n_neurons: int, factors: int = 4, hidden: int = 16) -> None:
        """Behaviour -> a few shared factors -> each neuron's log-gain."""
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ELU(), nn.Linear(hidden, factors))
        self.weights = nn.Parameter(torch.zeros(factors, n_neurons))

    def forward(self, behavior: torch.Tensor, neurons: torch.Tensor | None = None) -> torch.Tensor:
        """Gain >= 0 per frame and neuron (or per neuron of the ``neurons`` subset)."""
        weights = self.weights if neurons is None else self.weights[:, neurons]
        return torch.exp(self.net(behavior) @ weights)


class GaussianReadout(nn.Module):
    """Each neuron reads the core's features at one learned position.

    Training samples positions around the mean (learned spread); evaluation and
    export use the mean. Positions may start from cortical coordinates
    (retinotopy maps cortex onto the visual field).
    """

    def __init__(
        self, n_neurons: int, channels: int, init_positions: np.ndarray | None = None
    ) -> None:
        """Positions (N, 2) in -1..1 grid units (x, y), feature weights (N, C), bias (N)."""
        super().__init__()
        if init_positions is None:
            init_positions = np.random.default_rng(0).uniform(-0.5, 0.5, (n_neurons, 2))
        self.mu = nn.Parameter(torch.tensor(init_positions, dtype=torch.float32))
        self.log_sigma = nn.Parameter(torch.full((n_neurons, 2), -2.0))
        self.features = nn.Parameter(torch.randn(n_neurons, channels) / channels**0.5 * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_neurons))

    def forward(
        self,
        features: torch.Tensor,
        shift: torch.Tensor,
        neurons: torch.Tensor | None = None,
        gain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features (B, C, T, H, W) and shift (B, T, 2) -> drive (B, T, N).

        ``neurons`` (indices) restricts the readout to a subset, which training uses
        to spend less time per step on the readout. ``gain`` (B, T, N) multiplies the
        weighted features before the bias is added: behaviour scales the stimulus
        drive ahead of the threshold, as it does in cortex.
        """
        b, c, t, h, w = features.shape
        frames = features.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        mu: torch.Tensor = self.mu
        weights: torch.Tensor = self.features
        bias: torch.Tensor = self.bias
        log_sigma: torch.Tensor = self.log_sigma
        if neurons is not None:
            mu, weights, bias, log_sigma = (
                mu[neurons],
                weights[neurons],
                bias[neurons],
                log_sigma[neurons],
            )
        if self.training:
            mu = mu + torch.randn_like(mu) * torch.exp(log_sigma)
        grid = mu[None, None, :, :] + shift.reshape(b * t, 1, 1, 2)
        sampled = F.grid_sample(frames, grid.clamp(-1.1, 1.1), align_corners=False)
        sampled = sampled.flatten(2)  # (B*T, C, N)
        drive = (sampled * weights.t()[None]).sum(dim=1).reshape(b, t, -1)
        if gain is not None:
            drive = drive * gain
        return drive + bias


def positions_from_coordinates(coordinates: np.ndarray) -> np.ndarray:
    """Cortical (x, y) scaled to -0.8..0.8 grid units, as initial readout positions."""
    xy = coordinates[:, :2].astype(np.float64)
    low, high = xy.min(axis=0), xy.max(axis=0)
    scaled = (xy - low) / np.where(high > low, high - low, 1.0)
    return (scaled * 1.6 - 0.8).astype(np.float32)
