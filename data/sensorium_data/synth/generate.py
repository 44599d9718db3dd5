"""Generate synthetic mice in the Sensorium 2023 layout, with their ground truth."""

from __future__ import annotations

import json
from collections import defaultdict
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


class SyntheticMouse:
    """One mouse's neuron population, calibrated on natural movies."""

    def __init__(self, config: SynthConfig, mouse: int) -> None:
        """Draw the population of mouse ``mouse`` of ``config``."""
        rng = np.random.default_rng([config.seed, 2000 + mouse])
        population = neurons.sample_population(rng, config.neurons, config.frame_shape)
        self.filters = neurons.spatial_filters(population, config.frame_shape)
        drives = []
        for i in range(CALIBRATION_MOVIES):
            calib = np.random.default_rng([config.seed, 3000 + mouse, i])
            video = natural_movie(calib, config.max_frames, *config.frame_shape)
            behavior = sample_behavior(calib, config.max_frames)
            retina = neurons.retinal_image(video, behavior.pupil_center)
            drives.append(neurons.linear_drive(population, self.filters, retina))
        self.population = neurons.calibrate(population, drives)

    def rates(self, video: np.ndarray, behavior: Behavior) -> np.ndarray:
        """Noise-free rates (T x N) for a clip (T x H x W) and behaviour."""
        retina = neurons.retinal_image(video, behavior.pupil_center)
        drive = neurons.linear_drive(self.population, self.filters, retina)
        return neurons.firing_rates(self.population, drive, behavior.behavior)


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
            rng = np.random.default_rng([config.seed, 4000 + mouse, index])
            behavior = sample_behavior(rng, trial.length)
            rates = model.rates(video, behavior)
            responses = neurons.noisy_responses(pop, rates, rng)
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
