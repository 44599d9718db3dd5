"""Server fixtures: a repository with the embedded default model, a tiny model, a broken one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sensorium_server.settings import Settings
from tests.server.serving import ServerThread

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "sensorium" / "1"
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory, tiny_version: Path) -> Path:
    """sensorium/1 (committed), tiny/1 (exported by the test session), broken/1 (truncated)."""
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(DEFAULT_MODEL, root / "sensorium" / "1")
    shutil.copytree(tiny_version, root / "tiny" / "1")
    broken = root / "broken" / "1"
    shutil.copytree(tiny_version, broken)
    graph = next(broken.glob("mice/*/step.onnx"))
    graph.write_bytes(graph.read_bytes()[:1000])
    return root


@pytest.fixture(scope="session")
def server(repository: Path) -> Iterator[ServerThread]:
    """The shared server: every version of the repository, small limits that tests hit."""
    settings = Settings(
        model_repository=repository,
        host="localhost",
        port=0,
        metrics_port=0,
        versions="all",
        max_sessions=8,
        max_clip_frames=400,
        max_step_frames=20,
        idle_timeout_s=30,
        max_message_mb=4,
    )
    running = ServerThread(settings).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled sample trial, time first: video (T, 36, 64) uint8, behaviour, pupil."""
    video = np.moveaxis(np.load(SAMPLES / "clip.npy"), 2, 0)
    behavior = np.load(SAMPLES / "behavior.npy").T.copy()
    pupil_center = np.load(SAMPLES / "pupil_center.npy").T.copy()
    return video, behavior, pupil_center
