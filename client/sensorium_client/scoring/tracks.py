"""Tracks, tiers and the competition's file names."""

from __future__ import annotations

from dataclasses import dataclass

TRACK_TIERS = {
    "main": {"live": "live_test_main", "final": "final_test_main"},
    "bonus": {"live": "live_test_bonus", "final": "final_test_bonus"},
}
ORACLE = "oracle"
SUBMISSION_FILES = {
    "live_test_main": "predictions_live_main.parquet.brotli",
    "final_test_main": "predictions_final_main.parquet.brotli",
    "live_test_bonus": "predictions_live_test_bonus_ood.parquet.brotli",
    "final_test_bonus": "predictions_final_test_bonus_ood.parquet.brotli",
}
# The starter kit's README: the main track's two files in one zip; the bonus track's
# live and final files zipped and uploaded separately (5 GB upload limit).
ZIPS = {
    "submission_main_track.zip": ("live_test_main", "final_test_main"),
    "submission_bonus_track_live.zip": ("live_test_bonus",),
    "submission_bonus_track_final.zip": ("final_test_bonus",),
}
# The names the starter kit's submission.py writes (its README asks for the names above).
STARTER_KIT_FILES = {
    tier: f"predictions_file_{tier}_{'ood' if 'bonus' in tier else 'main'}_track.parquet.brotli"
    for tier in SUBMISSION_FILES
}


@dataclass(frozen=True)
class Job:
    """One tier to predict: its track ("main", "bonus" or "oracle") and tier name."""

    track: str
    tier: str

    @property
    def submitted(self) -> bool:
        """Whether the tier goes into a competition submission."""
        return self.tier in SUBMISSION_FILES


def jobs(track: str, tier: str) -> list[Job]:
    """The tiers that ``--track`` and ``--tier`` select, in a fixed order.

    ``--track`` is main, bonus or both; ``--tier`` is live, final, oracle or all.
    """
    tracks = ["main", "bonus"] if track == "both" else [track]
    phases = ["live", "final"] if tier == "all" else [tier] if tier != ORACLE else []
    chosen = [Job(t, TRACK_TIERS[t][p]) for t in tracks for p in phases]
    if tier in (ORACLE, "all"):
        chosen.append(Job(ORACLE, ORACLE))
    return chosen
