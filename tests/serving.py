"""A real server, in-process on its own event loop thread, on port 0, and its fixtures.

Loaded as a pytest plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from sensorium_server.server import Server, create_server
from sensorium_server.settings import Settings

T = TypeVar("T")


def local_settings(repository: Path, **overrides: Any) -> Settings:
    """Settings of a test server: localhost, port 0, no metrics port unless overridden."""
    fields: dict[str, Any] = {
        "host": "localhost",
        "port": 0,
        "metrics_port": -1,
        "http_port": -1,
        **overrides,
    }
    return Settings(model_repository=repository, **fields)


class ServerThread:
    """Runs :func:`create_server` on a private loop so that tests can stay synchronous."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server: Server = self.run(create_server(settings))

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self, load: bool = True) -> ServerThread:
        self.run(self.server.start())
        if load:
            self.run(self.server.load_models())
        return self

    @property
    def target(self) -> str:
        return f"localhost:{self.server.port}"

    @property
    def sessions(self) -> int:
        return len(self.server.plane.sessions)

    def stop(self) -> None:
        self.run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


ROOT = Path(__file__).resolve().parents[1]
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
    settings = local_settings(
        repository,
        metrics_port=0,
        versions="all",
        max_sessions=8,
        max_clip_frames=400,
        max_step_frames=20,
        idle_timeout_s=30,
        max_message_mb=16,
        clip_chunk_frames=50,
        http_port=0,
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


@pytest.fixture
def strict_server(repository: Path) -> Iterator[ServerThread]:
    """A server with one worker, a queue of one and a 0.5 s idle timeout."""
    settings = local_settings(
        repository,
        versions="all",
        workers=1,
        max_queue=1,
        idle_timeout_s=0.5,
    )
    running = ServerThread(settings).start()
    yield running
    running.stop()


class ServerProcess:
    """``sensorium-server`` as its own process (SIGTERM is part of the test), on port 0."""

    def __init__(self, repository: Path, *flags: str) -> None:
        import re
        import subprocess
        import sys

        command = [
            sys.executable,
            "-m",
            "sensorium_server.cli",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--metrics-port",
            "-1",
            "--http-port",
            "-1",
            "--model-repository",
            str(repository),
            *flags,
        ]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        assert self.process.stderr is not None
        self.port, self.replica = 0, ""
        for line in self.process.stderr:
            self.log.append(line)
            if match := re.search(r"gRPC on port (\d+), .* replica (\w+)", line):
                self.port, self.replica = int(match.group(1)), match.group(2)
            if "serving" in line and "model versions" in line:
                break
        if not self.port:
            self.process.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self) -> None:
        import signal

        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Kill it if still running; close its pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
