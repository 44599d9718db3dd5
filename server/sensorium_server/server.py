"""Build, start, load, and drain the gRPC server (``create_server`` apart from ``serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_api.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_server import memory, reflection, rest
from sensorium_server.dataplane import DataPlane
from sensorium_server.errors import StartupError
from sensorium_server.gate import Gate, TokenFileError, Tokens
from sensorium_server.health import HealthServicer
from sensorium_server.live import Changes, LiveRepository
from sensorium_server.metrics import Metrics
from sensorium_server.oip import InferenceServicer
from sensorium_server.runtime import ModelStore
from sensorium_server.servicer import PredictorServicer
from sensorium_server.servicer import add_to_server as add_predictor
from sensorium_server.settings import Settings
from sensorium_server.streams import DRAINING

logger = logging.getLogger(__name__)
PREDICTOR = pb.DESCRIPTOR.services_by_name["Predictor"].full_name
INFERENCE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_SERVICES = ("", PREDICTOR, INFERENCE)
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# After the grace, running graphs get this long before the process exits without them.
STOP_TIMEOUT_S = 5.0


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """Every served service's files in one pool (the OIP stubs live outside the default)."""
    pool = descriptor_pool.DescriptorPool()

    def add(file: descriptor.FileDescriptor) -> None:
        for dependency in file.dependencies:
            add(dependency)
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))

    for file in (pb.DESCRIPTOR, oip.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        add(file)
    return pool


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel arguments: message limits and connection recycling."""
    size = settings.max_message_mb * 1024 * 1024
    options = [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
    ]
    if settings.max_connection_age_s > 0:
        # Recycled connections let clients rebalance across replicas: GOAWAY moves new
        # calls to a new connection, and with no age grace (gRPC's default: infinite)
        # open streams run on; a rig's stream ends only by its client, its own error,
        # its idle timeout, or a drain.
        options.append(("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)))
    return options


@dataclass
class Server:
    """A built server: the gRPC server, its ports, and what it serves."""

    settings: Settings
    grpc_server: grpc.aio.Server
    port: int
    metrics_port: int | None
    plane: DataPlane
    health: HealthServicer
    inference: InferenceServicer
    http_port: int | None = None
    http: web.AppRunner | None = None
    trimmer: memory.HeapTrimmer | None = None
    abandoned_threads: int = 0  # inference threads still running when stop() returned

    async def start(self) -> None:
        """Start taking calls (health NOT_SERVING until :meth:`load_models`)."""
        await self.grpc_server.start()
        if self.settings.heap_trim_s > 0 and memory.available():
            trim_s, observe = self.settings.heap_trim_s, self.plane.metrics.observe_heap
            self.trimmer = memory.HeapTrimmer(trim_s, observe)
            self.trimmer.start()
        logger.info(
            "gRPC on port %d, REST on %s, metrics on %s, replica %s",
            self.port,
            self.http_port or "(disabled)",
            self.metrics_port or "(disabled)",
            self.plane.sessions.replica_id,
        )

    async def load_models(self) -> None:
        """Load and warm up the repository off the event loop, then report SERVING.

        Raises:
            RuntimeError: when no model version could be loaded.
        """
        store, settings = self.plane.store, self.settings
        await asyncio.get_running_loop().run_in_executor(None, store.load, settings)
        if not store.models:
            raise RuntimeError(
                f"no model version of {settings.model_repository} could be loaded "
                f"(policy {settings.versions!r}); failures: {store.failures or 'none found'}"
            )
        live = self.plane.live = LiveRepository(store, settings, self._changed)
        live.remember_loaded()
        await self._changed(Changes(loaded=list(store.models)))
        live.start()

    async def _changed(self, changes: Changes) -> None:
        """Metrics and health follow what is served (start-up, polls, load and unload)."""
        metrics = self.plane.metrics
        for name, version in changes.loaded:
            metrics.known_models.add(name)
            metrics.models.labels(name, str(version)).set(1)
        for name, version in changes.retired:
            with contextlib.suppress(KeyError):
                metrics.models.remove(name, str(version))
        metrics.load_failures.set(len(self.plane.store.failures))
        if self.plane.draining:
            return
        serving = bool(self.plane.store.models)
        status = health_pb2.HealthCheckResponse.SERVING if serving else NOT_SERVING
        for service in HEALTH_SERVICES:
            await self.health.set(service, status)

    async def stop(self, grace: float, delay: float = 0.0) -> None:
        """Drain: NOT_SERVING for ``delay`` s, refuse new calls, ``grace`` s to finish.

        At once, health watchers get NOT_SERVING and their calls end, new streams are
        refused (UNAVAILABLE: open on another replica), and every open stream gets
        its state (``draining``) and ends; the delay lets load balancers see
        NOT_SERVING before calls are refused. The server exits as soon as no call is
        left, at the latest after the grace.
        """
        if self.plane.live is not None:
            await self.plane.live.stop()
        # Clips get the delay and the grace, less a margin for their last chunk.
        self.plane.drain(max(0.0, delay + grace - max(1.0, grace / 5)))
        await self.health.enter_graceful_shutdown()
        moved = self.plane.sessions.interrupt_all(DRAINING)
        logger.info("draining: %d open streams told to move", moved)
        if delay > 0:
            await asyncio.sleep(delay)
        if self.http is not None:  # REST: no new connections; calls in flight finish
            await asyncio.gather(self.grpc_server.stop(grace), self.http.cleanup())
        else:
            await self.grpc_server.stop(grace)
        await self.inference.close()
        stuck = self.plane.scheduler.close(timeout=STOP_TIMEOUT_S)
        if stuck:
            logger.warning(
                "%d inference threads still inside a graph %g s after the grace; exiting "
                "without them",
                stuck,
                STOP_TIMEOUT_S,
            )
        self.abandoned_threads = stuck
        if self.trimmer is not None:
            self.trimmer.stop()
        self.plane.metrics.close()


def check_tls_files(settings: Settings) -> None:
    """Raise StartupError naming the file and the fault, before gRPC would fail obscurely."""
    files = (
        ("--tls-cert", settings.tls_cert),
        ("--tls-key", settings.tls_key),
        ("--tls-client-ca", settings.tls_client_ca),
    )
    for flag, name in files:
        if name and not Path(name).is_file():
            raise StartupError(f"{flag} {name}: no such file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as err:
        fault = (
            "the key does not match the certificate"
            if "KEY_VALUES_MISMATCH" in str(err)
            else f"not a PEM certificate chain and private key ({err.reason or err})"
        )
        raise StartupError(
            f"--tls-cert {settings.tls_cert} / --tls-key {settings.tls_key}: {fault}"
        ) from None
    if settings.tls_client_ca:
        try:
            ssl.create_default_context(cafile=settings.tls_client_ca)
        except ssl.SSLError as err:
            raise StartupError(
                f"--tls-client-ca {settings.tls_client_ca}: not a PEM CA certificate "
                f"({err.reason or err})"
            ) from None


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    """Add the gRPC port: TLS (mutual when a client CA is given) or plaintext."""
    address = f"{settings.host}:{settings.port}"
    if not settings.tls_cert:
        return int(server.add_insecure_port(address))
    check_tls_files(settings)
    key = Path(settings.tls_key).read_bytes()
    chain = Path(settings.tls_cert).read_bytes()
    ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
    )
    return int(server.add_secure_port(address, credentials))


def _tokens(settings: Settings) -> Tokens | None:
    if not settings.auth_tokens_file:
        return None
    try:
        return Tokens.read(settings.auth_tokens_file)
    except TokenFileError as err:
        raise StartupError(str(err)) from None


async def create_server(settings: Settings) -> Server:
    """Build the server and bind its ports (port 0: any free port); nothing is loaded yet."""
    metrics = Metrics()
    plane = DataPlane(settings, ModelStore(), metrics)
    gate = Gate(_tokens(settings), lambda method: metrics.unauthenticated.inc())
    server = grpc.aio.server(interceptors=[gate], options=grpc_options(settings))
    add_predictor(PredictorServicer(plane), server)
    inference = InferenceServicer(plane)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(inference, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in HEALTH_SERVICES:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    if settings.reflection:
        reflection.enable(server, [PREDICTOR, INFERENCE, health.SERVICE_NAME], reflection_pool())
    try:
        port = _bind(server, settings)
    except RuntimeError as err:  # gRPC: "Failed to bind to address ..."
        raise StartupError(f"cannot bind gRPC to {settings.host}:{settings.port} ({err})") from None
    if port == 0:
        raise StartupError(f"cannot bind gRPC to {settings.host}:{settings.port}")
    metrics_port = None
    if settings.metrics_port >= 0:
        tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert else None
        host = settings.metrics_host or settings.host
        try:
            metrics_port = metrics.serve(settings.metrics_port, host, tls)
        except OSError as err:
            raise StartupError(f"metrics on {host}:{settings.metrics_port}: {err}") from None
    http, http_port = None, None
    if settings.http_port >= 0:
        api = rest.RestApi(inference, _tokens(settings))
        try:
            http, http_port = await rest.start(
                api,
                settings.host,
                settings.http_port,
                settings.max_message_mb * 2**20,
                _server_ssl(settings),
                settings.drain_grace_s,
            )
        except OSError as err:
            raise StartupError(f"REST on {settings.host}:{settings.http_port}: {err}") from None
    return Server(
        settings, server, port, metrics_port, plane, health_servicer, inference, http_port, http
    )


def _server_ssl(settings: Settings) -> ssl.SSLContext | None:
    """The REST API's TLS, from the gRPC API's files (None: plaintext)."""
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.tls_client_ca)
    return context


async def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain; returns the process exit code."""
    server = await create_server(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loading = asyncio.create_task(server.load_models())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if loading.done() and loading.exception() is not None:
        logger.error("%s", loading.exception())
        stopping.cancel()
        await server.stop(0)
        return 1
    if not stopping.done():
        frozen = memory.freeze_start_up()
        logger.info(
            "serving %d model versions (%d start-up objects frozen for the GC)",
            len(server.plane.store.models),
            frozen,
        )
    await stopping
    logger.info(
        "draining: NOT_SERVING for %g s, then open calls get %g s",
        settings.drain_delay_s,
        settings.drain_grace_s,
    )
    loading.cancel()
    await server.stop(settings.drain_grace_s, settings.drain_delay_s)
    logger.info("stopped")
    if server.abandoned_threads:
        # Python would wait for those threads at exit, for as long as they are starved.
        logging.shutdown()
        os._exit(0)
    return 0
