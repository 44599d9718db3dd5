"""Predict every trial of the chosen tiers through the service; score and write parts.

Per mouse, trials are predicted concurrently (a bounded number in flight), written to
submission parts as they finish, and scored with :mod:`sensorium_data.metrics`,
clip by clip so that memory holds one clip's sums, not a mouse's predictions. A
mouse's results land atomically in ``OUTDIR/mice/``; ``--resume`` skips those.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sensorium_client.messages import ModelInfo
from sensorium_client.scoring.results import MouseResult, TraceSample
from sensorium_client.scoring.submission import PartWriter
from sensorium_client.scoring.tracks import Job
from sensorium_client.sdk import Client
from sensorium_data import Session, Trial
from sensorium_data.metrics import MouseScorer

logger = logging.getLogger(__name__)


@dataclass
class _Groups:
    """One scorer per group a trial counts in: its tier, its track, its stimulus type."""

    n_neurons: int
    scorers: dict[str, MouseScorer] = field(default_factory=dict)

    def add(
        self, names: list[str], responses: np.ndarray, predictions: np.ndarray, clip: str
    ) -> None:
        for name in names:
            if name not in self.scorers:
                self.scorers[name] = MouseScorer(self.n_neurons)
            self.scorers[name].add(responses, predictions, clip)

    def close_clip(self, names: list[str], clip: str) -> None:
        for name in names:
            if name in self.scorers and clip in self.scorers[name].clips:
                self.scorers[name].close_clip(clip)


def group_names(job: Job, trial: Trial) -> list[str]:
    """The metric groups of a trial (names as the synthetic mouse's ceiling uses them)."""
    names = [job.tier]
    if job.track != "oracle":
        names.append(f"track:{job.track}")
    if job.track == "bonus" and trial.stimulus_type:
        names.append(f"bonus:{trial.stimulus_type}")
    return names


def in_clip_order(session: Session, job: Job) -> list[Trial]:
    """The trials of a job grouped by clip (repeats together), then by index."""
    trials = list(session.trials(job.tier))
    return sorted(trials, key=lambda t: (t.clip_id, t.index))


def predictions_of(
    client: Client, info: ModelInfo, mouse: str, trials: list[Trial], workers: int
) -> Iterator[tuple[Trial, np.ndarray]]:
    """(trial, predictions T x N) in order, with at most ``2 * workers`` in flight."""

    def predict(trial: Trial) -> np.ndarray:
        return client.predict(
            trial.video_frames(),
            trial.behavior_frames(),
            trial.pupil_center_frames(),
            mouse=mouse,
            model=info.name,
            version=info.version,
        )

    pending: deque[tuple[Trial, Future[np.ndarray]]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="score") as pool:
        for trial in trials:
            pending.append((trial, pool.submit(predict, trial)))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def score_session(
    client: Client,
    info: ModelInfo,
    session: Session,
    jobs: list[Job],
    parts: Path,
    workers: int,
    bar: tqdm,
    frames: str = "stored",
) -> MouseResult:
    """Predict, write and score every trial of ``jobs`` for one mouse.

    ``frames``: "stored" writes each trial's stored length (NaN past its real length,
    as the starter kit does), "real" its real length.
    """
    mouse = info.mouse(session.name).mouse
    groups = _Groups(session.n_neurons)
    counts: dict[str, int] = {}
    sample: TraceSample | None = None
    withheld: list[str] = []
    for job in jobs:
        trials = in_clip_order(session, job)
        counts[job.tier] = len(trials)
        if not trials:
            continue
        scored = not withheld_responses(trials)
        if not scored:
            withheld.append(job.tier)
            logger.warning(
                "%s: the responses of %s are withheld in this release (constant in every "
                "trial); predictions are written, not scored",
                session.name,
                job.tier,
            )
        writer = (
            PartWriter(parts / job.tier / f"{mouse}.parquet", mouse, session.unit_ids)
            if job.submitted
            else None
        )
        try:
            previous: tuple[list[str], str] | None = None
            for trial, predictions in predictions_of(client, info, mouse, trials, workers):
                if writer is not None:
                    writer.add(
                        trial.index, predictions, trial.n_frames if frames == "stored" else None
                    )
                if scored and trial.has_responses:
                    names = group_names(job, trial)
                    if previous is not None and previous[1] != trial.clip_id:
                        groups.close_clip(*previous)
                    responses = trial.response_frames()
                    groups.add(names, responses, predictions, trial.clip_id)
                    previous = (names, trial.clip_id)
                    if sample is None:
                        sample = TraceSample(job.tier, trial.index, responses, predictions)
                bar.update(1)
            if previous is not None:
                groups.close_clip(*previous)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()
    metrics = {name: scorer.result() for name, scorer in groups.scorers.items()}
    traces = sample.reduce(metrics) if sample else None
    return MouseResult(mouse, counts, metrics, traces, tuple(withheld))


def withheld_responses(trials: list[Trial]) -> bool:
    """Whether a tier's responses are withheld: every recorded trial constant (dummy zeros).

    The real release ships the test tiers' responses as zeros; scoring them would
    report 0.000 as if it were a result. Reads trials until one varies (the first,
    for recorded data).
    """
    recorded = [t for t in trials if t.has_responses]
    return bool(recorded) and all(t.responses_constant for t in recorded)


def count_trials(sessions: list[Session], jobs: list[Job]) -> int:
    """Trials to predict, for the progress bar."""
    return sum(len(s.trial_indices(j.tier)) for s in sessions for j in jobs)


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict."""
    return dict(json.loads(path.read_text()))
