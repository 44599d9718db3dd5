"""Fuzzing every surface: no INTERNAL or UNKNOWN, the server serves on, a rig is unaffected.

``SENSORIUM_FUZZ_CASES`` sets the cases per surface (default 40: a few hundred in all
in CI); ``make fuzz`` runs 2,500 per surface (20,000) and prints the codes it saw.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from sensorium_client import Client
from tests.fuzzing import SURFACES, cases, fire
from tests.serving import ServerThread, local_settings

CASES = int(os.environ.get("SENSORIUM_FUZZ_CASES", "40"))
SEEN: collections.Counter[tuple[str, str]] = collections.Counter()
FORBIDDEN = {"INTERNAL", "UNKNOWN"}


class Rig(threading.Thread):
    """A healthy stream stepping the tiny model at 50 Hz while the fuzz runs."""

    def __init__(self, target: str, trial: tuple[np.ndarray, ...]) -> None:
        super().__init__(daemon=True)
        self.target, self.trial = target, trial
        self.stop, self.steps, self.errors = threading.Event(), 0, []

    def run(self) -> None:
        try:
            with Client(self.target) as client, client.stream(model="tiny") as session:
                while not self.stop.is_set():
                    t = self.steps % len(self.trial[0])
                    if t == 0 and self.steps:
                        session.reset()
                    session.step(*(a[t] for a in self.trial))
                    self.steps += 1
                    time.sleep(0.02)
        except Exception as err:
            self.errors.append(err)


@pytest.fixture(scope="module")
def fuzzed(repository: Path) -> Iterator[ServerThread]:
    settings_ = local_settings(
        repository,
        versions="all",
        metrics_port=0,
        max_sessions=64,
        idle_timeout_s=5,
        max_clip_frames=50,
        max_step_frames=10,
    )
    running = ServerThread(settings_).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rig(fuzzed: ServerThread, sample: tuple[np.ndarray, ...]) -> Iterator[Rig]:
    healthy = Rig(fuzzed.target, tuple(a[:30] for a in sample))
    healthy.start()
    yield healthy
    healthy.stop.set()
    healthy.join(30)


@pytest.fixture(scope="module")
def channel(fuzzed: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        fuzzed.target, options=[("grpc.max_send_message_length", -1)]
    ) as opened:
        yield opened


@pytest.mark.parametrize("surface", SURFACES)
def test_malformed_requests_get_client_error_codes(
    surface: str, channel: grpc.Channel, rig: Rig
) -> None:
    @settings(
        max_examples=CASES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases(surface))
    def one(payloads: list[bytes]) -> None:
        codes = fire(channel, surface, payloads)
        for code in codes:
            SEEN[(surface, code)] += 1
        assert not FORBIDDEN & set(codes), (surface, codes, [p[:200] for p in payloads])

    one()


def test_after_the_fuzz_the_server_serves_and_the_rig_never_failed(
    fuzzed: ServerThread, rig: Rig
) -> None:
    with grpc.insecure_channel(fuzzed.target) as opened:
        reply = health_pb2_grpc.HealthStub(opened).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert rig.is_alive()
    assert rig.errors == []
    assert rig.steps > 10
    url = f"http://localhost:{fuzzed.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert len(response.read()) < 100_000
    print(f"\nfuzz: {sum(SEEN.values())} calls ({CASES} cases per surface); codes per surface:")
    for surface in SURFACES:
        codes = {code: n for (s, code), n in sorted(SEEN.items()) if s == surface}
        print(f"  {surface:22s} {codes}")
    assert sum(SEEN.values()) >= CASES * len(SURFACES)
