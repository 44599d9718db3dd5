"""The noise ceiling: how well the true rates predict the recorded responses."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sensorium_data.layout import BONUS_TEST_TIERS, MAIN_TEST_TIERS
from sensorium_data.metrics import METRICS, MouseScorer, aggregate
from sensorium_data.session import Session, Trial

GROUND_TRUTH = "ground_truth"
SCORED_TIERS = ("oracle", *MAIN_TEST_TIERS, *BONUS_TEST_TIERS)
TRACKS = {"main": MAIN_TEST_TIERS, "bonus": BONUS_TEST_TIERS}


def rates_path(session_root: Path, trial: int) -> Path:
    """Where the noise-free rates of one trial are stored (N x T, NaN-padded)."""
    return session_root / GROUND_TRUTH / "rates" / f"{trial}.npy"


def load_rates(trial: Trial) -> np.ndarray:
    """Noise-free rates of one synthetic trial over its real length, T x N, float32."""
    rates = np.load(rates_path(trial.session.root, trial.index), mmap_mode="r")
    return np.asarray(rates[:, : trial.length].T, dtype=np.float32)


def _groups(session: Session) -> dict[str, list[int]]:
    """Trial indices (with responses) per group: tier, track, bonus stimulus type."""
    groups: dict[str, list[int]] = {}
    for tier in SCORED_TIERS:
        groups[tier] = session.trial_indices(tier).tolist()
    for name, tiers in TRACKS.items():
        groups[f"track:{name}"] = session.trial_indices(tiers).tolist()
    types = session.trial_meta("stimulus_types")
    if types is not None:
        for index in session.trial_indices(BONUS_TEST_TIERS).tolist():
            groups.setdefault(f"bonus:{types[index]}", []).append(index)
    return {name: members for name, members in groups.items() if members}


def compute_ceiling(session: Session) -> dict[str, Any]:
    """Score the true rates against the responses per tier, per track, per stimulus type.

    Each trial is read once and fed to every group it belongs to; trials go in clip
    by clip and each clip is closed when done, so memory holds one clip per group.
    """
    groups = _groups(session)
    membership: dict[int, list[str]] = defaultdict(list)
    for name, members in groups.items():
        for index in members:
            membership[index].append(name)
    # One Trial object per trial, so its video and responses are read once.
    by_clip: dict[str, list[Trial]] = defaultdict(list)
    for index in sorted(membership):
        trial = session.trial(index)
        if trial.has_responses:
            by_clip[trial.clip_id].append(trial)
    scorers = {name: MouseScorer(session.n_neurons) for name in groups}
    counts: dict[str, int] = defaultdict(int)
    while by_clip:
        # Pop the clip: its Trial objects (and the arrays they hold) go when it is done.
        clip_id, repeats = by_clip.popitem()
        for trial in repeats:
            responses, rates = trial.response_frames(), load_rates(trial)
            for name in membership[trial.index]:
                scorers[name].add(responses, rates, clip_id)
                counts[name] += 1
        for name in {g for trial in repeats for g in membership[trial.index]}:
            scorers[name].close_clip(clip_id)
    results: dict[str, dict[str, float]] = {}
    for name, scorer in scorers.items():
        if counts[name]:
            figures = aggregate({session.name: scorer.result()})
            results[name] = {m: figures[m]["pooled_neurons"] for m in METRICS}
            results[name]["trials"] = counts[name]
    return {"session": session.name, "ceiling": results}


def format_ceiling(ceiling: dict[str, Any]) -> str:
    """A plain-text table of a ceiling dict."""
    lines = [
        f"noise ceiling of {ceiling['session']} (true rates vs recorded responses)",
        f"  {'group':34s} {'trials':>6s} {'single':>7s} {'to_avg':>7s} {'FEVE':>7s}",
    ]
    for group, row in ceiling["ceiling"].items():
        lines.append(
            f"  {group:34s} {row['trials']:6d} {row['single_trial_correlation']:7.3f} "
            f"{row['correlation_to_average']:7.3f} {row['feve']:7.3f}"
        )
    return "\n".join(lines)


def format_stimulus_statistics(stats: dict[str, dict[str, float]]) -> str:
    """A plain-text table of per-family stimulus statistics (see ``stimulus_statistics``)."""
    keys = [
        "rms_contrast",
        "frame_to_frame_correlation",
        "spatial_spectrum_slope",
        "static_frame_fraction",
    ]
    heads = ["contrast", "frame_corr", "spec_slope", "static"]
    lines = [
        "stimulus statistics (mean over clips)",
        f"  {'stimulus':26s} " + " ".join(f"{h:>10s}" for h in heads),
    ]
    for kind, row in stats.items():
        lines.append(f"  {kind:26s} " + " ".join(f"{row[k]:10.3f}" for k in keys))
    return "\n".join(lines)
