"""The report: every figure in ``report.json``, a readable ``report.md``."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sensorium_client.messages import ModelInfo
from sensorium_client.scoring.results import MouseResult
from sensorium_data import Session
from sensorium_data.metrics import MouseMetrics, aggregate

METRIC_NAMES = {
    "single_trial_correlation": "single-trial correlation",
    "correlation_to_average": "correlation to average",
    "feve": "FEVE",
}
GROUP_ORDER = (
    "track:main",
    "live_test_main",
    "final_test_main",
    "track:bonus",
    "live_test_bonus",
    "final_test_bonus",
    "oracle",
)


def _ceilings(sessions: list[Session]) -> dict[str, dict[str, dict[str, float]]]:
    """``{mouse: {group: {metric: value}}}`` from each ``ground_truth/ceiling.json``."""
    out = {}
    for session in sessions:
        file = session.root / "ground_truth" / "ceiling.json"
        if file.is_file():
            out[session.name] = json.loads(file.read_text())["ceiling"]
    return out


def _ordered(groups: set[str]) -> list[str]:
    known = [g for g in GROUP_ORDER if g in groups]
    return known + sorted(groups - set(known))


def build_report(
    results: list[MouseResult], sessions: list[Session], info: ModelInfo, server: str
) -> dict[str, Any]:
    """Aggregate per-mouse metrics per group, both ways, with ceilings where known."""
    groups = _ordered({g for r in results for g in r.metrics})
    ceilings = _ceilings(sessions)
    figures: dict[str, Any] = {}
    for group in groups:
        per_mouse: dict[str, MouseMetrics] = {
            r.mouse: r.metrics[group] for r in results if group in r.metrics
        }
        entry: dict[str, Any] = {
            "metrics": aggregate(per_mouse),
            "trials": sum(m.n_trials for m in per_mouse.values()),
        }
        # A ceiling counts only where it covers the trials scored: a track's ceiling spans
        # live and final, so a --tier final run must not be compared with it.
        known = [
            ceilings[m][group]
            for m, metrics in per_mouse.items()
            if group in ceilings.get(m, {})
            and ceilings[m][group].get("trials", metrics.n_trials) == metrics.n_trials
        ]
        if len(known) == len(per_mouse) and known:
            ceiling = {k: sum(c[k] for c in known) / len(known) for k in METRIC_NAMES}
            entry["noise_ceiling_mean_over_mice"] = ceiling
            # A fraction of a ceiling at or below 0 (FEVE of tiny samples) means nothing.
            entry["fraction_of_ceiling"] = {
                k: entry["metrics"][k]["mean_over_mice"] / ceiling[k]
                for k in METRIC_NAMES
                if ceiling[k] > 0
            }
        figures[group] = entry
    return {
        "model": {
            "name": info.name,
            "version": info.version,
            "manifest_sha256": info.manifest_sha256,
            "architecture": info.architecture,
        },
        "server": server,
        "datasets": [str(s.root.resolve()) for s in sessions],
        "mice": [r.mouse for r in results],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "aggregation": {
            "pooled_neurons": "mean over every neuron of every mouse",
            "mean_over_mice": "mean over mice of each mouse's mean over its neurons",
        },
        "groups": figures,
        "withheld": sorted({tier for r in results for tier in r.withheld}),
    }


def _fmt(value: float) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.3f}"
    )


def markdown(report: dict[str, Any]) -> str:
    """``report.md``: one table row per group and metric."""
    model = report["model"]
    lines = [
        f"# Scores of {model['name']} v{model['version']}",
        "",
        f"Server `{report['server']}`, {report['date']}; mice: {', '.join(report['mice'])}.",
        f"Manifest SHA-256 `{model['manifest_sha256']}`.",
        "",
        "| group | trials | metric | pooled neurons | mean over mice | noise ceiling | fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, entry in report["groups"].items():
        for key, name in METRIC_NAMES.items():
            m = entry["metrics"][key]
            ceiling = entry.get("noise_ceiling_mean_over_mice", {}).get(key)
            fraction = entry.get("fraction_of_ceiling", {}).get(key)
            lines.append(
                f"| {group} | {entry['trials']} | {name} | {_fmt(m['pooled_neurons'])} | "
                f"{_fmt(m['mean_over_mice'])} | {_fmt(ceiling)} | "
                f"{'n/a' if fraction is None else f'{100 * fraction:.0f}%'} |"
            )
    if report.get("withheld"):
        lines += [
            "",
            f"**Not scored: {', '.join(report['withheld'])}**: their responses are withheld "
            "in this release (every trial's responses are one constant, the release's dummy "
            "zeros). Their submission files are written; the competition scores them.",
        ]
    lines += [
        "",
        "The first 50 frames of every trial are not scored. FEVE counts neurons "
        "with FEV >= 0.15. Noise ceilings come from the dataset's `ground_truth/` "
        "(synthetic mice only).",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write ``report.json`` and ``report.md``."""
    (out / "report.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))


def _clean(value: Any) -> Any:
    """NaN (a metric with no qualifying neuron) as null: strict JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
