"""Health transitions, metrics, limits, idle timeout, and SIGTERM drain."""

from __future__ import annotations

import concurrent.futures
import queue
import re
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from sensorium_api.tensors import to_tensor
from sensorium_client import (
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from tests.serving import ServerThread, local_settings

Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


def _health(target: str, service: str = "") -> str:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _metrics(server: ServerThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://localhost:{server.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_health_not_serving_until_warm_and_while_draining(repository: Path, sample: Trial) -> None:
    settings = local_settings(repository, versions="specific:1")
    running = ServerThread(settings).start(load=False)
    try:
        assert _health(running.target) == "NOT_SERVING"
        with Client(running.target, retries=0) as client, pytest.raises(Exception, match="loading"):
            client.models()
        import tritonclient.grpc as triton

        oip = triton.InferenceServerClient(running.target)
        assert oip.is_server_live()
        assert not oip.is_server_ready()
        assert not oip.is_model_ready("tiny")
        running.run(running.server.load_models())
        assert _health(running.target) == "SERVING"
        assert _health(running.target, "sensorium.v1.Predictor") == "SERVING"
        assert oip.is_server_ready()
        assert oip.is_model_ready("tiny")
        oip.close()
        draining = asyncio_in_thread(running, grace=5, delay=1.5)
        time.sleep(0.5)
        assert _health(running.target) == "NOT_SERVING"
        draining.result(30)
    finally:
        running.loop.call_soon_threadsafe(running.loop.stop)


def asyncio_in_thread(
    running: ServerThread, grace: float, delay: float
) -> concurrent.futures.Future[None]:
    import asyncio

    return asyncio.run_coroutine_threadsafe(running.server.stop(grace, delay), running.loop)


def test_metrics_count_requests_errors_frames_and_sessions(
    server: ServerThread, sample: Trial
) -> None:
    video, behavior, pupil = (a[:7] for a in sample)
    before = _metrics(server)
    with Client(server.target) as client:
        client.predict(video, behavior, pupil, model="tiny")
        client.predict(video, behavior, pupil, model="tiny")
        with pytest.raises(ResourceExhaustedError):
            client.predict(*(np.concatenate([a] * 2) for a in sample), model="tiny")
        with client.stream(model="tiny") as session:
            session.step(video, behavior, pupil)
            during = _metrics(server)
    after = _metrics(server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert (
        delta(
            "sensorium_requests_total", rpc="Predict", model="tiny", code="OK", caller="anonymous"
        )
        == 2
    )
    assert (
        delta(
            "sensorium_requests_total",
            rpc="Predict",
            model="tiny",
            code="RESOURCE_EXHAUSTED",
            caller="anonymous",
        )
        == 1
    )
    assert (
        delta(
            "sensorium_request_errors_total", rpc="Predict", model="tiny", code="RESOURCE_EXHAUSTED"
        )
        == 1
    )
    assert (
        delta(
            "sensorium_requests_total",
            rpc="StreamPredict",
            model="tiny",
            code="OK",
            caller="anonymous",
        )
        == 1
    )
    assert delta("sensorium_frames_predicted_total", model="tiny", rpc="Predict") == 14
    assert delta("sensorium_frames_predicted_total", model="tiny", rpc="StreamPredict") == 7
    assert delta("sensorium_inference_compute_seconds_count", model="tiny", graph="clip") == 2
    assert delta("sensorium_inference_queue_seconds_count", model="tiny", graph="step") == 1
    assert during[("sensorium_active_sessions", (("model", "tiny"),))] == 1
    assert after[("sensorium_active_sessions", (("model", "tiny"),))] == 0
    assert after[("sensorium_model_loaded", (("model", "sensorium"), ("version", "1")))] == 1
    assert after[("sensorium_model_load_failures", ())] == 1
    assert after[("process_resident_memory_bytes", ())] > 0


def test_full_queue_is_resource_exhausted(strict_server: ServerThread, sample: Trial) -> None:
    with Client(strict_server.target) as client:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            calls = [pool.submit(client.predict, *sample, model="sensorium") for _ in range(6)]
            errors = [c.exception(60) for c in calls]
        rejected = [e for e in errors if e is not None]
        assert rejected, "six concurrent clips on a queue of one: some must be refused"
        assert all(isinstance(e, ResourceExhaustedError) for e in rejected)
        assert "inference queue full (1 clip requests" in str(rejected[0])
        assert client.predict(*(a[:5] for a in sample), model="tiny").shape == (5, 40)


def test_idle_stream_is_closed(strict_server: ServerThread, sample: Trial) -> None:
    with Client(strict_server.target) as client:
        session = client.stream(model="tiny")
        session.step(sample[0][0], sample[1][0], sample[2][0])
        time.sleep(1.5)
        with pytest.raises(DeadlineExceededError, match=r"no message for 0\.5 s"):
            session.step(sample[0][1], sample[1][1], sample[2][1])
        assert strict_server.sessions == 0
        with pytest.raises(InvalidArgumentError, match="video"):
            client.predict(np.zeros((3, 36, 63)), np.zeros((3, 2)), np.zeros((3, 2)), model="tiny")


def test_sigterm_hands_over_streams_and_finishes_clips_then_exits_0(
    repository: Path, sample: Trial
) -> None:
    """A raw native stream gets ``draining`` with its state at once; a clip in flight ends OK."""
    from sensorium_api.v1 import predictor_pb2 as pb
    from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
    from tests.serving import ServerProcess

    server = ServerProcess(
        repository, "--versions", "specific:1", "--drain-delay-s", "0.3", "--drain-grace-s", "20"
    )
    try:
        video, behavior, pupil = (a[:3] for a in sample)
        frames = pb.StreamFrames(
            video=to_tensor(video), behavior=to_tensor(behavior), pupil_center=to_tensor(pupil)
        )
        requests: queue.SimpleQueue[pb.StreamPredictRequest | None] = queue.SimpleQueue()
        requests.put(pb.StreamPredictRequest(open=pb.StreamOpen(model="tiny")))
        requests.put(pb.StreamPredictRequest(frames=frames))
        with grpc.insecure_channel(server.address) as channel, Client(server.address) as client:
            replies = pb_grpc.PredictorStub(channel).StreamPredict(iter(requests.get, None))
            assert next(replies).WhichOneof("kind") == "opened"
            assert next(replies).responses.responses.shape == [3, 40]
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                clip = pool.submit(client.predict, *sample, model="sensorium")
                time.sleep(0.2)
                server.terminate()
                notice = next(replies)  # at once, without sending anything
                assert notice.WhichOneof("kind") == "draining"
                assert notice.draining.snapshot.next_frame == 3
                assert notice.draining.snapshot.model == "tiny"
                assert [s.name for s in notice.draining.snapshot.state]
                assert list(replies) == []  # then the stream ends with OK
                assert replies.code() == grpc.StatusCode.OK
                assert clip.result(30).shape == (len(sample[0]), 8000)
        assert server.wait(15) == 0
        log = "".join(server.log)
        frozen = re.search(r"\((\d+) start-up objects frozen for the GC\)", log)
        assert frozen is not None, log[:2000]
        assert int(frozen.group(1)) > 10_000
        assert "stopped" in log
        assert "Traceback" not in log[log.index("draining") :]
    finally:
        requests.put(None)
        server.kill()


def test_reflection_describes_both_apis(server: ServerThread) -> None:
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(server.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {
            "sensorium.v1.Predictor",
            "inference.GRPCInferenceService",
            "grpc.health.v1.Health",
        } <= services
        pool = DescriptorPool(database)
        infer = pool.FindServiceByName("inference.GRPCInferenceService").FindMethodByName(
            "ModelInfer"
        )
        assert infer.input_type.full_name == "inference.ModelInferRequest"
        predictor = pool.FindServiceByName("sensorium.v1.Predictor")
        predict = predictor.FindMethodByName("StreamPredict")
        assert predict.output_type.full_name == "sensorium.v1.StreamPredictResponse"
