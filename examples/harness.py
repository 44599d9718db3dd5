"""What the three examples share: serve a repository, and check the served model against torch.

``served(repository)`` runs ``sensorium-server`` in its own process on a free port (as
a user would); ``check(...)`` asks it through the SDK (a whole-clip ``Predict`` and,
where the model streams, a stream stepped one frame at a time) and compares both with
the torch module's own output on the same inputs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sensorium_client import Client

TOLERANCE = 1e-4


@contextmanager
def served(repository: Path) -> Iterator[str]:
    """A ``sensorium-server`` on ``repository``; yields its target once models are loaded."""
    exe = shutil.which("sensorium-server", path=str(Path(sys.executable).parent))
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [
                exe or "sensorium-server",
                "--model-repository",
                str(repository),
                "--port",
                "0",
                "--metrics-port",
                "-1",
                "--http-port",
                "-1",
                "--versions",
                "all",
                "--log-level",
                "INFO",
            ],
            stderr=log,
        )
        try:
            yield _wait(process, log)
        finally:
            process.terminate()
            process.wait(30)


def _wait(process: subprocess.Popen[bytes], log: object) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log.seek(0)  # type: ignore[attr-defined]
        text = log.read()  # type: ignore[attr-defined]
        if match := re.search(r"gRPC on port (\d+)", text):
            target = f"localhost:{match.group(1)}"
            with Client(target) as client:
                while time.monotonic() < deadline:
                    try:
                        client.models()
                        return target
                    except Exception:  # UNAVAILABLE while the models load
                        time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(f"sensorium-server exited:\n{text}")
        time.sleep(0.2)
    raise RuntimeError("sensorium-server did not start within 120 s")


def trial(
    frames: int, shape: tuple[int, int] = (36, 64), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A trial as clients send it: video (T, H, W) 0..255, behaviour (T, 2), pupil centre (T, 2)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (frames, shape[0] // 4 + 1, shape[1] // 4 + 1))
    video = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, : shape[0], : shape[1]]
    behavior = np.stack([rng.normal(20, 3, frames), np.abs(rng.normal(5, 4, frames))], axis=1)
    pupil = rng.normal((160, 110), 4, (frames, 2))
    return video.astype(np.float32), behavior.astype(np.float32), pupil.astype(np.float32)


def torch_responses(module: nn.Module, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    """The module's own output (T, N) on one trial."""
    with torch.no_grad():
        return module(*(torch.from_numpy(a[None]) for a in inputs))[0].numpy()


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b| / max |b|."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def check(
    target: str, model: str, mouse: str, module: nn.Module, frames: int = 60
) -> dict[str, float]:
    """Predict and (where the model streams) a stream against torch; raises over the tolerance.

    A window stream of a model that is not causal answers ``latency_frames`` late: its
    replies are compared with the frames they answer.
    """
    inputs = trial(frames)
    expected = torch_responses(module, inputs)
    errors = {}
    with Client(target) as client:
        info = client.model(model)
        errors["Predict"] = relative(client.predict(*inputs, model=model, mouse=mouse), expected)
        if info.streaming_mode != "none":
            with client.stream(model=model, mouse=mouse) as session:
                steps = [session.step(*(a[t] for a in inputs)) for t in range(frames)]
            streamed = np.concatenate(steps)
            answered = frames - info.latency_frames
            assert streamed.shape[0] == answered, (streamed.shape, answered)
            errors[f"stream ({info.streaming_mode}, latency {info.latency_frames})"] = relative(
                streamed, expected[:answered]
            )
    for label, error in errors.items():
        print(f"  {model}/{mouse}: {label:32s} relative difference to torch {error:.2e}")
        if not error <= TOLERANCE:
            raise SystemExit(f"{model}/{mouse}: {label} differs from torch by {error:.2e}")
    return errors


Served = dict[tuple[str, str], nn.Module]  # (model, mouse) -> the torch module it serves


def report(target: Path, results: Sequence[object]) -> None:
    """Print what was written and every check's result."""
    print(f"wrote {target}")
    for result in results:
        print(f"  check {result.check:48s} {result.error:.2e}")  # type: ignore[attr-defined]


def run_example(
    doc: str, export: Callable[[Path], Served], done: str, argv: list[str] | None
) -> int:
    """An example's main: export into a repository, serve it, check every module, say ``done``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repository", type=Path, help="model repository (default: temporary)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        repository = args.repository or Path(scratch)
        modules = export(repository)
        with served(repository) as target:
            for (model, mouse), module in modules.items():
                check(target, model, mouse, module)
    print(done)
    return 0
