"""What the synthetic mouse is shown: tiers, clips, repeats and trial lengths."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from sensorium_data.synth.stimuli import BONUS_STIMULI

TIER_FRACTIONS = {
    "train": 0.50,
    "oracle": 0.085,
    "live_test_main": 0.08,
    "final_test_main": 0.08,
    "live_test_bonus": 0.08,
    "final_test_bonus": 0.155,
    "none": 0.02,
}
"""Shares of trials per tier, after a real mouse (~348 train, 58 oracle, 134 final bonus)."""

REPEATED_TIERS = (
    "oracle",
    "live_test_main",
    "final_test_main",
    "live_test_bonus",
    "final_test_bonus",
)


@dataclass(frozen=True)
class SynthConfig:
    """Scale and seed of a synthetic dataset."""

    neurons: int = 8000
    trials: int = 700
    mice: int = 1
    seed: int = 0
    max_frames: int = 300
    repeats: int = 10
    short_fraction: float = 0.25
    frame_shape: tuple[int, int] = (36, 64)

    @classmethod
    def small(cls, **overrides: Any) -> SynthConfig:
        """A few hundred neurons and a few dozen trials: seconds to generate."""
        preset: dict[str, Any] = {"neurons": 200, "trials": 40, "max_frames": 150, "repeats": 3}
        return cls(**{**preset, **overrides})


@dataclass(frozen=True)
class TrialPlan:
    """One trial to generate."""

    tier: str
    clip_id: str
    stimulus_type: str
    length: int


def session_name(config: SynthConfig, mouse: int) -> str:
    """A session folder name in the real data's pattern, stable per seed and mouse."""
    digest = hashlib.md5(f"{config.seed}-{mouse}".encode(), usedforsecurity=False).hexdigest()
    return f"dynamic{90001 + mouse}-{1 + config.seed % 9}-{mouse + 1}-Video-{digest}"


def tier_counts(n_trials: int, repeats: int) -> dict[str, int]:
    """Trials per tier; each repeated tier holds at least one clip shown twice."""
    counts = {tier: round(frac * n_trials) for tier, frac in TIER_FRACTIONS.items()}
    for tier in REPEATED_TIERS:
        counts[tier] = max(counts[tier], min(repeats, 2) if repeats > 1 else 1)
    counts["train"] = max(1, n_trials - sum(v for k, v in counts.items() if k != "train"))
    return counts


def _length(rng: np.random.Generator, config: SynthConfig) -> int:
    if rng.random() < config.short_fraction:
        return int(rng.integers(int(0.8 * config.max_frames), config.max_frames))
    return config.max_frames


def plan_session(config: SynthConfig, mouse: int) -> list[TrialPlan]:
    """Every trial of one mouse, in recording order (tiers interleaved).

    Repeated tiers show ``repeats`` repeats per clip; their clips are shared by all
    mice of a dataset (as a test set is), while training clips are unique per mouse.
    Bonus clips cycle through the out-of-domain stimulus types.
    """
    rng = np.random.default_rng([config.seed, 1000 + mouse])
    bonus_types = list(BONUS_STIMULI)
    trials: list[TrialPlan] = []
    for tier, count in tier_counts(config.trials, config.repeats).items():
        if tier in REPEATED_TIERS:
            n_clips = max(1, count // max(config.repeats, 1))
            for k in range(n_clips):
                kind = bonus_types[k % len(bonus_types)] if "bonus" in tier else "natural_movie"
                clip_id = f"{tier}-{kind}-{k}"
                length = _length(np.random.default_rng(clip_seed(config, clip_id)), config)
                clip = TrialPlan(tier, clip_id, kind, length)
                repeats = count // n_clips + (1 if k < count % n_clips else 0)
                trials.extend([clip] * repeats)
        else:
            for k in range(count):
                clip_id = f"{tier}-m{mouse}-natural_movie-{k}"
                trials.append(TrialPlan(tier, clip_id, "natural_movie", _length(rng, config)))
    order = rng.permutation(len(trials))
    return [trials[i] for i in order]


def clip_seed(config: SynthConfig, clip_id: str) -> list[int]:
    """Seed of a clip's random generator: repeats of one clip are identical."""
    digest = hashlib.sha256(clip_id.encode()).digest()
    return [config.seed, int.from_bytes(digest[:8], "little")]
