"""``sensorium-synth``: write synthetic mice in the Sensorium 2023 layout."""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from collections.abc import Sequence

from sensorium_data.synth.ceiling import format_ceiling, format_stimulus_statistics
from sensorium_data.synth.generate import generate_session
from sensorium_data.synth.plan import SynthConfig


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sensorium-synth``."""
    parser = argparse.ArgumentParser(
        prog="sensorium-synth",
        description="Write synthetic mice (Sensorium 2023 layout) with known ground truth.",
    )
    parser.add_argument("--out", required=True, help="folder to write session folders into")
    parser.add_argument(
        "--small",
        action="store_true",
        help="test preset: 200 neurons, 40 trials of up to 150 frames",
    )
    parser.add_argument("--neurons", type=int, help="neurons per mouse (default 8000)")
    parser.add_argument("--trials", type=int, help="trials per mouse (default 700)")
    parser.add_argument("--mice", type=int, default=1, help="number of mice (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--max-frames", type=int, help="frames of a full trial (default 300)")
    parser.add_argument("--repeats", type=int, help="repeats per test clip (default 10)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sessions")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The generation settings the flags ask for."""
    overrides = {
        key: value
        for key, value in {
            "neurons": args.neurons,
            "trials": args.trials,
            "mice": args.mice,
            "seed": args.seed,
            "max_frames": args.max_frames,
            "repeats": args.repeats,
        }.items()
        if value is not None
    }
    return SynthConfig.small(**overrides) if args.small else SynthConfig(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    start = time.perf_counter()
    for mouse in range(config.mice):
        try:
            session, ceiling = generate_session(
                config, mouse, args.out, progress=not args.no_progress, overwrite=args.overwrite
            )
        except FileExistsError as err:
            print(
                f"sensorium-synth: {err.filename} exists; add --overwrite to replace it",
                file=sys.stderr,
            )
            return 2
        print(f"wrote {session.root} ({session.n_trials} trials, {session.n_neurons} neurons)")
        print(format_ceiling(ceiling))
        print(format_stimulus_statistics(ceiling["stimulus_statistics"]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"done in {time.perf_counter() - start:.1f} s, peak memory {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
