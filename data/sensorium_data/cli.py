"""``sensorium-data``: tools around the Sensorium 2023 layout (``client inspect`` reads it)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from sensorium_data.errors import DataFormatError
from sensorium_data.example import write_example_session
from sensorium_data.layout import TIERS
from sensorium_data.metrics import MouseScorer, aggregate

logger = logging.getLogger(__name__)


def _example(args: argparse.Namespace) -> int:
    session, rates = write_example_session(args.out, n_neurons=args.neurons, seed=args.seed)
    print(f"wrote {session.root}")
    print(json.dumps(session.summary(), indent=2))
    scorer = MouseScorer(session.n_neurons)
    for trial in session.trials(["oracle", "live_test_main"]):
        scorer.add(trial.response_frames(), rates[trial.index], trial.clip_id)
    figures = aggregate({session.name: scorer.result()})
    print("noise ceiling (ground-truth rate vs recorded responses, oracle + test trials):")
    for metric, values in figures.items():
        print(f"  {metric:26s} pooled_neurons={values['pooled_neurons']:.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sensorium-data``."""
    parser = argparse.ArgumentParser(prog="sensorium-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    example = sub.add_parser("example", help="write a tiny example session and score it")
    example.add_argument("out", help="folder to write the session into")
    example.add_argument("--neurons", type=int, default=40)
    example.add_argument("--seed", type=int, default=0)
    example.set_defaults(run=_example)
    parser.epilog = f"tiers: {', '.join(TIERS)}"
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except DataFormatError as err:
        print(f"sensorium-data: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
