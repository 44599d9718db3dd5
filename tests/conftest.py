"""Shared fixtures: real files on disk in the Sensorium 2023 layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["tests.serving"]

HandWritten = Callable[..., Path]


def write_hand_session(
    root: Path,
    name: str = "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20",
    n_neurons: int = 7,
    lengths: tuple[int, ...] = (20, 20, 13, 20, 9),
    tiers: tuple[str, ...] = ("train", "oracle", "oracle", "live_test_main", "final_test_bonus"),
    padded: int = 20,
    tiers_dtype: str | None = None,
) -> Path:
    """Write a session with plain np.save calls, as the real release lays it out."""
    rng = np.random.default_rng(1)
    path = root / name
    for sub in ("videos", "responses", "behavior", "pupil_center"):
        (path / "data" / sub).mkdir(parents=True)
    base_video = rng.uniform(0, 255, size=(36, 64, padded))
    for i, (length, tier) in enumerate(zip(lengths, tiers, strict=True)):
        video = base_video.copy() if tier == "oracle" else rng.uniform(0, 255, (36, 64, padded))
        arrays = {
            "videos": video,
            "responses": rng.gamma(1.0, size=(n_neurons, padded)),
            "behavior": rng.normal(size=(2, padded)),
            "pupil_center": rng.normal(size=(2, padded)),
        }
        for sub, array in arrays.items():
            array = array.astype(np.float32)
            array[..., length:] = np.nan
            np.save(path / "data" / sub / f"{i}.npy", array)
    (path / "meta/trials").mkdir(parents=True)
    np.save(path / "meta/trials/tiers.npy", np.array(tiers, dtype=tiers_dtype))
    (path / "meta/neurons").mkdir(parents=True)
    np.save(path / "meta/neurons/unit_ids.npy", np.arange(n_neurons) + 1)
    np.save(path / "meta/neurons/cell_motor_coordinates.npy", rng.normal(size=(n_neurons, 3)))
    shapes = {"videos": (), "responses": (n_neurons,), "behavior": (2,), "pupil_center": (2,)}
    for var, shape in shapes.items():
        folder = path / "meta/statistics" / var / "all"
        folder.mkdir(parents=True)
        for stat in ("min", "max", "mean", "std", "median"):
            np.save(folder / f"{stat}.npy", np.ones(shape, dtype=np.float32))
    (path / "config.json").write_text(json.dumps({"data_keys": list(shapes)}))
    return path


@pytest.fixture
def hand_session(tmp_path: Path) -> Path:
    """A session folder written by hand (not by our writer)."""
    return write_hand_session(tmp_path)


def run_console_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run one of our installed console scripts (from this environment) as a user would."""
    exe = shutil.which(args[0], path=str(Path(sys.executable).parent))
    assert exe is not None, f"console script {args[0]} is not installed"
    return subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_mouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic mouse on disk (40 neurons, 24 trials of up to 80 frames)."""
    from sensorium_data.synth.generate import generate_session
    from sensorium_data.synth.plan import SynthConfig

    config = SynthConfig.small(neurons=40, trials=24, max_frames=80)
    session, _ = generate_session(config, 0, tmp_path_factory.mktemp("tiny"), progress=False)
    return session.root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_mouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few training steps on the tiny mouse: a real checkpoint, written by our trainer."""
    from sensorium_data import Session
    from sensorium_train.train import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt")
    config = TrainConfig(steps=6, batch=2, window=40, warmup_frames=10, eval_every=3)
    train([Session(tiny_mouse)], config, out, progress=False)
    return out / "checkpoint.pt"


@pytest.fixture(scope="session")
def tiny_version(
    tiny_checkpoint: Path, tiny_mouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny checkpoint exported into a fresh model repository (version 1)."""
    from sensorium_data import Session
    from sensorium_export.repository import write_version
    from sensorium_train.train import load_checkpoint

    model, checkpoint = load_checkpoint(tiny_checkpoint)
    session = Session(tiny_mouse)
    repo = tmp_path_factory.mktemp("repo")
    target, _ = write_version(model, checkpoint, repo, "tiny", {session.name: session})
    return target


def make_certificate(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost, made by openssl (PEM files)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed localhost certificate and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    return make_certificate(tmp_path_factory.mktemp("tls"))
