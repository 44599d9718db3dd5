"""A tiny session with a simple known ground truth, for smoke runs of the data layer.

Not the synthetic mouse: neurons here are linear-nonlinear units on random frames,
enough to exercise the reader, the writer and the metrics end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sensorium_data.session import Session
from sensorium_data.writer import SessionWriter

EXAMPLE_SESSION = "dynamic00000-1-1-Video-example"


def _clip(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Smoothed random video, H x W x T in 0..255."""
    noise = rng.normal(size=(36, 64, frames)).cumsum(axis=-1)
    noise -= noise.min()
    scaled: np.ndarray = (255 * noise / max(noise.max(), 1e-9)).astype(np.float32)
    return scaled


def write_example_session(
    root: str | Path, n_neurons: int = 40, seed: int = 0, overwrite: bool = True
) -> tuple[Session, dict[int, np.ndarray]]:
    """Write a small session (train, oracle and test repeats, one short trial).

    Returns:
        The session and each trial's noise-free rate (T x N), keyed by trial index.
    """
    rng = np.random.default_rng(seed)
    filters = rng.normal(size=(36 * 64, n_neurons)) / 8
    clips = {f"clip{i}": _clip(rng, 120 if i == 0 else 150) for i in range(4)}
    plan = [("train", "clip3")] * 3 + [("oracle", "clip1")] * 3 + [("oracle", "clip2")] * 2
    plan += [("live_test_main", "clip0")] * 2
    rates: dict[int, np.ndarray] = {}
    coords = rng.uniform(0, 500, size=(n_neurons, 3))
    with SessionWriter(
        root,
        EXAMPLE_SESSION,
        np.arange(n_neurons) + 1000,
        coords,
        max_frames=150,
        overwrite=overwrite,
    ) as writer:
        for tier, clip_id in plan:
            video = clips[clip_id]
            t = video.shape[-1]
            drive = (video.reshape(-1, t).T / 255.0 - 0.5) @ filters
            rate = np.log1p(np.exp(drive))
            responses = rng.poisson(rate * 2.0).T.astype(np.float32) / 2.0
            behavior = np.stack([np.full(t, 5.0), np.abs(rng.normal(size=t))])
            pupil = rng.normal(scale=0.5, size=(2, t))
            index = writer.add_trial(
                tier,
                video,
                behavior,
                pupil,
                responses,
                clip_ids=clip_id,
                stimulus_types="random_walk",
            )
            rates[index] = rate.astype(np.float32)
    return Session(writer.path), rates
