"""Prometheus metrics of one server, in their own registry, served on their own port."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

from sensorium_server.gate import CALLER
from sensorium_server.memory import Heap
from sensorium_server.scheduler import Timing

# 0.5 ms .. 120 s: a streaming step is a few ms, a 3,000-frame clip up to a minute.
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
    30.0,
    60.0,
    120.0,
)


class Metrics:
    """Every metric the server exports."""

    def __init__(self) -> None:
        """Create the metrics in a fresh registry (several servers may share a process)."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "sensorium_requests",
            "RPCs handled, by RPC, model, status code and caller (the bearer token's name, "
            "anonymous without authentication)",
            ["rpc", "model", "code", "caller"],
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
        self.unauthenticated = Counter(
            "sensorium_unauthenticated_calls",
            "Calls refused for a missing or unknown bearer token",
            registry=r,
        )
        self.heap = Gauge(
            "sensorium_heap_bytes",
            "The C heap (malloc) after the last trim: in_use (allocated) and free "
            "(held by malloc, not returned to the OS)",
            ["state"],
            registry=r,
        )
        self.heap_trims = Counter(
            "sensorium_heap_trims", "Times free heap memory was handed back", registry=r
        )
        self.heap_trim_seconds = Histogram(
            "sensorium_heap_trim_seconds", "Time one heap trim took", buckets=BUCKETS, registry=r
        )
        # Model label values the server chose: served model names (client-chosen
        # names never become label values; anything else is "unknown").
        self.known_models: set[str] = {""}
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def model_label(self, name: str) -> str:
        """``name`` when it is a served model (or empty), else ``unknown``."""
        return name if name in self.known_models else "unknown"

    def observe_inference(self, model: str, graph: str, timing: Timing) -> None:
        """Record one inference's queue and compute time (the scheduler's observer)."""
        self.queue.labels(model, graph).observe(timing.queue_s)
        self.compute.labels(model, graph).observe(timing.compute_s)

    def observe_heap(self, heap: Heap | None, seconds: float) -> None:
        """Record one heap trim (the trimmer's observer)."""
        self.heap_trims.inc()
        self.heap_trim_seconds.observe(seconds)
        if heap is not None:
            self.heap.labels("in_use").set(heap.in_use)
            self.heap.labels("free").set(heap.free)

    def count(self, rpc: str, model: str, code: str) -> None:
        """Count one finished RPC (an unserved model name counts as ``unknown``)."""
        model = self.model_label(model)
        self.requests.labels(rpc, model, code, CALLER.get()).inc()
        if code != "OK":
            self.errors.labels(rpc, model, code).inc()

    def serve(self, port: int, host: str = "0.0.0.0", tls: tuple[str, str] | None = None) -> int:
        """Serve ``/metrics`` (404 elsewhere) on ``host:port``, HTTPS with ``tls`` (cert, key).

        Port 0 means any free port; returns the port.
        """
        app = make_wsgi_app(self.registry)

        def only_metrics(
            environ: dict[str, Any], start_response: Callable[..., Any]
        ) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "") not in ("/metrics", "/metrics/"):
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found: this port serves /metrics only\n"]
            return app(environ, start_response)

        host = host.strip("[]") or "0.0.0.0"
        server_class = type(
            "MetricsServer",
            (ThreadingWSGIServer,),
            {"address_family": socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]},
        )
        httpd: WSGIServer = make_server(host, port, only_metrics, server_class, _QuietHandler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True)
        thread.start()
        self._http = (httpd, thread)
        return int(httpd.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint."""
        if self._http is not None:
            self._http[0].shutdown()
            self._http[0].server_close()
            self._http = None


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        """Drop it."""
