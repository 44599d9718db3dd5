"""``sensorium-evaluate``: score a checkpoint on test tiers, against the noise ceiling.

For synthetic mice (a ``ground_truth/ceiling.json`` beside the data) every figure is
also given as a fraction of the ceiling, which is how the project states quality.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sensorium_data import Session, find_sessions
from sensorium_data.metrics import METRICS, aggregate
from sensorium_train.model import SensoriumModel
from sensorium_train.train import evaluate, load_checkpoint

DEFAULT_TIERS = ("final_test_main", "final_test_bonus", "oracle")


def _ceiling(session: Session) -> dict[str, Any]:
    path = session.root / "ground_truth" / "ceiling.json"
    return json.loads(path.read_text())["ceiling"] if path.is_file() else {}


def quality_report(
    model: SensoriumModel, sessions: list[Session], tiers: Sequence[str] = DEFAULT_TIERS
) -> dict[str, Any]:
    """Metrics per tier in both aggregations, plus fractions of the noise ceiling."""
    report: dict[str, Any] = {}
    for tier in tiers:
        per_mouse = {s.name: evaluate(model, s, tier) for s in sessions if s.name in model.specs}
        figures = aggregate(per_mouse)
        ceilings = [_ceiling(s).get(tier, {}) for s in sessions if s.name in model.specs]
        for metric in METRICS:
            values = [c[metric] for c in ceilings if metric in c]
            if values and len(values) == len(ceilings):
                ceiling = sum(values) / len(values)
                figures[metric]["ceiling"] = ceiling
                figures[metric]["fraction_of_ceiling"] = figures[metric]["mean_over_mice"] / ceiling
        report[tier] = figures
    return report


def format_report(report: dict[str, Any]) -> str:
    """A Markdown table of a quality report."""
    lines = [
        "| tier | metric | pooled_neurons | mean_over_mice | ceiling | fraction of ceiling |",
        "|---|---|---|---|---|---|",
    ]
    for tier, figures in report.items():
        for metric, row in figures.items():
            ceiling = row.get("ceiling")
            fraction = row.get("fraction_of_ceiling")
            lines.append(
                f"| {tier} | {metric} | {row['pooled_neurons']:.3f} | {row['mean_over_mice']:.3f}"
                f" | {'' if ceiling is None else f'{ceiling:.3f}'}"
                f" | {'' if fraction is None else f'{fraction:.0%}'} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = argparse.ArgumentParser(prog="sensorium-evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", nargs="+", required=True, help="session folders")
    parser.add_argument("--tiers", nargs="+", default=list(DEFAULT_TIERS))
    parser.add_argument("--json", help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    model, _ = load_checkpoint(args.checkpoint)
    sessions = [s for path in args.data for s in find_sessions(path)]
    report = quality_report(model, sessions, args.tiers)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
