"""Inference statistics per model version, as Triton's ModelStatistics reports them.

The data plane records every graph execution (queue and compute time, batch size)
and every request's outcome (success or failure, time from arrival to the
response), at the points where it also feeds the Prometheus histograms.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from sensorium_server.scheduler import Timing


@dataclass
class Duration:
    """How many, and their total nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        """One more, of ``seconds``."""
        self.count += 1
        self.ns += int(seconds * 1e9)


@dataclass
class VersionStatistics:
    """One model version's counts and durations since the server started."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute: Duration = field(default_factory=Duration)
    by_batch: dict[int, Duration] = field(default_factory=lambda: defaultdict(Duration))
    inferences: int = 0  # requests' batch items
    executions: int = 0  # graph runs
    last_inference_ms: int = 0


class Statistics:
    """Counters keyed by (model, version)."""

    def __init__(self) -> None:
        """Nothing recorded yet."""
        self.versions: dict[tuple[str, int], VersionStatistics] = defaultdict(VersionStatistics)

    def executed(self, model: str, version: int, timing: Timing, batch: int = 1) -> None:
        """One graph run of ``batch`` items."""
        entry = self.versions[(model, version)]
        entry.queue.add(timing.queue_s)
        entry.compute.add(timing.compute_s)
        entry.by_batch[batch].add(timing.compute_s)
        entry.executions += 1

    def finished(self, model: str, version: int, seconds: float, ok: bool, items: int = 1) -> None:
        """A request ended (``ok``: answered) after ``seconds``."""
        entry = self.versions[(model, version)]
        (entry.success if ok else entry.fail).add(seconds)
        if ok:
            entry.inferences += items
            entry.last_inference_ms = int(time.time() * 1e3)
