"""Behaviour of the synthetic mouse at 30 Hz: running, pupil dilation, eye position.

Running comes in bouts (a two-state Markov chain, still and running, with smooth
speed within a bout); pupil dilation follows a slow arousal process and running;
the pupil centre drifts slowly and jumps in saccades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PUPIL_CENTER_REST = np.array([160.0, 110.0], dtype=np.float32)
"""Resting eye position in eye-camera pixels (horizontal, vertical)."""


@dataclass(frozen=True)
class Behavior:
    """One trial's behaviour, time last as on disk."""

    behavior: np.ndarray  # 2 x T: [pupil dilation, running speed]
    pupil_center: np.ndarray  # 2 x T: [horizontal, vertical]


def _ar1(rng: np.random.Generator, n: int, tau: float, std: float, start: float) -> np.ndarray:
    """Stationary AR(1) process with time constant ``tau`` frames."""
    a = np.exp(-1.0 / tau)
    noise = rng.normal(scale=std * np.sqrt(1 - a * a), size=n)
    out = np.empty(n)
    value = start
    for t in range(n):
        value = a * value + noise[t]
        out[t] = value
    return out


def _running(rng: np.random.Generator, n: int) -> np.ndarray:
    """Running speed (cm/s) in bouts: P(start) ~ 1/5 s, P(stop) ~ 1/3 s per frame."""
    running = rng.random() < 0.4
    states = np.empty(n, dtype=bool)
    for t in range(n):
        if running and rng.random() < 1 / 90:
            running = False
        elif not running and rng.random() < 1 / 150:
            running = True
        states[t] = running
    kernel = np.exp(-np.arange(45) / 12.0)
    drive = np.convolve(states.astype(float), kernel / kernel.sum(), mode="full")[:n]
    speed = drive * rng.uniform(8, 30) * (1 + 0.2 * _ar1(rng, n, 10, 1.0, 0.0))
    return np.clip(speed + np.abs(rng.normal(scale=0.3, size=n)), 0, None)


def _pupil_center(rng: np.random.Generator, n: int) -> np.ndarray:
    """Slow drift plus saccades (about one every 3 s, 3 to 12 px)."""
    drift = np.stack([_ar1(rng, n, 60, 2.0, rng.normal(scale=2)) for _ in range(2)])
    jumps = np.zeros((2, n))
    for t in np.flatnonzero(rng.random(n) < 1 / 90).tolist():
        angle = rng.uniform(0, 2 * np.pi)
        size = rng.uniform(3, 12)
        jumps[:, t] = size * np.cos(angle), size * np.sin(angle) * 0.6
    # Saccades return towards rest: integrate jumps with a slow leak.
    position = np.zeros((2, n))
    for step in range(1, n):
        position[:, step] = position[:, step - 1] * 0.995 + jumps[:, step]
    center = PUPIL_CENTER_REST[:, None] + drift + position
    return center + rng.normal(scale=0.3, size=(2, n))


def sample_behavior(rng: np.random.Generator, n: int) -> Behavior:
    """Sample ``n`` frames of behaviour."""
    speed = _running(rng, n)
    arousal = _ar1(rng, n, 90, 1.0, rng.normal())
    smooth_run = np.convolve(speed, np.ones(30) / 30, mode="full")[:n]
    dilation = 18 + 4 * arousal + 0.25 * smooth_run + rng.normal(scale=0.4, size=n)
    behavior = np.stack([np.clip(dilation, 4, None), speed]).astype(np.float32)
    return Behavior(behavior=behavior, pupil_center=_pupil_center(rng, n).astype(np.float32))
