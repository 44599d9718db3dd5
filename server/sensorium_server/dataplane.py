"""The protocol-agnostic core of the server: predict a clip, open and step streams.

Servicers (the native API, and any other protocol) decode their messages into
numpy arrays, call this, and encode the result; they hold no state themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorium_server.errors import FailedPreconditionError
from sensorium_server.inputs import check_inputs, check_response_size
from sensorium_server.metrics import Metrics
from sensorium_server.runtime import LoadedModel, ModelStore, MouseRuntime
from sensorium_server.scheduler import Scheduler, Timing
from sensorium_server.sessions import SessionManager, StreamSession
from sensorium_server.settings import Settings


@dataclass(frozen=True)
class Prediction:
    """Responses (T, N) of one request and where they came from."""

    model: LoadedModel
    mouse: MouseRuntime
    responses: np.ndarray
    timing: Timing
    first_frame: int = 0


class DataPlane:
    """Everything the servicers ask of the server."""

    def __init__(self, settings: Settings, store: ModelStore, metrics: Metrics) -> None:
        """Wire the store, a scheduler and the session manager together."""
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.scheduler = Scheduler(settings.workers, settings.max_queue, metrics.observe_inference)
        self.sessions = SessionManager(settings.max_sessions)
        self.draining = False

    @property
    def message_limit(self) -> int:
        """Largest message the server sends, in bytes."""
        return self.settings.max_message_mb * 2**20

    def resolve(self, model: str, version: int, mouse: str) -> tuple[LoadedModel, MouseRuntime]:
        """The served model and mouse a request names (empty names: the only one)."""
        loaded = self.store.get(model, version)
        return loaded, self.store.mouse(loaded, mouse)

    async def predict(
        self,
        model: str,
        version: int,
        mouse: str,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        response_itemsize: int = 4,
    ) -> Prediction:
        """Responses to one trial: the clip graph, or chunks of the step graph.

        A clip longer than ``clip_chunk_frames`` runs through the streaming graph in
        chunks (exact: stepping equals the clip, checked at export and at load). Peak
        memory then follows the chunk, not the clip (the readout holds frames x
        channels x neurons), and each chunk queues on its own, so a long clip does not
        hold a worker for its whole length while streams wait.
        """
        loaded, runtime = self.resolve(model, version, mouse)
        feeds = check_inputs(
            video, behavior, pupil_center, loaded.frame_shape, self.settings.max_clip_frames
        )
        check_response_size(
            video.shape[0], runtime.neuron_count, response_itemsize, self.message_limit
        )
        chunk = self.settings.clip_chunk_frames
        if chunk and video.shape[0] > chunk:
            responses, timing = await self._chunked(loaded, runtime, feeds, chunk)
            return Prediction(loaded, runtime, responses, timing)
        outputs, timing = await self.scheduler.run(runtime.clip, feeds, (loaded.name, "clip"))
        return Prediction(loaded, runtime, outputs[0][0], timing)

    async def _chunked(
        self,
        loaded: LoadedModel,
        runtime: MouseRuntime,
        feeds: dict[str, np.ndarray],
        chunk: int,
    ) -> tuple[np.ndarray, Timing]:
        state = runtime.initial_state()
        parts, queue_s, compute_s = [], 0.0, 0.0
        for start in range(0, feeds["video"].shape[1], chunk):
            part = {name: array[:, start : start + chunk] for name, array in feeds.items()}
            outputs, timing = await self.scheduler.run(
                runtime.chunks, runtime.step_feeds(part, state), (loaded.name, "clip")
            )
            parts.append(outputs[0][0])
            state = outputs[1:]
            queue_s, compute_s = queue_s + timing.queue_s, compute_s + timing.compute_s
        return np.concatenate(parts), Timing(queue_s, compute_s)

    def open_stream(
        self, model: str, version: int, mouse: str, response_dtype: np.dtype
    ) -> StreamSession:
        """A new stream session with zero state."""
        loaded, runtime = self.resolve(model, version, mouse)
        session = self.sessions.open(loaded, runtime, response_dtype)
        self.metrics.sessions.labels(loaded.name).set(self.sessions.by_model(loaded.name))
        return session

    async def step(
        self,
        session: StreamSession,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        frame_index: int | None = None,
    ) -> Prediction:
        """Run the step graph on the next frames of a stream and keep the new state."""
        if frame_index is not None and frame_index != session.next_frame:
            raise FailedPreconditionError(
                f"frame_index: got {frame_index}, expected {session.next_frame} (the next "
                "frame of this trial; send reset to start a new trial)"
            )
        feeds = check_inputs(
            video,
            behavior,
            pupil_center,
            session.model.frame_shape,
            self.settings.max_step_frames,
        )
        check_response_size(
            video.shape[0],
            session.mouse.neuron_count,
            session.response_dtype.itemsize,
            self.message_limit,
        )
        outputs, timing = await self.scheduler.run(
            session.mouse.step,
            session.mouse.step_feeds(feeds, session.state),
            (session.model.name, "step"),
        )
        session.state = outputs[1:]
        first = session.next_frame
        session.next_frame += int(video.shape[0])
        return Prediction(session.model, session.mouse, outputs[0][0], timing, first)

    def close_stream(self, session: StreamSession) -> None:
        """End a session and free its state."""
        self.sessions.close(session)
        name = session.model.name
        self.metrics.sessions.labels(name).set(self.sessions.by_model(name))
