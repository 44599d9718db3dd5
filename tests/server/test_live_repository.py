"""The live repository: versions appear, replace and retire while a stream runs (real server)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from sensorium_client import Client
from sensorium_client.errors import NotFoundError
from sensorium_server.settings import Settings
from tests.serving import ServerThread, local_settings

POLL_S = 0.2


def add_version(repository: Path, source: Path, number: int, broken: bool = False) -> Path:
    """Copy ``source`` in as version ``number``, staged beside and moved in (as a user would)."""
    staging = repository / f".staging-{number}"
    shutil.copytree(source, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = number
    (staging / "manifest.json").write_text(json.dumps(manifest))
    if broken:
        graph = next(staging.glob("mice/*/step.onnx"))
        graph.write_bytes(graph.read_bytes()[:1000])
    target = repository / source.parent.name / str(number)
    staging.rename(target)
    return target


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> float:
    """Seconds until ``condition()`` held; fails the test after ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "condition not met in time"
        time.sleep(0.05)
    return time.monotonic() - started


def served_versions(server: ServerThread) -> list[int]:
    return sorted(v for _, v in server.server.plane.store.models)


def metrics(server: ServerThread) -> str:
    url = f"http://localhost:{server.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def health(server: ServerThread) -> int:
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)


def start(repository: Path, **overrides: Any) -> ServerThread:
    return ServerThread(
        local_settings(repository, metrics_port=0, http_port=0, **overrides)
    ).start()


@pytest.fixture
def repository(tiny_version: Path, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(tiny_version, root / "tiny" / "1")
    return root


@pytest.fixture
def polled(repository: Path) -> Iterator[ServerThread]:
    running = start(repository, repository_poll_s=POLL_S)
    yield running
    running.stop()


def trial(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (frames, 36, 64), dtype=np.uint8)
    return video, rng.normal(1, 0.2, (frames, 2)), rng.normal(0, 1, (frames, 2))


def test_a_new_version_is_served_within_the_poll_and_a_running_stream_goes_on(
    polled: ServerThread, repository: Path
) -> None:
    video, behavior, pupil = trial(40)
    with Client(polled.target) as client:
        expected = client.predict(video, behavior, pupil, model="tiny")  # version 1
        session = client.stream(model="tiny")
        assert session.info.version == 1
        streamed = [session.step(video[t], behavior[t], pupil[t]) for t in range(20)]

        add_version(repository, repository / "tiny" / "1", 2)
        took = wait_for(lambda: served_versions(polled) == [2])
        # Loading (verify, open, warm, parity) takes its time; the poll adds at most POLL_S.
        assert took < 30

        # The open stream finishes on version 1: no error, same outputs as a whole clip.
        streamed += [session.step(video[t], behavior[t], pupil[t]) for t in range(20, 40)]
        np.testing.assert_allclose(np.concatenate(streamed), expected, rtol=1e-4, atol=1e-5)
        assert session.info.version == 1
        assert not session.recovery.history
        session.close()

        # New calls of a long-lived client go to the new version.
        with client.stream(model="tiny") as fresh:
            assert fresh.info.version == 2
            fresh.step(video[0], behavior[0], pupil[0])
        np.testing.assert_allclose(
            client.predict(video, behavior, pupil, model="tiny"), expected, rtol=1e-4, atol=1e-5
        )
        with pytest.raises(NotFoundError, match="no version 1"):
            client.predict(video, behavior, pupil, model="tiny", version=1)

    page = metrics(polled)
    assert 'sensorium_model_loaded{model="tiny",version="2"} 1.0' in page
    assert 'version="1"' not in page.split("sensorium_model_loaded")[-1].split("# HELP")[0]
    index = triton_grpc.InferenceServerClient(polled.target).get_model_repository_index(
        as_json=True
    )["models"]
    states = {(m["name"], m["version"]): (m["state"], m.get("reason", "")) for m in index}
    assert states[("tiny", "2")] == ("READY", "")
    assert states[("tiny", "1")] == ("UNAVAILABLE", "not selected by --versions latest:1")


def test_a_broken_version_is_refused_and_the_old_one_serves_on(
    polled: ServerThread, repository: Path
) -> None:
    add_version(repository, repository / "tiny" / "1", 2, broken=True)
    wait_for(lambda: any("2" in p for p in polled.server.plane.store.failures))
    assert served_versions(polled) == [1]  # its successor failed: version 1 serves on
    assert health(polled) == health_pb2.HealthCheckResponse.SERVING
    assert "sensorium_model_load_failures 1.0" in metrics(polled)
    index = triton_http.InferenceServerClient(f"localhost:{polled.server.http_port}")
    states = {(m["name"], m["version"]): m for m in index.get_model_repository_index()}
    assert states[("tiny", "2")]["state"] == "UNAVAILABLE"
    assert "step.onnx: 1000 bytes, the manifest records" in states[("tiny", "2")]["reason"]

    # Fixed in place (the files change): loaded at the next poll, version 1 retired.
    shutil.rmtree(repository / "tiny" / "2")
    add_version(repository, repository / "tiny" / "1", 2)
    wait_for(lambda: served_versions(polled) == [2])
    assert "sensorium_model_load_failures 0.0" in metrics(polled)

    # Removed: the version before it is selected again and loaded.
    shutil.rmtree(repository / "tiny" / "2")
    wait_for(lambda: served_versions(polled) == [1])
    with Client(polled.target) as client:
        assert client.model("tiny").version == 1


def test_explicit_control_loads_and_unloads_through_triton_clients(repository: Path) -> None:
    running = start(repository, model_control="explicit")
    try:
        grpc_client = triton_grpc.InferenceServerClient(running.target)
        http_client = triton_http.InferenceServerClient(f"localhost:{running.server.http_port}")
        assert grpc_client.is_model_ready("tiny")

        grpc_client.unload_model("tiny")
        assert not grpc_client.is_model_ready("tiny")
        assert not http_client.is_model_ready("tiny")
        assert health(running) == health_pb2.HealthCheckResponse.NOT_SERVING  # nothing served
        [entry] = http_client.get_model_repository_index()
        assert (entry["state"], entry["reason"]) == (
            "UNAVAILABLE",
            "unloaded (RepositoryModelUnload)",
        )
        with pytest.raises(InferenceServerException, match="not served"):
            grpc_client.unload_model("tiny")

        # A version copied in is not served until asked for (explicit: no polling).
        add_version(repository, repository / "tiny" / "1", 2)
        time.sleep(0.5)
        assert served_versions(running) == []
        http_client.load_model("tiny")
        assert served_versions(running) == [2]
        assert grpc_client.is_model_ready("tiny", "2")
        assert health(running) == health_pb2.HealthCheckResponse.SERVING

        with pytest.raises(InferenceServerException, match="not in the repository"):
            grpc_client.load_model("nonesuch")
        with pytest.raises(InferenceServerException, match="not in the repository"):
            http_client.load_model("nonesuch")
    finally:
        running.stop()


def test_load_and_unload_need_explicit_control(polled: ServerThread) -> None:
    client = triton_grpc.InferenceServerClient(polled.target)
    with pytest.raises(InferenceServerException, match="needs --model-control explicit") as err:
        client.unload_model("tiny")
    assert err.value.status() == "StatusCode.FAILED_PRECONDITION"
    assert served_versions(polled) == [1]


def test_model_control_settings() -> None:
    assert Settings(repository_poll_s=5).effective_model_control == "poll"
    assert Settings().effective_model_control == "none"
    with pytest.raises(ValueError, match="needs repository_poll_s"):
        Settings(model_control="poll")
    with pytest.raises(ValueError, match="use poll"):
        Settings(model_control="explicit", repository_poll_s=1)
    with pytest.raises(ValueError, match="none, poll or explicit"):
        Settings(model_control="sometimes")


def test_a_long_lived_client_follows_a_rollout_within_its_model_ttl(
    polled: ServerThread, repository: Path
) -> None:
    video, behavior, pupil = trial(10)
    with Client(polled.target, model_ttl_s=0.5) as quick, Client(polled.target) as slow:
        assert quick.model("tiny").version == slow.model("tiny").version == 1
        assert quick.model("tiny", 1).version == 1
        add_version(repository, repository / "tiny" / "1", 2)
        wait_for(lambda: served_versions(polled) == [2])
        time.sleep(0.6)  # past the quick client's TTL, well within the default 30 s
        assert quick.model("tiny").version == 2  # asked again: the rollout is seen
        assert slow.model("tiny").version == 1  # still the kept description
        assert quick.model("tiny", 1).version == 1  # a numbered version is kept for good
        assert quick.predict(video, behavior, pupil, model="tiny").shape[0] == 10
