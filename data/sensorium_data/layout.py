"""Names and constants of the Sensorium 2023 on-disk layout.

A session folder (one mouse, one recording)::

    <session>/
      config.json
      data/videos/<trial>.npy        H x W x T  (36 x 64 x T), grayscale 0..255
      data/responses/<trial>.npy     N x T
      data/behavior/<trial>.npy      2 x T      [pupil dilation, running speed]
      data/pupil_center/<trial>.npy  2 x T      [horizontal, vertical]
      meta/neurons/unit_ids.npy                 (N,)
      meta/neurons/cell_motor_coordinates.npy   (N, 3)
      meta/statistics/<var>/all/{min,max,mean,std[,median]}.npy
      meta/trials/tiers.npy                     (n_trials,)

Arrays are NaN-padded to a fixed length; a trial's real length is the index of
its first NaN frame.
"""

from __future__ import annotations

from typing import Final

TIERS: Final = (
    "train",
    "oracle",
    "live_test_main",
    "live_test_bonus",
    "final_test_main",
    "final_test_bonus",
    "none",
)
"""The seven tiers of ``meta/trials/tiers.npy``."""

MAIN_TEST_TIERS: Final = ("live_test_main", "final_test_main")
BONUS_TEST_TIERS: Final = ("live_test_bonus", "final_test_bonus")

VIDEOS: Final = "videos"
RESPONSES: Final = "responses"
BEHAVIOR: Final = "behavior"
PUPIL_CENTER: Final = "pupil_center"
VARIABLES: Final = (VIDEOS, RESPONSES, BEHAVIOR, PUPIL_CENTER)
"""Folders under ``data/``, one ``<trial>.npy`` per trial in each."""

STATISTICS: Final = ("min", "max", "mean", "std")
"""Files every ``meta/statistics/<var>/all/`` folder holds; ``median`` is optional."""

FRAME_RATE_HZ: Final = 30.0
FRAME_HEIGHT: Final = 36
FRAME_WIDTH: Final = 64
MAX_FRAMES: Final = 300
SCORED_FROM_FRAME: Final = 50
"""The benchmark does not score the first 50 frames of a trial (burn-in)."""

CLIP_IDS: Final = "clip_ids"
STIMULUS_TYPES: Final = "stimulus_types"
"""Optional per-trial arrays in ``meta/trials/`` that our writer records."""


def data_file(variable: str, trial: int) -> str:
    """Relative path of one trial's array, e.g. ``data/videos/3.npy``."""
    return f"data/{variable}/{trial}.npy"


def statistics_file(variable: str, statistic: str) -> str:
    """Relative path of one statistic, e.g. ``meta/statistics/videos/all/mean.npy``."""
    return f"meta/statistics/{variable}/all/{statistic}.npy"
