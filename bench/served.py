"""Served-figure helpers without torch: a server process, trials, paced streams.

Shared by ``serving.py`` (``make bench-serving``) and ``gpu.py`` (``bench/gpu.sh``,
which installs only the server and client).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sensorium_client import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[1]
FRAME_BUDGET_MS = 1000 / 30


class ServerProcess:
    """``sensorium-server`` in its own process, on a free port."""

    def __init__(self, repository: Path, log: Path, *extra: str) -> None:
        exe = shutil.which("sensorium-server", path=str(Path(sys.executable).parent))
        command = [
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
            "--workers",
            "2",
            "--intra-op-threads",
            "1",
            "--max-sessions",
            "1024",
            "--log-level",
            "INFO",
            *extra,
        ]
        self._log = log.open("w")
        self.process = subprocess.Popen(command, stderr=self._log)
        try:
            self.port = self._wait_for_port(log)
        except BaseException:
            self.process.kill()
            raise

    def _wait_for_port(self, log: Path) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log.read_text()
            if match := re.search(r"gRPC on port (\d+)", text):
                with Client(f"localhost:{match.group(1)}") as client:
                    for _ in range(600):
                        try:
                            client.models()
                            return int(match.group(1))
                        except Exception:  # loading: UNAVAILABLE until warm
                            time.sleep(0.2)
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {text}")
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def rss_mb(self, field: str = "VmRSS") -> float:
        """Resident memory of the server process, MB (``VmHWM``: its peak so far)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        """SIGTERM, then wait for the drain."""
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


def trial(frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random trial: uint8 video, behaviour, pupil centre (time first)."""
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, 36, 64), dtype=np.uint8)
    behavior = np.column_stack([rng.uniform(10, 20, frames), rng.uniform(0, 10, frames)])
    pupil = rng.normal([160, 110], 3, (frames, 2))
    return video, behavior.astype(np.float32), pupil.astype(np.float32)


def single_stream(target: str, steps: int) -> list[float]:
    """End-to-end ms per one-frame message of one stream."""
    video, behavior, pupil = trial(300)
    with Client(target) as client, client.stream(model="sensorium") as stream:
        times = []
        for i in range(steps + 50):
            t = i % 300
            start = time.perf_counter()
            stream.step(video[t], behavior[t], pupil[t])
            times.append((time.perf_counter() - start) * 1e3)
    return times[50:]


async def streams_at_rate(
    target: str, n: int, seconds: float, server: ServerProcess
) -> dict[str, float]:
    """``n`` streams at 30 Hz each for ``seconds``: latency, errors, drops, peak RSS."""
    video, behavior, pupil = trial(300)
    frames = int(seconds * 30)
    latencies: list[float] = []
    errors, received, peak_rss = 0, 0, 0.0

    async def one(client: AsyncClient, offset: float) -> None:
        nonlocal errors, received
        await asyncio.sleep(offset)
        try:
            async with await client.stream(model="sensorium") as stream:
                start = time.perf_counter()
                for i in range(frames):
                    await asyncio.sleep(max(0.0, start + i / 30 - time.perf_counter()))
                    sent = time.perf_counter()
                    t = i % 300
                    await stream.step(video[t], behavior[t], pupil[t])
                    latencies.append((time.perf_counter() - sent) * 1e3)
                    received += 1
        except Exception:  # counted, not raised: the figure is how many failed
            errors += 1

    async def watch_memory(done: asyncio.Event) -> None:
        nonlocal peak_rss
        while not done.is_set():
            peak_rss = max(peak_rss, server.rss_mb())
            await asyncio.sleep(0.5)

    async with AsyncClient(target) as client:
        await client.model("sensorium")
        done = asyncio.Event()
        watcher = asyncio.create_task(watch_memory(done))
        await asyncio.gather(*(one(client, i / 30 / n) for i in range(n)))
        done.set()
        await watcher
    ms = np.asarray(latencies) if latencies else np.asarray([np.inf])
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "errors": errors,
        "dropped": n * frames - received,
        "rss_mb": peak_rss,
    }


def ramp(
    target: str, server: ServerProcess, counts: tuple[int, ...], p99_ms: float, seconds: float
) -> int:
    """The largest of ``counts`` streams at 30 Hz with p99 <= ``p99_ms``, no errors, no drops.

    Each count runs ``seconds``; the ramp stops at the first that fails (0: the first did).
    """
    largest = 0
    for n in counts:
        result = asyncio.run(streams_at_rate(target, n, seconds, server))
        print(
            f"ramp: {n} streams: p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms, "
            f"errors {result['errors']}, dropped {result['dropped']}",
            flush=True,
        )
        if result["p99"] > p99_ms or result["errors"] or result["dropped"]:
            break
        largest = n
    return largest
