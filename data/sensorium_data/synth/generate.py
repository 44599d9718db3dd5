"""Generate synthetic mice in the Sensorium 2023 layout, with their ground truth."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sensorium_data.session import Session
from sensorium_data.synth import neurons
from sensorium_data.synth.behavior import Behavior, sample_behavior
from sensorium_data.synth.ceiling import GROUND_TRUTH, compute_ceiling, rates_path
from sensorium_data.synth.plan import (
    REPEATED_TIERS,
    SynthConfig,
    TrialPlan,
    clip_seed,
    plan_session,
    session_name,
)
from sensorium_data.synth.stimuli import STIMULI, natural_movie, stimulus_statistics
from sensorium_data.writer import SessionWriter

CALIBRATION_MOVIES = 3
CHUNK = 1024  # neurons per simulation task


class SyntheticMouse:
    """One mouse's neuron population, calibrated on natural movies.

    Simulation runs on chunks of neurons in a thread pool (numpy releases the GIL),
    with one random stream per chunk so results do not depend on the thread count.
    """

    def __init__(self, config: SynthConfig, mouse: int) -> None:
        """Draw the population of mouse ``mouse`` of ``config``."""
        rng = np.random.default_rng([config.seed, 2000 + mouse])
        population = neurons.sample_population(rng, config.neurons, config.frame_shape)
        self.filters = neurons.spatial_filters(population, config.frame_shape)
        self.n = config.neurons
        self.chunks = [slice(i, min(i + CHUNK, self.n)) for i in range(0, self.n, CHUNK)]
        self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        drives = []
        for i in range(CALIBRATION_MOVIES):
            calib = np.random.default_rng([config.seed, 3000 + mouse, i])
            video = natural_movie(calib, config.max_frames, *config.frame_shape)
            behavior = sample_behavior(calib, config.max_frames)
            even, odd = self._project(video, behavior)
            drives.append(neurons.linear_drive(population, even, odd))
        self.population = neurons.calibrate(population, drives)

    def _project(self, video: np.ndarray, behavior: Behavior) -> tuple[np.ndarray, np.ndarray]:
        projected = neurons.retinal_image(video, behavior.pupil_center) @ self.filters
        return projected[:, : self.n], projected[:, self.n :]

    def simulate(
        self, video: np.ndarray, behavior: Behavior, seed: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free rates and noisy responses (each T x N) to a clip (T x H x W)."""
        even, odd = self._project(video, behavior)
        latent = neurons.latent_gain(np.random.default_rng([*seed, 0]), video.shape[0])
        rates = np.empty_like(even)
        responses = np.empty_like(even)

        def run(chunk: int) -> None:
            span = self.chunks[chunk]
            pop = self.population.take(span)
            drive = neurons.linear_drive(pop, even[:, span], odd[:, span])
            rates[:, span] = neurons.firing_rates(pop, drive, behavior.behavior)
            rng = np.random.default_rng([*seed, 1 + chunk])
            responses[:, span] = neurons.noisy_responses(pop, rates[:, span], latent, rng)

        list(self._pool.map(run, range(len(self.chunks))))
        return rates, responses


def _clip(config: SynthConfig, plan: TrialPlan) -> np.ndarray:
    rng = np.random.default_rng([*clip_seed(config, plan.clip_id), 1])
    return STIMULI[plan.stimulus_type](rng, plan.length, *config.frame_shape)


def _stimulus_summary(stats: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        kind: {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
        for kind, rows in sorted(stats.items())
    }


def generate_session(
    config: SynthConfig,
    mouse: int,
    out: str | Path,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[Session, dict[str, Any]]:
    """Write one synthetic mouse and its ground truth; return it and its noise ceiling."""
    plan = plan_session(config, mouse)
    model = SyntheticMouse(config, mouse)
    pop = model.population
    meta = {"synthetic": {**asdict(config), "mouse": mouse}}
    writer = SessionWriter(
        out,
        session_name(config, mouse),
        pop.unit_ids,
        pop.coordinates,
        frame_shape=config.frame_shape,
        max_frames=config.max_frames,
        config=meta,
        overwrite=overwrite,
    )
    truth = writer.path / GROUND_TRUTH
    (truth / "rates").mkdir(parents=True)
    cache: dict[str, np.ndarray] = {}
    stats: dict[str, list[dict[str, float]]] = defaultdict(list)
    with writer:
        bar = tqdm(plan, desc=writer.path.name[:24], unit="trial", disable=not progress)
        for index, trial in enumerate(bar):
            video = cache.get(trial.clip_id)
            if video is None:
                video = _clip(config, trial)
                if trial.tier in REPEATED_TIERS:
                    cache[trial.clip_id] = video
                if len(stats[trial.stimulus_type]) < 8:
                    stats[trial.stimulus_type].append(stimulus_statistics(video))
            seed = [config.seed, 4000 + mouse, index]
            behavior = sample_behavior(np.random.default_rng(seed), trial.length)
            rates, responses = model.simulate(video, behavior, [*seed, 1])
            writer.add_trial(
                trial.tier,
                np.moveaxis(video, 0, -1),
                behavior.behavior,
                behavior.pupil_center,
                responses.T,
                clip_ids=trial.clip_id,
                stimulus_types=trial.stimulus_type,
            )
            padded = np.full((pop.n_neurons, config.max_frames), np.nan, dtype=np.float16)
            padded[:, : trial.length] = rates.T
            np.save(rates_path(writer.path, index), padded)
    pop.save(truth / "neurons.npz")
    session = Session(writer.path)
    ceiling = compute_ceiling(session)
    ceiling["stimulus_statistics"] = _stimulus_summary(stats)
    (truth / "ceiling.json").write_text(json.dumps(ceiling, indent=2) + "\n")
    return session, ceiling
