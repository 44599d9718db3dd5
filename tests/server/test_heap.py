"""The heap trimmer: freed C heap memory goes back to the OS, on its timer, in the metrics."""

from __future__ import annotations

import gc
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensorium_client import Client
from sensorium_server import memory
from tests.serving import ServerThread, local_settings

pytestmark = pytest.mark.skipif(not memory.available(), reason="needs glibc 2.33+")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_trim_returns_freed_heap_memory_to_the_os() -> None:
    # 64 KiB blocks come from malloc's arenas (below the mmap threshold); the last one
    # kept alive pins the top of the heap, so glibc keeps the freed space below it.
    blocks = [np.ones(16_000, np.float32) for _ in range(3_000)]  # ~190 MB
    keep = blocks[-1]
    del blocks
    before_mb, held = _rss_mb(), memory.heap()
    assert held is not None
    assert held.free > 100 * 2**20
    assert memory.trim()
    after_mb = _rss_mb()
    assert before_mb - after_mb > 100, (before_mb, after_mb)
    assert keep.sum() == 16_000


def test_server_trims_on_its_timer_and_reports_the_heap(
    repository: Path, sample: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    running = ServerThread(local_settings(repository, metrics_port=0, heap_trim_s=0.2)).start()
    try:
        with Client(running.target) as client:
            assert client.predict(*sample, model="sensorium").shape == (254, 8000)
        time.sleep(1.5)  # well past the 0.2 s interval
        url = f"http://localhost:{running.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        samples = {
            (s.name, s.labels.get("state", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("sensorium_heap_trims_total", "")] >= 4
        assert samples[("sensorium_heap_bytes", "in_use")] > 10 * 2**20
        assert samples[("sensorium_heap_bytes", "free")] >= 0
        assert samples[("sensorium_heap_trim_seconds_count", "")] >= 4
        trimmer = running.server.trimmer
        assert trimmer is not None
        assert trimmer.is_alive()
    finally:
        running.stop()
    trimmer.join(1)
    assert not trimmer.is_alive()  # stopped with the server


def test_zero_interval_never_trims(repository: Path) -> None:
    running = ServerThread(local_settings(repository, heap_trim_s=0)).start()
    try:
        assert running.server.trimmer is None
    finally:
        running.stop()


def test_freeze_start_up_hides_live_objects_from_the_collector() -> None:
    try:
        frozen = memory.freeze_start_up()
        assert frozen == gc.get_freeze_count() > 1_000
        tracked = len(gc.get_objects())  # only what the collector still walks
        assert tracked < frozen
    finally:
        gc.unfreeze()  # the test process goes on collecting as before
