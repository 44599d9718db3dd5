"""``sensorium-export onnx``: import ONNX graphs a user already has into a model repository."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sensorium_export.graphs import ExportError
from sensorium_export.onnx_import import import_onnx


def build_import_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sensorium-export onnx``."""
    parser = argparse.ArgumentParser(
        prog="sensorium-export onnx",
        description="Check ONNX graphs against the served contract and the declared temporal "
        "properties, and write them as a model version the server loads.",
    )
    parser.add_argument(
        "--clip",
        required=True,
        help="whole-clip graph (video, behavior, pupil_center -> responses)",
    )
    parser.add_argument("--step", help="streaming step graph with state_<i> inputs (optional)")
    parser.add_argument("--mouse", required=True, help="session name of the mouse")
    parser.add_argument(
        "--neuron-ids",
        required=True,
        metavar="FILE",
        help="unit ids of the responses in order: .npy, or text with one id per line",
    )
    parser.add_argument("--causal", action="store_true", help="declare the model causal (checked)")
    parser.add_argument(
        "--window-frames",
        type=int,
        metavar="W",
        help="declare that the last W frames determine a response (checked): streams run by window",
    )
    parser.add_argument(
        "--latency-frames",
        type=int,
        metavar="L",
        help="a model that is not causal: the response at t needs no frame after t + L (checked)",
    )
    parser.add_argument("--behavior-mean", type=float, nargs=2, metavar=("DILATION", "SPEED"))
    parser.add_argument("--pupil-center-mean", type=float, nargs=2, metavar=("X", "Y"))
    parser.add_argument(
        "--frame-shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="frame size where the graph leaves it dynamic (default 36 64)",
    )
    parser.add_argument("--architecture", default="imported", help="recorded in the manifest")
    parser.add_argument("--burn-in-frames", type=int, default=50)
    parser.add_argument("--repository", default="models", help="model repository root")
    parser.add_argument("--name", required=True, help="model name in the repository")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    return parser


def read_neuron_ids(path: Path) -> list[int]:
    """Neuron ids from .npy or text (one per line, or comma separated)."""
    if path.suffix == ".npy":
        ids = np.load(path, allow_pickle=False).ravel()
    else:
        text = path.read_text().replace(",", "\n")
        try:
            ids = np.array([int(line) for line in text.split() if line.strip()])
        except ValueError as err:
            raise ExportError(f"{path}: expected integer neuron ids ({err})") from None
    if ids.size == 0 or ids.dtype.kind not in "iu":
        raise ExportError(f"{path}: expected a non-empty list of integer neuron ids")
    return [int(i) for i in ids]


def import_main(argv: Sequence[str]) -> int:
    """Run ``sensorium-export onnx``; returns the exit status."""
    args = build_import_parser().parse_args(argv)
    defaults = {
        key: value
        for key, value in (
            ("behavior", args.behavior_mean),
            ("pupil_center", args.pupil_center_mean),
        )
        if value
    }
    try:
        target, results = import_onnx(
            Path(args.clip),
            Path(args.repository),
            args.name,
            args.mouse,
            read_neuron_ids(Path(args.neuron_ids)),
            step=Path(args.step) if args.step else None,
            causal=args.causal,
            window_frames=args.window_frames,
            latency_frames=args.latency_frames,
            input_defaults=defaults,
            frame_shape=tuple(args.frame_shape) if args.frame_shape else None,
            version=args.version,
            architecture=args.architecture,
            burn_in_frames=args.burn_in_frames,
        )
    except (ExportError, FileExistsError, FileNotFoundError, OSError) as err:
        print(f"sensorium-export onnx: {err}", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    for result in results:
        print(f"  check {result.check:48s} {result.error:.2e}")
    return 0
