"""``sensorium-train``: train a model on one or more session folders."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from sensorium_data import DataFormatError, find_sessions
from sensorium_train.cores import CoreConfig
from sensorium_train.train import TrainConfig, train


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sensorium-train``."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="sensorium-train", description=__doc__)
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="session folders, or folders holding session folders",
    )
    parser.add_argument("--out", required=True, help="folder for checkpoint.pt and training.json")
    parser.add_argument("--core", choices=["factorised3d", "convgru"], default="factorised3d")
    parser.add_argument(
        "--channels",
        default=",".join(str(c) for c in defaults.core.channels),
        help="channels of the core's blocks, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--stem-channels", type=int, default=defaults.core.stem_channels)
    parser.add_argument(
        "--no-stack",
        action="store_true",
        help="factorised core: read out the last block only, not every block's output",
    )
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument(
        "--frame-stride",
        type=int,
        default=defaults.frame_stride,
        help="loss on every n-th frame of a window (the core still sees every frame)",
    )
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=0.0,
        help="stop (keeping the best weights) after this many minutes",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda if present)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        sessions = [s for path in args.data for s in find_sessions(path)]
    except DataFormatError as err:
        print(f"sensorium-train: {err}", file=sys.stderr)
        return 2
    config = TrainConfig(
        steps=args.steps,
        batch=args.batch,
        window=args.window,
        lr=args.lr,
        frame_stride=args.frame_stride,
        eval_every=args.eval_every,
        patience=args.patience,
        seed=args.seed,
        device=device,
        time_limit_min=args.time_limit,
        core=CoreConfig(
            kind=args.core,
            stem_channels=args.stem_channels,
            channels=tuple(int(c) for c in args.channels.split(",")),
            stack=not args.no_stack,
        ),
    )
    checkpoint = train(sessions, config, Path(args.out), progress=not args.no_progress)
    oracle = checkpoint["metrics"]["oracle"]
    print(
        f"wrote {Path(args.out) / 'checkpoint.pt'} (best step {checkpoint['metrics']['best_step']})"
    )
    for metric, values in oracle.items():
        print(
            f"  oracle {metric:26s} pooled_neurons={values['pooled_neurons']:.4f} "
            f"mean_over_mice={values['mean_over_mice']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
