"""The noise ceiling: how well the true rates predict the recorded responses."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sensorium_data.layout import BONUS_TEST_TIERS, MAIN_TEST_TIERS
from sensorium_data.metrics import METRICS, MouseScorer, aggregate
from sensorium_data.session import Session

GROUND_TRUTH = "ground_truth"
SCORED_TIERS = ("oracle", *MAIN_TEST_TIERS, *BONUS_TEST_TIERS)
TRACKS = {"main": MAIN_TEST_TIERS, "bonus": BONUS_TEST_TIERS}


def rates_path(session_root: Path, trial: int) -> Path:
    """Where the noise-free rates of one trial are stored (N x T, NaN-padded)."""
    return session_root / GROUND_TRUTH / "rates" / f"{trial}.npy"


def load_rates(session: Session, trial: int) -> np.ndarray:
    """Noise-free rates of one trial over its real length, T x N, float32."""
    rates = np.load(rates_path(session.root, trial), mmap_mode="r")
    return np.asarray(rates[:, : session.trial(trial).length].T, dtype=np.float32)


def compute_ceiling(session: Session) -> dict[str, Any]:
    """Score the true rates against the responses per tier, per track, per stimulus type.

    Trials are fed clip by clip and each clip is closed when done, so memory holds
    one clip at a time.
    """
    groups: dict[str, list[str]] = {t: [t] for t in SCORED_TIERS}
    groups.update({f"track:{name}": list(tiers) for name, tiers in TRACKS.items()})
    types = session.trial_meta("stimulus_types")
    bonus = session.trial_indices(BONUS_TEST_TIERS)
    if types is not None:
        for kind in sorted({str(types[i]) for i in bonus}):
            groups[f"bonus:{kind}"] = list(BONUS_TEST_TIERS)
    results: dict[str, dict[str, float]] = {}
    for group, tiers in groups.items():
        indices = session.trial_indices(tiers)
        if group.startswith("bonus:") and types is not None:
            indices = np.array([i for i in indices if str(types[i]) == group[6:]])
        trials = [session.trial(int(i)) for i in indices]
        trials = [t for t in trials if t.has_responses]
        if not trials:
            continue
        by_clip: dict[str, list[int]] = defaultdict(list)
        for trial in trials:
            by_clip[trial.clip_id].append(trial.index)
        scorer = MouseScorer(session.n_neurons)
        for clip_id, members in by_clip.items():
            for index in members:
                trial = session.trial(index)
                scorer.add(trial.response_frames(), load_rates(session, index), clip_id)
            scorer.close_clip(clip_id)
        figures = aggregate({session.name: scorer.result()})
        results[group] = {m: figures[m]["pooled_neurons"] for m in METRICS}
        results[group]["trials"] = len(trials)
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
