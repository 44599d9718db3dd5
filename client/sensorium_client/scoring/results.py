"""Per-mouse results: per-neuron metrics by group and a few traces, saved atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensorium_data.metrics import MouseMetrics

ARRAYS = ("single_trial_correlation", "correlation_to_average", "fev", "feve")
COUNTS = ("n_trials", "n_scored_frames", "n_clips", "n_repeated_clips")


@dataclass(frozen=True)
class TraceSample:
    """Recorded and predicted traces (T x k) of k neurons of one trial."""

    tier: str
    trial: int
    responses: np.ndarray
    predictions: np.ndarray
    neurons: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()

    def reduce(self, metrics: dict[str, MouseMetrics]) -> TraceSample:
        """Keep the best, median and worst neuron of the trial's tier."""
        correlation = np.nan_to_num(metrics[self.tier].single_trial_correlation, nan=-1.0)
        order = np.argsort(correlation)
        chosen = (int(order[-1]), int(order[len(order) // 2]), int(order[0]))
        return TraceSample(
            self.tier,
            self.trial,
            self.responses[:, chosen],
            self.predictions[:, chosen],
            chosen,
            ("best", "median", "worst"),
        )


@dataclass(frozen=True)
class MouseResult:
    """Everything scored for one mouse."""

    mouse: str
    trials: dict[str, int]
    metrics: dict[str, MouseMetrics]
    traces: TraceSample | None
    withheld: tuple[str, ...] = ()  # tiers whose responses are dummy values: not scored

    def save(self, folder: Path) -> None:
        """Write ``<mouse>.npz`` then ``<mouse>.json`` (the marker ``--resume`` looks for)."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for group, m in self.metrics.items():
            for name in ARRAYS:
                arrays[f"{group}|{name}"] = getattr(m, name)
        meta = {
            "mouse": self.mouse,
            "trials": self.trials,
            "counts": {g: {c: getattr(m, c) for c in COUNTS} for g, m in self.metrics.items()},
            "withheld": list(self.withheld),
        }
        if self.traces is not None:
            t = self.traces
            arrays["traces|responses"], arrays["traces|predictions"] = t.responses, t.predictions
            meta["traces"] = {
                "tier": t.tier,
                "trial": t.trial,
                "neurons": list(t.neurons),
                "labels": list(t.labels),
            }
        tmp = folder / f"{self.mouse}.tmp.npz"
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(folder / f"{self.mouse}.npz")
        (folder / f"{self.mouse}.json.tmp").write_text(json.dumps(meta, indent=1))
        (folder / f"{self.mouse}.json.tmp").replace(folder / f"{self.mouse}.json")

    @classmethod
    def load(cls, folder: Path, mouse: str) -> MouseResult:
        """Read what :meth:`save` wrote."""
        meta = json.loads((folder / f"{mouse}.json").read_text())
        with np.load(folder / f"{mouse}.npz") as archive:
            arrays = {k: archive[k] for k in archive.files}
        metrics = {}
        for group, counts in meta["counts"].items():
            values = {name: arrays[f"{group}|{name}"] for name in ARRAYS}
            metrics[group] = MouseMetrics(**values, **counts)
        traces = None
        if "traces" in meta:
            t = meta["traces"]
            traces = TraceSample(
                t["tier"],
                t["trial"],
                arrays["traces|responses"],
                arrays["traces|predictions"],
                tuple(t["neurons"]),
                tuple(t["labels"]),
            )
        return cls(mouse, meta["trials"], metrics, traces, tuple(meta.get("withheld", [])))
