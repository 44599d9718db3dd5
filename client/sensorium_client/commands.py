"""The ``client`` subcommands that talk to a server: models, predict, stream, health."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from sensorium_client.errors import InvalidArgumentError, UnavailableError
from sensorium_client.health import check
from sensorium_client.inputs import normalize_trial
from sensorium_client.messages import ModelInfo
from sensorium_client.sdk import Client


def connect(args: argparse.Namespace) -> Client:
    """A client with the common flags: server, timeout, token, TLS."""
    settings: dict[str, Any] = {"timeout": args.timeout, "token": getattr(args, "token", None)}
    ca = getattr(args, "ca", None)
    if ca or getattr(args, "tls", False):
        settings["tls"] = True
        if ca:
            try:
                settings["root_certificates"] = Path(ca).read_bytes()
            except OSError as err:
                raise InvalidArgumentError(f"--ca {ca}: cannot read it ({err})") from None
    return Client(args.server, **settings)


def _say(args: argparse.Namespace, notes: list[str]) -> None:
    """What was detected or filled in, once, on stderr (stdout stays the result)."""
    for note in notes:
        print(f"client: {note}", file=sys.stderr)


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> None:
    print(json.dumps(data) if args.json else "\n".join(lines))


def models(args: argparse.Namespace) -> int:
    """List the served models and their mice."""
    with connect(args) as client:
        served = client.models()
    data = {
        "models": [
            {
                "name": m.name,
                "version": m.version,
                "architecture": m.architecture,
                "frame_shape": list(m.frame_shape),
                "mice": {x.mouse: x.neuron_count for x in m.mice},
                **(
                    {"neuron_ids": {x.mouse: list(x.neuron_ids) for x in m.mice}}
                    if args.neuron_ids
                    else {}
                ),
                "manifest_sha256": m.manifest_sha256,
                "streaming": {
                    "mode": m.streaming_mode,
                    "window_frames": m.window_frames,
                    "latency_frames": m.latency_frames,
                },
            }
            for m in served
        ]
    }
    lines = [
        f"{m.name} v{m.version} ({m.architecture}, frames {m.frame_shape[0]}x{m.frame_shape[1]}, "
        f"{_streams(m)})"
        + "".join(
            f"\n  {x.mouse}: {x.neuron_count} neurons"
            + (f"\n    ids: {' '.join(map(str, x.neuron_ids))}" if args.neuron_ids else "")
            for x in m.mice
        )
        for m in served
    ]
    if not args.neuron_ids and not args.json:
        lines.append("(neuron ids: client models --neuron-ids)")
    _emit(args, data, lines)
    return 0


def _streams(model: ModelInfo) -> str:
    """How a model streams, in words."""
    if model.streaming_mode == "none":
        return "clip only: does not stream"
    if model.streaming_mode == "window":
        late = f", answers {model.latency_frames} frames late" if model.latency_frames else ""
        return f"streams by window of {model.window_frames} frames{late}"
    return "streams with state"


def _load(path: str, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InvalidArgumentError(f"--{name} {path}: cannot read a .npy array ({err})") from None


def load_trial(
    args: argparse.Namespace, info: ModelInfo
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Video, behaviour and pupil centre from the files the arguments name, time first.

    Missing behaviour or pupil centre is filled with the model's training mean (said
    in the notes) unless ``--require-behavior``. Returns the arrays and the notes.
    """
    mouse = info.mouse(args.mouse)
    behavior, pupil = (
        None if getattr(args, name) is None else _load(getattr(args, name), flag)
        for name, flag in (("behavior", "behavior"), ("pupil_center", "pupil-center"))
    )
    return normalize_trial(
        _load(args.video, "video"),
        behavior,
        pupil,
        info.frame_shape,
        {"behavior": mouse.default_behavior, "pupil_center": mouse.default_pupil_center},
        require_behavior=args.require_behavior,
    )


def summary(responses: np.ndarray) -> dict[str, Any]:
    """Figures a person checks first: shape, range, most active neurons."""
    mean = responses.mean(axis=0)
    top = np.argsort(mean)[::-1][:5]
    return {
        "shape": list(responses.shape),
        "mean": float(responses.mean()),
        "std": float(responses.std()),
        "min": float(responses.min()),
        "max": float(responses.max()),
        "most_active_columns": [int(i) for i in top],
    }


def predict(args: argparse.Namespace) -> int:
    """Predict one clip and print (and optionally save) the responses."""
    with connect(args) as client:
        info = client.model(args.model)
        video, behavior, pupil_center, notes = load_trial(args, info)
        started = time.perf_counter()
        responses = client.predict(video, behavior, pupil_center, mouse=args.mouse, model=info.name)
        elapsed = time.perf_counter() - started
    mouse = info.mouse(args.mouse).mouse
    data = {
        "model": info.name,
        "version": info.version,
        "mouse": mouse,
        "notes": notes,
        "seconds": elapsed,
        **summary(responses),
    }
    if args.out:
        np.save(args.out, responses)
        data["out"] = args.out
    s = data
    _say(args, notes)
    lines = [
        f"{info.name} v{info.version}, mouse {mouse}: responses {tuple(responses.shape)} "
        f"(frames x neurons) in {elapsed * 1e3:.0f} ms",
        f"mean {s['mean']:.4f}  std {s['std']:.4f}  min {s['min']:.4f}  max {s['max']:.4f}",
        f"most active neuron columns: {s['most_active_columns']}",
    ]
    if args.out:
        lines.append(f"saved to {args.out}")
    _emit(args, data, lines)
    return 0


def stream(args: argparse.Namespace) -> int:
    """Replay a clip frame by frame at ``--rate`` Hz and report per-frame latency."""
    with connect(args) as client:
        info = client.model(args.model)
        video, behavior, pupil_center, notes = load_trial(args, info)
        if info.streaming_mode == "window":
            notes = [*notes, f"{info.name} {_streams(info)}"]
        latencies, server, period = [], [], 1.0 / args.rate
        with client.stream(mouse=args.mouse, model=info.name) as session:
            start = time.perf_counter()
            for t in range(video.shape[0]):
                due = start + t * period
                time.sleep(max(0.0, due - time.perf_counter()))
                sent = time.perf_counter()
                session.step(video[t], behavior[t], pupil_center[t])
                latencies.append(time.perf_counter() - sent)
                timing = session.timing
                server.append((timing.queue_ms, timing.compute_ms) if timing else (0.0, 0.0))
    ms = np.asarray(latencies) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    queued, ran = np.asarray(server).T
    parts = {"server_queue": queued, "server_compute": ran, "outside_server": ms - queued - ran}
    split = {
        f"{name}_p{q}_ms": float(np.percentile(values, q))
        for name, values in parts.items()
        for q in (50, 99)
    }
    late = int((ms > period * 1e3).sum())
    data = {
        "frames": len(ms),
        "rate_hz": args.rate,
        "notes": notes,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "max_ms": float(ms.max()),
        "over_budget": late,
        **split,
    }
    _say(args, notes)
    lines = [
        f"{len(ms)} frames at {args.rate:g} Hz (budget {period * 1e3:.1f} ms/frame)",
        f"latency p50 {p50:.2f} ms  p90 {p90:.2f} ms  p99 {p99:.2f} ms  max {ms.max():.2f} ms",
        f"frames over budget: {late}",
        "of which, p50 / p99: waiting for a step thread "
        f"{split['server_queue_p50_ms']:.2f} / {split['server_queue_p99_ms']:.2f} ms, "
        f"running the graph {split['server_compute_p50_ms']:.2f} / "
        f"{split['server_compute_p99_ms']:.2f} ms, outside the server (network, gRPC, "
        f"Python) {split['outside_server_p50_ms']:.2f} / {split['outside_server_p99_ms']:.2f} ms",
    ]
    _emit(args, data, lines)
    return 0


def health(args: argparse.Namespace) -> int:
    """Ask the standard health service; with ``--wait`` poll until SERVING."""
    deadline = time.monotonic() + args.wait
    with grpc.insecure_channel(args.server) as channel:
        while (status := check(channel, args.service)) != "SERVING":
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    _emit(args, {"server": args.server, "status": status}, [f"{args.server}: {status}"])
    if status.startswith("unreachable"):
        raise UnavailableError(f"{args.server}: {status}")
    return 0 if status == "SERVING" else 1


def add_server_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the subcommands that talk to a server."""
    p = sub.add_parser("models", parents=[common], help="list the served models and mice")
    p.add_argument(
        "--neuron-ids",
        action="store_true",
        help="also list every mouse's neuron ids (8,000 per mouse: long)",
    )
    p.set_defaults(run=models)
    for name, run, text in (
        ("predict", predict, "predict neuron responses to one clip"),
        ("stream", stream, "replay a clip frame by frame and report per-frame latency"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--video", required=True, help=".npy, T x H x W or H x W x T, 0..255")
        p.add_argument("--behavior", help=".npy, T x 2 or 2 x T: pupil dilation, running speed")
        p.add_argument("--pupil-center", help=".npy, T x 2 or 2 x T: pupil centre x, y")
        p.add_argument(
            "--require-behavior",
            action="store_true",
            help="refuse a clip without --behavior and --pupil-center (default: fill them "
            "with the model's training mean and say so)",
        )
        p.add_argument(  # the default now; kept so that older scripts keep working
            "--allow-missing-behavior", action="store_true", help=argparse.SUPPRESS
        )
        p.add_argument("--model", default="", help="model name (default: the only one served)")
        p.add_argument("--mouse", default="", help="mouse/session (default: the model's only one)")
        p.set_defaults(run=run)
        if name == "predict":
            p.add_argument("--out", help="save the responses (T x N, float32) to this .npy")
        else:
            p.add_argument("--rate", type=float, default=30.0, help="frames per second")
    p = sub.add_parser("health", parents=[common], help="check the server's health service")
    p.add_argument("--wait", type=float, default=0.0, help="poll up to this many seconds")
    p.add_argument("--service", default="", help="service name ('' for the whole server)")
    p.set_defaults(run=health)
