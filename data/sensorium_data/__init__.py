"""The Sensorium 2023 data layer: read and write the on-disk layout, score predictions.

- :class:`Session` / :class:`Trial`: lazy, memory-mapped reading of a session folder.
- :class:`SessionWriter`: writes the same layout, trial by trial.
- :mod:`sensorium_data.metrics`: single-trial correlation, correlation to average, FEVE.
"""

from sensorium_data.errors import DataFormatError
from sensorium_data.layout import SCORED_FROM_FRAME, TIERS
from sensorium_data.session import Session, Statistics, Trial, find_sessions
from sensorium_data.writer import SessionWriter

__all__ = [
    "SCORED_FROM_FRAME",
    "TIERS",
    "DataFormatError",
    "Session",
    "SessionWriter",
    "Statistics",
    "Trial",
    "find_sessions",
]
