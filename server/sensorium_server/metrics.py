"""Prometheus metrics of one server, in their own registry, served on their own port."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from sensorium_server.scheduler import Timing

# 0.5 ms .. 10 s: a streaming step is a few ms, a long clip a few seconds.
BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.033,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """Every metric the server exports."""

    def __init__(self) -> None:
        """Create the metrics in a fresh registry (several servers may share a process)."""
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "sensorium_requests",
            "RPCs handled, by RPC, model and status code",
            ["rpc", "model", "code"],
            registry=r,
        )
        self.errors = Counter(
            "sensorium_request_errors",
            "RPCs that ended with a status other than OK",
            ["rpc", "model", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "sensorium_request_seconds",
            "Time from receiving a unary RPC to its response",
            ["rpc", "model"],
            buckets=BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "sensorium_inference_queue_seconds",
            "Time an inference waited for a worker",
            ["model", "graph"],
            buckets=BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "sensorium_inference_compute_seconds",
            "Time ONNX Runtime spent on an inference",
            ["model", "graph"],
            buckets=BUCKETS,
            registry=r,
        )
        self.frames = Counter(
            "sensorium_frames_predicted",
            "Frames whose responses were returned",
            ["model", "rpc"],
            registry=r,
        )
        self.sessions = Gauge(
            "sensorium_active_sessions", "Open stream sessions", ["model"], registry=r
        )
        self.stream_events = Counter(
            "sensorium_stream_events",
            "Stream session events: resumed, replayed (frames answered again), "
            "detached (connection broke), expired, handed_off (drain), snapshot_opened, "
            "write_timeout (replies unread)",
            ["event"],
            registry=r,
        )
        self.models = Gauge(
            "sensorium_model_loaded",
            "1 for each served model version",
            ["model", "version"],
            registry=r,
        )
        self.load_failures = Gauge(
            "sensorium_model_load_failures", "Model versions that failed to load", registry=r
        )
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def observe_inference(self, model: str, graph: str, timing: Timing) -> None:
        """Record one inference's queue and compute time (the scheduler's observer)."""
        self.queue.labels(model, graph).observe(timing.queue_s)
        self.compute.labels(model, graph).observe(timing.compute_s)

    def count(self, rpc: str, model: str, code: str) -> None:
        """Count one finished RPC."""
        self.requests.labels(rpc, model, code).inc()
        if code != "OK":
            self.errors.labels(rpc, model, code).inc()

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Expose ``/metrics`` over HTTP on ``port`` (0: any free port); returns the port."""
        self._http = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http[0].server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint."""
        if self._http is not None:
            self._http[0].shutdown()
            self._http[0].server_close()
            self._http = None
