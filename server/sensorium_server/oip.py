"""``inference.GRPCInferenceService``: the Open Inference Protocol over the data plane.

Stateless ModelInfer runs the whole-clip graph; with Triton's sequence parameters it
runs the streaming step graph on a stream session kept per sequence id (the same
sessions, scheduler and limits as ``StreamPredict``). Errors map to the same status
codes as the native API; ModelStreamInfer reports a failed request in its
``error_message`` and keeps the stream open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_api.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from sensorium_server import oip_config
from sensorium_server import oip_convert as convert
from sensorium_server.dataplane import DataPlane
from sensorium_server.errors import InvalidInputError, NotFoundError, UnavailableError, short
from sensorium_server.gate import Malformed
from sensorium_server.observe import UNREACHABLE, Call, observe
from sensorium_server.sequences import SequenceTable
from sensorium_server.status import status_of

logger = logging.getLogger(__name__)
EXTENSIONS = ["sequence", "model_configuration", "statistics", "model_repository"]


def server_version() -> str:
    """The installed package's version ("unknown" in a source tree without metadata)."""
    try:
        return version("sensorium-serve")
    except PackageNotFoundError:
        return "unknown"


def check_repository(name: str) -> None:
    """Raise NotFoundError unless ``name`` is this server's one repository."""
    if name not in ("", "models"):
        raise NotFoundError(
            f"repository {short(name)!r}: this server has one, named '' or 'models'"
        )


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol (KServe v2) and Triton's ModelStreamInfer."""

    def __init__(self, plane: DataPlane) -> None:
        """Serve ``plane``; sequences are reaped every quarter of the idle timeout."""
        self._plane = plane
        self.sequences = SequenceTable(plane)
        self._reaper: asyncio.Task[None] | None = None

    def _ensure_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(max(self._plane.settings.idle_timeout_s / 4, 0.05))
            closed = self.sequences.reap()
            if closed:
                logger.info("closed %d idle sequences", closed)

    async def close(self) -> None:
        """Stop the reaper and free every sequence."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        self.sequences.close_all()

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Live while the process answers."""
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Ready once the models are warm, until draining starts."""
        ready = self._plane.store.ready and not self._plane.draining
        return oip.ServerReadyResponse(ready=ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Whether an OIP model (version) is served and the server is ready."""
        async with observe(self._plane.metrics, context, "oip.ModelReady", request.name):
            try:
                convert.resolve(self._plane.store, request.name, request.version)
            except (NotFoundError, UnavailableError):  # unknown, or still loading
                return oip.ModelReadyResponse(ready=False)
            return oip.ModelReadyResponse(ready=not self._plane.draining)
        raise RuntimeError(UNREACHABLE)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Name, version and the extensions supported."""
        return oip.ServerMetadataResponse(
            name="sensorium-serve", version=server_version(), extensions=EXTENSIONS
        )

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Inputs and outputs of an OIP model (-1 for dynamic axes)."""
        async with observe(self._plane.metrics, context, "oip.ModelMetadata", request.name) as call:
            model, mouse = convert.resolve(self._plane.store, request.name, request.version)
            call.model = model.name
            versions = sorted(v for n, v in self._plane.store.models if n == model.name)
            return convert.metadata(request.name, model, mouse, versions)
        raise RuntimeError(UNREACHABLE)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Triton's model configuration of an OIP model (what perf_analyzer reads)."""
        async with observe(self._plane.metrics, context, "oip.ModelConfig", request.name) as call:
            model, mouse = convert.resolve(self._plane.store, request.name, request.version)
            call.model = model.name
            config = oip_config.model_config(request.name, model, mouse, self._plane.settings)
            return oip.ModelConfigResponse(config=config)
        raise RuntimeError(UNREACHABLE)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Counts and durations per model version (every model when the name is empty)."""
        async with observe(
            self._plane.metrics, context, "oip.ModelStatistics", request.name
        ) as call:
            version = 0
            if request.name:
                model, _ = convert.resolve(self._plane.store, request.name, request.version)
                call.model = model.name
                version = model.version.version if request.version else 0
            return oip_config.statistics(
                self._plane.store, self._plane.statistics, request.name, version
            )
        raise RuntimeError(UNREACHABLE)

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Every version folder of the repository and whether it is served."""
        async with observe(self._plane.metrics, context, "oip.RepositoryIndex", ""):
            check_repository(request.repository_name)
            return oip_config.repository_index(self._plane, request.ready)
        raise RuntimeError(UNREACHABLE)

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Load (or reload) a model's versions: explicit model control only."""
        rpc = "oip.RepositoryModelLoad"
        async with observe(self._plane.metrics, context, rpc, request.model_name):
            await self.repository_call("load", request.repository_name, request.model_name)
            return oip.RepositoryModelLoadResponse()
        raise RuntimeError(UNREACHABLE)

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Retire every version of a model: explicit model control only."""
        rpc = "oip.RepositoryModelUnload"
        async with observe(self._plane.metrics, context, rpc, request.model_name):
            await self.repository_call("unload", request.repository_name, request.model_name)
            return oip.RepositoryModelUnloadResponse()
        raise RuntimeError(UNREACHABLE)

    async def repository_call(self, action: str, repository: str, name: str) -> None:
        """Load or unload ``name`` (a model, or an OIP '<model>.<mouse>' name)."""
        check_repository(repository)
        live = self._plane.live
        if live is None:
            raise UnavailableError("models are still loading; retry shortly")
        with contextlib.suppress(UnavailableError):
            name = convert.oip_names(self._plane.store).get(name, (name, ""))[0]
        await (live.load(name) if action == "load" else live.unload(name))

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """One inference: a whole clip, or the next frames of a sequence."""
        async with observe(
            self._plane.metrics, context, "oip.ModelInfer", request.model_name
        ) as call:
            return await self._infer(request, call)
        raise RuntimeError(UNREACHABLE)

    async def _infer(self, request: Any, call: Call) -> Any:
        model, mouse = convert.resolve(self._plane.store, request.model_name, request.model_version)
        call.model = model.name
        convert.requested_outputs(request)
        arrays, batched = convert.input_arrays(request, self._plane.settings.max_batch_size)
        sequence_id, start, end = convert.sequence_parameters(request)
        frames_label = self._plane.metrics.frames.labels(model.name, call.rpc)
        if not sequence_id:
            result = await self._plane.predict(
                model.name, model.version.version, mouse.mouse, *arrays, batch=batched
            )
            frames_label.inc(result.responses[..., 0].size)  # frames of every clip
            return convert.response(
                request, request.model_name, model.version.version, result.responses
            )
        if batched:
            if arrays[0].shape[0] != 1:
                raise InvalidInputError(
                    f"video: a batch of {arrays[0].shape[0]} in sequence {sequence_id}; a "
                    "sequence is one stream: a batch axis of 1 at most"
                )
            arrays = (arrays[0][0], arrays[1][0], arrays[2][0])
        self._ensure_reaper()
        key = (request.model_name, sequence_id)
        sequence = self.sequences.get(key, start, model.name, model.version.version, mouse.mouse)
        try:
            async with sequence.lock:
                result = await self._plane.step(sequence.session, *arrays)
        except BaseException:
            self.sequences.end(key)  # a failed step ends its sequence, as on a stream
            raise
        if end:
            self.sequences.end(key)
        frames_label.inc(result.responses.shape[0])
        responses = result.responses[None] if batched else result.responses
        return convert.response(request, request.model_name, model.version.version, responses)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Triton's streaming extension: one response (or error message) per request."""
        async for request in request_iterator:
            if isinstance(request, Malformed):  # undecodable bytes: reported, the stream goes on
                self._plane.metrics.count("oip.ModelStreamInfer", "", "INVALID_ARGUMENT")
                yield oip.ModelStreamInferResponse(
                    error_message=f"INVALID_ARGUMENT: {request.message}"
                )
                continue
            call = Call("oip.ModelStreamInfer", request.model_name)
            try:
                reply = await self._infer(request, call)
            except Exception as err:  # reported in-stream, the stream goes on
                code, message = status_of(err, call.rpc)
                self._plane.metrics.count(call.rpc, call.model, code.name)
                yield oip.ModelStreamInferResponse(error_message=f"{code.name}: {message}")
                continue
            self._plane.metrics.count(call.rpc, call.model, "OK")
            yield oip.ModelStreamInferResponse(infer_response=reply)
