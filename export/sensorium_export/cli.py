"""``sensorium-export``: export a checkpoint into a model repository, checked.

``sensorium-export onnx --help``: import ONNX graphs you already have (any model).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sensorium_data import DataFormatError, Session, find_sessions
from sensorium_export.graphs import READOUTS, ExportError
from sensorium_export.import_cli import import_main
from sensorium_export.recover import rebuild
from sensorium_export.repository import write_version
from sensorium_train.train import load_checkpoint


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sensorium-export``."""
    parser = argparse.ArgumentParser(prog="sensorium-export", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint.pt from sensorium-train")
    source.add_argument(
        "--from-version",
        metavar="FOLDER",
        help="re-export a version this exporter wrote (<repo>/<model>/<version>), without "
        "its checkpoint: the new graphs must match the old ones to 1e-5",
    )
    parser.add_argument("--repository", default="models", help="model repository root")
    parser.add_argument(
        "--readout",
        choices=READOUTS,
        default="tiled",
        help="graph form of the readout: tiled matrix products (fast; default) or grid "
        "sampling (the training form); both compute the same",
    )
    parser.add_argument("--name", default="sensorium", help="model name in the repository")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    parser.add_argument(
        "--data",
        nargs="*",
        help="session folders for parity on real inputs "
        "(default: the checkpoint's training data, where present)",
    )
    return parser


def _sessions(paths: list[str]) -> dict[str, Session]:
    found: dict[str, Session] = {}
    for path in paths:
        if isinstance(path, str) and Path(path).exists():  # a rebuilt version has no paths
            for session in find_sessions(path):
                found[session.name] = session
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["onnx"]:
        return import_main(argv[1:])
    args = build_parser().parse_args(argv)
    previous = Path(args.from_version) if args.from_version else None
    try:
        model, checkpoint = rebuild(previous) if previous else load_checkpoint(args.checkpoint)
        sessions = _sessions(args.data if args.data is not None else checkpoint["data"])
        target, results = write_version(
            model,
            checkpoint,
            Path(args.repository),
            args.name,
            sessions,
            args.version,
            previous,
            args.readout,
        )
    except (ExportError, DataFormatError, FileExistsError, FileNotFoundError) as err:
        print(f"sensorium-export: {err}", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    for result in results:
        print(f"  parity {result.check:22s} {result.inputs[:40]:40s} {result.error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
