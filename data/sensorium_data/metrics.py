"""The Sensorium 2023 metrics, accumulated trial by trial in bounded memory.

All arrays are time first: a trial's responses and predictions are T x N. The
first ``skip_frames`` (50) frames of every trial are not scored.

- single-trial correlation: per neuron, Pearson correlation between prediction and
  response over the scored frames of all trials concatenated; NaN set to 0.
- correlation to average: group trials by clip, average responses and predictions
  over repeats, then correlate per neuron over the scored frames of all clips.
- FEVE: every scored frame of a clip shown at least twice is a condition; noise
  variance = mean over conditions of the variance across repeats (ddof 1); total
  variance = variance of those trials' responses (ddof 1, as in the 2022 reference
  code); FEV = 1 - noise/total; FEVE = 1 - (MSE - noise)/(total - noise); averaged
  over neurons with FEV >= 0.15.

Two aggregations, named in every result: ``pooled_neurons`` (mean over all neurons
of all mice) and ``mean_over_mice`` (mean per mouse, then mean over mice).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from sensorium_data.layout import SCORED_FROM_FRAME

POOLED: Final = "pooled_neurons"
MEAN_OVER_MICE: Final = "mean_over_mice"
FEV_THRESHOLD: Final = 0.15
METRICS: Final = ("single_trial_correlation", "correlation_to_average", "feve")


def _column_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column dot products of two T x N arrays, without a T x N temporary."""
    return np.einsum("tn,tn->n", a, b)


class Pearson:
    """Per-neuron Pearson correlation accumulated over batches of frames (Chan merge)."""

    def __init__(self, n_neurons: int) -> None:
        """Start empty for ``n_neurons`` neurons."""
        self.n = 0
        zeros = np.zeros(n_neurons, dtype=np.float64)
        self.mean_x, self.mean_y = zeros.copy(), zeros.copy()
        self.m2_x, self.m2_y, self.c_xy = zeros.copy(), zeros.copy(), zeros.copy()

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add frames ``x`` and ``y`` (each T x N)."""
        k = x.shape[0]
        if k == 0:
            return
        x = x.astype(np.float64)
        y = y.astype(np.float64)
        mx, my = x.mean(axis=0), y.mean(axis=0)
        dx, dy = x - mx, y - my
        total = self.n + k
        ex, ey = mx - self.mean_x, my - self.mean_y
        weight = self.n * k / total
        self.m2_x += _column_dot(dx, dx) + ex * ex * weight
        self.m2_y += _column_dot(dy, dy) + ey * ey * weight
        self.c_xy += _column_dot(dx, dy) + ex * ey * weight
        self.mean_x += ex * (k / total)
        self.mean_y += ey * (k / total)
        self.n = total

    def correlation(self) -> np.ndarray:
        """Per-neuron correlation (N,); neurons with zero variance (or no data) get 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = self.c_xy / np.sqrt(self.m2_x * self.m2_y)
        return np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class _Clip:
    """Running sums over the repeats of one clip (scored frames only)."""

    count: int
    mean_response: np.ndarray  # T x N, Welford mean across repeats
    m2_response: np.ndarray  # T x N, Welford M2 across repeats
    sum_prediction: np.ndarray  # T x N
    squared_error: np.ndarray  # (N,), summed over repeats and frames


@dataclass(frozen=True)
class MouseMetrics:
    """Per-neuron metrics of one mouse; arrays are (N,)."""

    single_trial_correlation: np.ndarray
    correlation_to_average: np.ndarray
    fev: np.ndarray
    feve: np.ndarray
    n_trials: int
    n_scored_frames: int
    n_clips: int
    n_repeated_clips: int

    def feve_neurons(self, threshold: float = FEV_THRESHOLD) -> np.ndarray:
        """FEVE of the neurons whose FEV reaches ``threshold``."""
        with np.errstate(invalid="ignore"):
            return self.feve[self.fev >= threshold]


class MouseScorer:
    """Accumulates the trials of one mouse and computes its metrics.

    Memory is bounded by the open clips, not the trials: three T x N arrays per
    clip. A caller that feeds trials clip by clip can :meth:`close_clip` each one
    when its repeats are all in, keeping one clip in memory at a time.
    """

    def __init__(self, n_neurons: int, skip_frames: int = SCORED_FROM_FRAME) -> None:
        """Score ``n_neurons`` neurons, skipping the first ``skip_frames`` of each trial."""
        self.n_neurons = n_neurons
        self.skip_frames = skip_frames
        self.single = Pearson(n_neurons)
        self.average = Pearson(n_neurons)
        self.clips: dict[str, _Clip] = {}
        self.closed: set[str] = set()
        self.n_trials = 0
        self.n_repeated_clips = 0
        zeros = np.zeros(n_neurons, dtype=np.float64)
        # FEVE terms over the clips shown at least twice.
        self._noise_sum, self._sse = zeros.copy(), zeros.copy()
        self._conditions = 0
        self._total_n, self._total_mean, self._total_m2 = 0, zeros.copy(), zeros.copy()

    def add(self, responses: np.ndarray, predictions: np.ndarray, clip_id: str) -> None:
        """Add one trial.

        Args:
            responses: Recorded responses over the trial's real length, T x N.
            predictions: Predictions for the same frames, T x N.
            clip_id: Identity of the clip shown; repeats share it.

        Raises:
            ValueError: shapes differ, N is wrong, values are not finite, a repeat
                of ``clip_id`` has another length, or the clip was closed.
        """
        if responses.shape != predictions.shape or responses.ndim != 2:
            raise ValueError(
                f"responses {responses.shape} and predictions {predictions.shape} "
                "must both be T x N"
            )
        if responses.shape[1] != self.n_neurons:
            raise ValueError(f"expected {self.n_neurons} neurons, got {responses.shape[1]}")
        if clip_id in self.closed:
            raise ValueError(f"clip {clip_id!r} was already closed; add its repeats first")
        resp = np.asarray(responses[self.skip_frames :], dtype=np.float64)
        pred = np.asarray(predictions[self.skip_frames :], dtype=np.float64)
        for name, array in (("responses", resp), ("predictions", pred)):
            if not np.isfinite(array).all():
                raise ValueError(f"{name} of clip {clip_id!r} hold NaN or infinite values")
        known = self.clips.get(clip_id)
        if known is not None and known.mean_response.shape != resp.shape:
            raise ValueError(
                f"repeats of clip {clip_id!r} differ in scored length: "
                f"{known.mean_response.shape[0]} and {resp.shape[0]} frames"
            )
        self.n_trials += 1
        self.single.update(pred, resp)
        self._add_to_clip(clip_id, resp, pred)

    def _add_to_clip(self, clip_id: str, resp: np.ndarray, pred: np.ndarray) -> None:
        error = pred - resp
        clip = self.clips.get(clip_id)
        if clip is None:
            self.clips[clip_id] = _Clip(
                count=1,
                mean_response=resp.copy(),
                m2_response=np.zeros_like(resp),
                sum_prediction=pred.copy(),
                squared_error=_column_dot(error, error),
            )
            return
        clip.count += 1
        delta = resp - clip.mean_response
        clip.mean_response += delta / clip.count
        clip.m2_response += delta * (resp - clip.mean_response)
        clip.sum_prediction += pred
        clip.squared_error += _column_dot(error, error)

    def close_clip(self, clip_id: str) -> None:
        """Fold a clip's repeats into the totals and free its arrays."""
        clip = self.clips.pop(clip_id)
        self.closed.add(clip_id)
        self.average.update(clip.sum_prediction / clip.count, clip.mean_response)
        frames = clip.mean_response.shape[0]
        if clip.count < 2 or frames == 0:
            return
        self.n_repeated_clips += 1
        self._noise_sum += (clip.m2_response / (clip.count - 1)).sum(axis=0)
        self._conditions += frames
        self._sse += clip.squared_error
        # Merge this clip's response moments into the total (Chan et al.).
        n = clip.count * frames
        mean = clip.mean_response.mean(axis=0)
        m2 = clip.m2_response.sum(axis=0)
        m2 += clip.count * ((clip.mean_response - mean) ** 2).sum(axis=0)
        total = self._total_n + n
        delta = mean - self._total_mean
        self._total_m2 += m2 + delta**2 * (self._total_n * n / total)
        self._total_mean += delta * (n / total)
        self._total_n = total

    def result(self) -> MouseMetrics:
        """Close every open clip and compute the metrics of all trials added."""
        for clip_id in list(self.clips):
            self.close_clip(clip_id)
        fev, feve = self._fev()
        return MouseMetrics(
            single_trial_correlation=self.single.correlation(),
            correlation_to_average=self.average.correlation(),
            fev=fev,
            feve=feve,
            n_trials=self.n_trials,
            n_scored_frames=self.single.n,
            n_clips=len(self.closed),
            n_repeated_clips=self.n_repeated_clips,
        )

    def _fev(self) -> tuple[np.ndarray, np.ndarray]:
        """FEV and FEVE per neuron over the clips shown at least twice (NaN if none)."""
        if self._conditions == 0:
            nan = np.full(self.n_neurons, np.nan)
            return nan, nan.copy()
        noise = self._noise_sum / self._conditions
        with np.errstate(divide="ignore", invalid="ignore"):
            total = self._total_m2 / (self._total_n - 1)
            mse = self._sse / self._total_n
            fev = 1.0 - noise / total
            feve = 1.0 - (mse - noise) / (total - noise)
        return np.asarray(fev), np.asarray(feve)


def score_mouse(
    trials: Iterable[tuple[np.ndarray, np.ndarray, str]],
    n_neurons: int,
    skip_frames: int = SCORED_FROM_FRAME,
) -> MouseMetrics:
    """Score an iterable of ``(responses, predictions, clip_id)`` trials of one mouse."""
    scorer = MouseScorer(n_neurons, skip_frames)
    for responses, predictions, clip_id in trials:
        scorer.add(responses, predictions, clip_id)
    return scorer.result()


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def aggregate(
    per_mouse: Mapping[str, MouseMetrics], fev_threshold: float = FEV_THRESHOLD
) -> dict[str, dict[str, Any]]:
    """Aggregate per-mouse metrics both ways, each figure named.

    Returns:
        ``{metric: {"pooled_neurons": float, "mean_over_mice": float,
        "per_mouse": {mouse: float}}}`` for each of ``METRICS``. FEVE counts only
        neurons with FEV >= ``fev_threshold``; NaN where no neuron qualifies.
    """
    out: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        values = {
            mouse: (m.feve_neurons(fev_threshold) if metric == "feve" else getattr(m, metric))
            for mouse, m in per_mouse.items()
        }
        means = {mouse: _mean(v) for mouse, v in values.items()}
        pooled = np.concatenate(list(values.values())) if values else np.empty(0)
        finite = [v for v in means.values() if not np.isnan(v)]
        out[metric] = {
            POOLED: _mean(pooled),
            MEAN_OVER_MICE: float(np.mean(finite)) if finite else float("nan"),
            "per_mouse": means,
        }
    return out
