"""``sensorium.v1.Predictor``: thin handlers that decode, call the data plane, encode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from sensorium_server import convert
from sensorium_server.dataplane import DataPlane, Prediction
from sensorium_server.errors import FailedPreconditionError, IdleTimeoutError
from sensorium_server.observe import UNREACHABLE, observe
from sensorium_server.sessions import StreamSession

logger = logging.getLogger(__name__)


class PredictorServicer(pb_grpc.PredictorServicer):
    """The native API over a :class:`DataPlane`."""

    def __init__(self, plane: DataPlane) -> None:
        """Serve ``plane``."""
        self._plane = plane

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        """Every served model version."""
        async with observe(self._plane.metrics, context, "ListModels", ""):
            models = [convert.manifest_message(m) for m in self._plane.store.served()]
            return pb.ListModelsResponse(models=models)
        raise RuntimeError(UNREACHABLE)

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        """One model version (version 0: the latest)."""
        async with observe(self._plane.metrics, context, "GetModel", request.model) as call:
            model = self._plane.store.get(request.model, request.version)
            call.model = model.name
            return pb.GetModelResponse(model=convert.manifest_message(model))
        raise RuntimeError(UNREACHABLE)

    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        """Responses to a whole clip, from the clip graph."""
        async with observe(self._plane.metrics, context, "Predict", request.model) as call:
            dtype = convert.response_dtype(request.response_dtype)
            video, behavior, pupil_center = convert.input_arrays(request)
            result = await self._plane.predict(
                request.model,
                request.version,
                request.mouse,
                video,
                behavior,
                pupil_center,
                dtype.itemsize,
            )
            call.model = result.model.name
            self._count_frames(result, "Predict")
            return pb.PredictResponse(
                model=result.model.name,
                version=result.model.version.version,
                mouse=result.mouse.mouse,
                responses=convert.responses_tensor(result.responses, dtype),
                timing=convert.timing_message(result.timing),
            )
        raise RuntimeError(UNREACHABLE)

    def _count_frames(self, result: Prediction, rpc: str) -> None:
        self._plane.metrics.frames.labels(result.model.name, rpc).inc(result.responses.shape[0])

    async def _next(
        self, requests: AsyncIterator[pb.StreamPredictRequest]
    ) -> pb.StreamPredictRequest | None:
        timeout = self._plane.settings.idle_timeout_s
        try:
            async with asyncio.timeout(timeout):  # no task per message, unlike wait_for
                return await anext(requests)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise IdleTimeoutError(
                f"no message for {timeout:g} s; the stream session was closed"
            ) from None

    async def StreamPredict(
        self,
        request_iterator: AsyncIterator[pb.StreamPredictRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.StreamPredictResponse]:
        """A stream session: open, then frames (and resets), until the client half-closes."""
        session: StreamSession | None = None
        async with observe(self._plane.metrics, context, "StreamPredict", "", unary=False) as call:
            try:
                first = await self._next(request_iterator)
                if first is None:
                    return
                if first.WhichOneof("kind") != "open":
                    raise FailedPreconditionError(
                        f"the first message of a stream must be 'open', got "
                        f"{first.WhichOneof('kind')!r}"
                    )
                session = self._open(first.open)
                call.model = session.model.name
                yield self._opened(session)
                while (request := await self._next(request_iterator)) is not None:
                    yield await self._handle(session, request)
            finally:
                if session is not None:
                    self._plane.close_stream(session)

    def _open(self, request: pb.StreamOpen) -> StreamSession:
        dtype = convert.response_dtype(request.response_dtype)
        return self._plane.open_stream(request.model, request.version, request.mouse, dtype)

    def _opened(self, session: StreamSession) -> pb.StreamPredictResponse:
        return pb.StreamPredictResponse(
            opened=pb.StreamOpened(
                session_id=session.id,
                model=session.model.name,
                version=session.model.version.version,
                mouse=session.mouse.mouse,
                neuron_count=session.mouse.neuron_count,
                burn_in_frames=int(session.model.manifest["burn_in_frames"]),
                max_frames_per_step=self._plane.settings.max_step_frames,
            )
        )

    async def _handle(
        self, session: StreamSession, request: pb.StreamPredictRequest
    ) -> pb.StreamPredictResponse:
        kind = request.WhichOneof("kind")
        if kind == "reset":
            session.reset()
            return pb.StreamPredictResponse(
                reset=pb.StreamResetDone(trial_count=session.trial_count)
            )
        if kind != "frames":
            raise FailedPreconditionError(
                f"expected 'frames' or 'reset' on an open stream, got {kind!r}"
            )
        frames = request.frames
        video, behavior, pupil_center = convert.input_arrays(frames)
        index = frames.frame_index if frames.HasField("frame_index") else None
        result = await self._plane.step(session, video, behavior, pupil_center, index)
        self._count_frames(result, "StreamPredict")
        return pb.StreamPredictResponse(
            responses=pb.StreamResponses(
                frame_index=result.first_frame,
                responses=convert.responses_tensor(result.responses, session.response_dtype),
                timing=convert.timing_message(result.timing),
            )
        )
