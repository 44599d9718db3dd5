"""PNG plots a modeller looks at first (matplotlib, the ``score`` extra)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sensorium_client.scoring.results import MouseResult, TraceSample

logger = logging.getLogger(__name__)


def write_plots(
    results: list[MouseResult],
    report: dict[str, Any],
    out: Path,
    neuron_ids: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """Correlation histograms per track, best/median/worst traces, bonus by stimulus.

    Every figure names the model and version; traces name neurons by their unit id.
    Returns the files written (none, with a warning, when matplotlib is missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning(
            "matplotlib is not installed (pip install 'sensorium-serve[score]'): no plots"
        )
        return []
    model = f"{report['model']['name']} v{report['model']['version']}"
    written = [_histograms(plt, results, out, model)]
    for result in results:
        if result.traces is not None:
            ids = (neuron_ids or {}).get(result.mouse)
            written.append(_traces(plt, result, result.traces, out, model, ids))
            break
    bonus = {g[len("bonus:") :]: e for g, e in report["groups"].items() if g.startswith("bonus:")}
    if bonus:
        written.append(_bonus(plt, bonus, results, out, model))
    return written


def _histograms(plt: Any, results: list[MouseResult], out: Path, model: str) -> Path:
    groups = [
        g for g in ("track:main", "track:bonus", "oracle") if any(g in r.metrics for r in results)
    ]
    fig, axes = plt.subplots(
        1, max(len(groups), 1), figsize=(4.5 * max(len(groups), 1), 3.5), squeeze=False
    )
    for ax, group in zip(axes[0], groups, strict=False):
        values = np.concatenate(
            [r.metrics[group].single_trial_correlation for r in results if group in r.metrics]
        )
        ax.hist(values, bins=50, range=(-0.2, 1.0), color="tab:blue")
        ax.axvline(float(np.mean(values)), color="k", ls="--", label=f"mean {np.mean(values):.3f}")
        ax.set(
            title=f"{group}: {values.size} neurons",
            xlabel="single-trial correlation",
            ylabel="neurons",
        )
        ax.legend()
    fig.suptitle(model)
    fig.tight_layout()
    path = out / "correlation_histograms.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _traces(
    plt: Any,
    result: MouseResult,
    t: TraceSample,
    out: Path,
    model: str,
    ids: np.ndarray | None,
) -> Path:
    mouse = result.mouse
    correlation = result.metrics[t.tier].single_trial_correlation
    fig, axes = plt.subplots(len(t.labels), 1, figsize=(9, 2.2 * len(t.labels)), sharex=True)
    frames = np.arange(t.responses.shape[0])
    for i, (ax, label) in enumerate(zip(np.atleast_1d(axes), t.labels, strict=True)):
        ax.plot(frames, t.responses[:, i], color="0.5", lw=1, label="recorded")
        ax.plot(frames, t.predictions[:, i], color="tab:red", lw=1.2, label="predicted")
        ax.axvspan(0, 50, color="0.9", label="not scored")
        column = t.neurons[i]
        name = f"neuron {int(ids[column])}" if ids is not None else f"neuron (column {column})"
        ax.set(
            title=f"{label}: {name}, single-trial correlation {correlation[column]:.3f}",
            ylabel="activity",
        )
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel(f"frame of {t.tier} trial {t.trial} ({mouse})")
    fig.suptitle(
        f"{model}: best, median and worst of {correlation.size} neurons by single-trial "
        f"correlation over {t.tier}",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / f"traces_{mouse}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bonus(
    plt: Any, bonus: dict[str, Any], results: list[MouseResult], out: Path, model: str
) -> Path:
    names = sorted(bonus)
    scores = [bonus[n]["metrics"]["single_trial_correlation"]["mean_over_mice"] for n in names]
    errors = []  # standard error of the mean over neurons (all mice)
    for n in names:
        values = np.concatenate(
            [
                r.metrics[f"bonus:{n}"].single_trial_correlation
                for r in results
                if f"bonus:{n}" in r.metrics
            ]
        )
        errors.append(float(np.std(values) / np.sqrt(max(values.size, 1))))
    labels = [f"{n}\n{bonus[n]['trials']} trials" for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(labels, scores, yerr=errors, capsize=4, color="tab:green", label="model (+- s.e.m.)")
    ceilings = [
        bonus[n].get("noise_ceiling_mean_over_mice", {}).get("single_trial_correlation")
        for n in names
    ]
    if all(c is not None for c in ceilings):
        ax.scatter(labels, ceilings, color="k", marker="_", s=400, label="noise ceiling")
    ax.set(ylabel="single-trial correlation", title=f"{model}: bonus track by stimulus type")
    ax.tick_params(axis="x", rotation=20)
    ax.legend()
    fig.tight_layout()
    path = out / "bonus_by_stimulus.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
