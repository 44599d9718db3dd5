"""``sensorium.v1.Predictor``: thin handlers that decode, call the data plane, encode."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

import grpc
import numpy as np
from google.protobuf.message import Message

from sensorium_api import wire
from sensorium_api.tensors import lean_parser, tensor_field
from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_api.v1 import predictor_pb2_grpc as pb_grpc
from sensorium_server import convert
from sensorium_server.dataplane import Clip, DataPlane, Part, Prediction
from sensorium_server.errors import FailedPreconditionError
from sensorium_server.inputs import check_response_size
from sensorium_server.observe import UNREACHABLE, observe
from sensorium_server.runtime import LoadedModel, MouseRuntime
from sensorium_server.sessions import Attachment, StreamSession
from sensorium_server.streams import DRAINING, StreamCall

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

    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> bytes:
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
            # Megabytes of responses: encode off the event loop, where streams are served.
            return await asyncio.to_thread(_predict_reply, result, dtype)
        raise RuntimeError(UNREACHABLE)

    async def PredictChunks(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Responses to a whole clip, one message per part as the parts are computed."""
        async with observe(self._plane.metrics, context, "PredictChunks", request.model) as call:
            dtype = convert.response_dtype(request.response_dtype)
            video, behavior, pupil_center = convert.input_arrays(request)
            clip = await self._plane.clip(
                request.model, request.version, request.mouse, video, behavior, pupil_center
            )
            call.model = clip.model.name
            check_response_size(
                self._plane.part_frames(clip),
                clip.mouse.neuron_count,
                dtype.itemsize,
                self._plane.message_limit,
            )
            frames = self._plane.metrics.frames.labels(clip.model.name, "PredictChunks")
            async for part in self._plane.parts(clip):
                frames.inc(part.responses.shape[1])
                yield await asyncio.to_thread(_part_reply, clip, part, dtype)

    def _count_frames(self, result: Prediction, rpc: str) -> None:
        self._plane.metrics.frames.labels(result.model.name, rpc).inc(result.responses.shape[0])

    async def StreamPredict(
        self,
        request_iterator: AsyncIterator[pb.StreamPredictRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """A stream session: open (new, resumed, from a snapshot), then frames, resets, snapshots.

        It runs until the client half-closes, the call breaks (the session is kept for
        a resume), it idles, or the server drains (its state is handed over).
        """
        stream = StreamCall(self._plane, context)
        session: StreamSession | None = None
        async with observe(self._plane.metrics, context, "StreamPredict", "", unary=False) as call:
            try:
                first = await stream.read()
                if first is None:
                    return
                if first.WhichOneof("kind") != "open":
                    raise FailedPreconditionError(
                        f"the first message of a stream must be 'open', got "
                        f"{first.WhichOneof('kind')!r}"
                    )
                session, origin = await self._open(first.open, stream.attachment)
                call.model = session.model.name
                await stream.write(self._opened(session, origin))
                stream.drain(functools.partial(self._hand_over, stream, session))
                if self._plane.draining:  # a resume while draining: hand the state over now
                    stream.attachment.interrupt(DRAINING)
                while (request := await stream.read()) is not None:
                    if stream.attachment.reason is not None:
                        break  # not answered: the client sends it again where it continues
                    await stream.write(await self._handle(session, request))
                await self._end(stream, session)
            except asyncio.CancelledError:  # the client cancelled, or its connection broke
                if stream.notice is not None:
                    stream.notice.cancel()  # a drain notice being written: nobody will read it
                if session is not None:
                    self._plane.sessions.detach(session, stream.attachment)
                    self._plane.metrics.stream_events.labels("detached").inc()
                    session = None
                raise
            finally:
                if session is not None and session.owner is stream.attachment:
                    self._plane.close_stream(session)

    async def _end(self, stream: StreamCall, session: StreamSession) -> None:
        """The client half-closed (nothing to do), or the call was interrupted."""
        reason = stream.attachment.reason
        if reason == DRAINING:
            if stream.notice is None:
                stream.notice = asyncio.ensure_future(self._hand_over(stream, session))
            await stream.notice
            await stream.acknowledged()
        elif reason is not None:
            raise FailedPreconditionError(reason)

    async def _hand_over(self, stream: StreamCall, session: StreamSession) -> None:
        """Send the session's state in the stream's last message (``draining``)."""
        async with session.lock:
            snapshot = self._plane.snapshot(session)
        await stream.write(convert.snapshot_reply(snapshot, DRAINING))
        self._plane.metrics.stream_events.labels("handed_off").inc()

    async def _open(self, request: pb.StreamOpen, owner: Attachment) -> tuple[StreamSession, int]:
        dtype = convert.response_dtype(request.response_dtype)
        origin = request.WhichOneof("origin")
        if origin == "resume_session_id":
            session = await self._plane.resume_stream(request.resume_session_id, owner)
            for asked, held, name in (
                (request.model, session.model.name, "model"),
                (request.mouse, session.mouse.mouse, "mouse"),
            ):
                if asked and asked != held:
                    raise FailedPreconditionError(
                        f"resume: the session serves {name} {held!r}, the stream asks for "
                        f"{asked[:80]!r}"
                    )
            return session, pb.STREAM_ORIGIN_RESUMED
        snapshot = convert.snapshot_of(request.snapshot) if origin == "snapshot" else None
        session = self._plane.open_stream(
            request.model, request.version, request.mouse, dtype, owner, snapshot
        )
        return session, pb.STREAM_ORIGIN_NEW if snapshot is None else pb.STREAM_ORIGIN_SNAPSHOT

    def _opened(self, session: StreamSession, origin: int) -> pb.StreamPredictResponse:
        return pb.StreamPredictResponse(
            opened=pb.StreamOpened(
                session_id=session.id,
                model=session.model.name,
                version=session.model.version.version,
                mouse=session.mouse.mouse,
                neuron_count=session.mouse.neuron_count,
                burn_in_frames=int(session.model.manifest["burn_in_frames"]),
                max_frames_per_step=self._plane.settings.max_step_frames,
                next_frame=session.next_frame,
                trial_count=session.trial_count,
                origin=origin,  # type: ignore[arg-type]
                resume_window_s=self._plane.settings.idle_timeout_s,
                replica_id=self._plane.sessions.replica_id,
                streaming_mode=convert.STREAMING_MODES[session.model.streaming.mode],
                window_frames=session.model.streaming.window_frames,
                latency_frames=session.model.streaming.latency_frames,
            )
        )

    async def _handle(
        self, session: StreamSession, request: pb.StreamPredictRequest
    ) -> pb.StreamPredictResponse | bytes:
        kind = request.WhichOneof("kind")
        if kind == "reset":
            async with session.lock:
                session.reset()
            return pb.StreamPredictResponse(
                reset=pb.StreamResetDone(trial_count=session.trial_count)
            )
        if kind == "snapshot":
            async with session.lock:
                snapshot = self._plane.snapshot(session)
            return convert.snapshot_reply(snapshot)
        if kind != "frames":
            raise FailedPreconditionError(
                f"expected 'frames', 'reset' or 'snapshot' on an open stream, got {kind!r}"
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
                replayed=result.replayed,
                next_frame=result.next_frame,
            )
        )


_RESPONSES_FIELD = pb.PredictResponse.DESCRIPTOR.fields_by_name["responses"].number


def _predict_reply(result: Prediction, dtype: np.dtype) -> bytes:
    """A serialized ``PredictResponse`` (registered with a pass-through serializer)."""
    part = Part(0, result.responses, result.timing)
    return _reply(result.model, result.mouse, part, result.responses.shape[0], dtype)


def _part_reply(clip: Clip, part: Part, dtype: np.dtype) -> bytes:
    """A serialized ``PredictResponse`` holding one part of a clip's responses."""
    one = Part(part.first_frame, part.responses[0], part.timing)  # native calls: batch of 1
    return _reply(clip.model, clip.mouse, one, clip.frames, dtype)


def _reply(
    model: LoadedModel, mouse: MouseRuntime, part: Part, total_frames: int, dtype: np.dtype
) -> bytes:
    """``PredictResponse`` bytes, the responses copied once and without the GIL.

    (:func:`sensorium_api.wire.join`): a long clip's reply does not stall the streams
    served meanwhile.
    """
    head = pb.PredictResponse(
        model=model.name,
        version=model.version.version,
        mouse=mouse.mouse,
        timing=convert.timing_message(part.timing),
        first_frame=part.first_frame,
        total_frames=total_frames,
    ).SerializeToString()
    responses = part.responses.astype(dtype, copy=False)
    return wire.join([head, *tensor_field(_RESPONSES_FIELD, responses)])


def _serialize(message: bytes | Message) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_to_server(servicer: PredictorServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer``; a handler may return a message or its serialized bytes."""
    handlers = {
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.ListModels, pb.ListModelsRequest.FromString, _serialize
        ),
        "GetModel": grpc.unary_unary_rpc_method_handler(
            servicer.GetModel, pb.GetModelRequest.FromString, _serialize
        ),
        "Predict": grpc.unary_unary_rpc_method_handler(
            servicer.Predict, lean_parser(pb.PredictRequest), _serialize
        ),
        "PredictChunks": grpc.unary_stream_rpc_method_handler(
            servicer.PredictChunks, lean_parser(pb.PredictRequest), _serialize
        ),
        "StreamPredict": grpc.stream_stream_rpc_method_handler(
            servicer.StreamPredict, pb.StreamPredictRequest.FromString, _serialize
        ),
    }
    service = pb.DESCRIPTOR.services_by_name["Predictor"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
