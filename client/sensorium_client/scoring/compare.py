"""``client score --compare A B``: two served models on the same trials, neuron by neuron.

For each track (and the oracle tier), both models predict every trial; per trial and
neuron the sums that make a Pearson correlation over the scored frames (frames from
50 on) are kept, for each model. The single-trial correlation per neuron is then
exact (the same pooled-over-trials correlation ``client score`` reports), and the
paired difference B - A per neuron is summarised by its mean over neurons, a
bootstrap 95 % interval that resamples trials (per mouse, the same trials for both
models: a paired design) and neurons, and the fraction of neurons B improves. A
scatter plot shows A against B per neuron.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sensorium_client.messages import ModelInfo
from sensorium_client.scoring.runner import in_clip_order, predictions_of
from sensorium_client.scoring.tracks import Job
from sensorium_client.sdk import Client
from sensorium_data import SCORED_FROM_FRAME, Session

SUMS = ("n", "p", "pp", "r", "rr", "pr")  # per neuron: frames, sums of p, p^2, r, r^2, p*r


def trial_sums(responses: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """(6, N) sums over one trial's scored frames (see ``SUMS``)."""
    r = responses[SCORED_FROM_FRAME:].astype(np.float64)
    p = predictions[SCORED_FROM_FRAME:].astype(np.float64)
    n = np.full(r.shape[1], float(r.shape[0]))
    return np.stack([n, p.sum(0), (p * p).sum(0), r.sum(0), (r * r).sum(0), (p * r).sum(0)])


def correlation(sums: np.ndarray) -> np.ndarray:
    """Per-neuron Pearson correlation from summed ``SUMS`` (..., 6, N); 0 where undefined."""
    n, p, pp, r, rr, pr = (sums[..., i, :] for i in range(len(SUMS)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = pr / n - (p / n) * (r / n)
        var = (pp / n - (p / n) ** 2) * (rr / n - (r / n) ** 2)
        value = cov / np.sqrt(var)
    return np.nan_to_num(value, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class Paired:
    """Per-trial sums of one mouse and group, for model A and model B (trials aligned)."""

    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)


def _group(job: Job) -> str:
    return job.tier if job.track == "oracle" else f"track:{job.track}"


def collect(
    client: Client,
    models: tuple[ModelInfo, ModelInfo],
    sessions: list[Session],
    jobs: list[Job],
    workers: int,
    bar: tqdm,
) -> dict[str, dict[str, Paired]]:
    """``{group: {mouse: Paired}}`` over the recorded trials of ``jobs``."""
    out: dict[str, dict[str, Paired]] = {}
    for session in sessions:
        for job in jobs:
            trials = [t for t in in_clip_order(session, job) if t.has_responses]
            if not trials:
                continue
            paired = out.setdefault(_group(job), {}).setdefault(session.name, Paired())
            for info, sink in ((models[0], paired.a), (models[1], paired.b)):
                mouse = info.mouse(session.name).mouse
                for trial, predictions in predictions_of(client, info, mouse, trials, workers):
                    sink.append(trial_sums(trial.response_frames(), predictions))
                    bar.update(1)
    return out


def summarise(per_mouse: dict[str, Paired], rounds: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean paired difference B - A over neurons, its bootstrap 95 % interval, and more."""
    rng = np.random.default_rng(seed)
    stacks = {m: (np.stack(p.a), np.stack(p.b)) for m, p in per_mouse.items()}  # T x 6 x N
    corr_a = np.concatenate([correlation(a.sum(0)) for a, _ in stacks.values()])
    corr_b = np.concatenate([correlation(b.sum(0)) for _, b in stacks.values()])
    difference = corr_b - corr_a
    samples = np.empty(rounds)
    for i in range(rounds):
        parts = []
        for a, b in stacks.values():
            weights = rng.multinomial(a.shape[0], np.full(a.shape[0], 1 / a.shape[0]))
            parts.append(
                correlation(np.tensordot(weights, b, axes=1))
                - correlation(np.tensordot(weights, a, axes=1))
            )
        pooled = np.concatenate(parts)
        samples[i] = pooled[rng.integers(0, pooled.size, pooled.size)].mean()
    low, high = np.percentile(samples, [2.5, 97.5])
    return {
        "trials": int(sum(a.shape[0] for a, _ in stacks.values())),
        "neurons": int(difference.size),
        "single_trial_correlation_a": float(corr_a.mean()),
        "single_trial_correlation_b": float(corr_b.mean()),
        "difference_b_minus_a": float(difference.mean()),
        "ci95": [float(low), float(high)],
        "fraction_improved": float((difference > 0).mean()),
        "bootstrap_rounds": rounds,
        "per_neuron": {"a": corr_a, "b": corr_b},
    }


def label(info: ModelInfo) -> str:
    """``name v<version>``."""
    return f"{info.name} v{info.version}"


def write_comparison(
    out: Path, models: tuple[ModelInfo, ModelInfo], groups: dict[str, dict[str, Any]]
) -> list[str]:
    """``compare.json``, ``compare.md`` and one scatter plot per group; returns the lines."""
    out.mkdir(parents=True, exist_ok=True)
    a, b = label(models[0]), label(models[1])
    lines = [
        f"# {b} against {a}: paired single-trial correlation per neuron",
        "",
        "| group | trials | neurons | A | B | B - A | 95 % interval | improved |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group, s in groups.items():
        lines.append(
            f"| {group} | {s['trials']} | {s['neurons']} | {s['single_trial_correlation_a']:.4f} "
            f"| {s['single_trial_correlation_b']:.4f} | {s['difference_b_minus_a']:+.4f} "
            f"| [{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}] | {100 * s['fraction_improved']:.1f} % |"
        )
    lines += [
        "",
        f"A = {a}, B = {b}. The interval resamples trials (per mouse, the same for A and B) "
        "and neurons; an interval that excludes 0 says the difference holds beyond these "
        "trials and neurons.",
        "",
    ]
    (out / "compare.md").write_text("\n".join(lines))
    plain = {g: {k: v for k, v in s.items() if k != "per_neuron"} for g, s in groups.items()}
    (out / "compare.json").write_text(
        json.dumps({"a": a, "b": b, "groups": plain}, indent=2) + "\n"
    )
    _scatter(out, a, b, groups)
    return lines


def _scatter(out: Path, a: str, b: str, groups: dict[str, dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the score extra is optional: no plot then
        return
    for group, s in groups.items():
        x, y = s["per_neuron"]["a"], s["per_neuron"]["b"]
        figure, axis = plt.subplots(figsize=(4.5, 4.5))
        axis.scatter(x, y, s=3, alpha=0.4)
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        axis.plot([low, high], [low, high], color="black", linewidth=0.8)
        axis.set_xlabel(f"A: {a}")
        axis.set_ylabel(f"B: {b}")
        axis.set_title(
            f"{group}: single-trial correlation per neuron\n"
            f"B - A {s['difference_b_minus_a']:+.4f}, {100 * s['fraction_improved']:.0f} % improved"
        )
        figure.tight_layout()
        figure.savefig(out / f"compare_{group.replace(':', '_')}.png", dpi=110)
        plt.close(figure)
