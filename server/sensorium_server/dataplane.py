"""The protocol-agnostic core of the server: predict a clip, open and step streams.

Servicers (the native API, and any other protocol) decode their messages into
numpy arrays, call this, and encode the result; they hold no state themselves.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sensorium_server.errors import (
    FailedPreconditionError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from sensorium_server.inputs import check_inputs, check_response_size
from sensorium_server.metrics import Metrics
from sensorium_server.runtime import LoadedModel, ModelStore, MouseRuntime
from sensorium_server.scheduler import Scheduler, Timing
from sensorium_server.sessions import (
    Attachment,
    Replayable,
    SessionManager,
    StreamSession,
    digest,
)
from sensorium_server.settings import Settings
from sensorium_server.statistics import Statistics
from sensorium_server.stepping import run_graph

if TYPE_CHECKING:
    from sensorium_server.live import LiveRepository


@dataclass(frozen=True)
class Prediction:
    """Responses (T, N) of one request and where they came from."""

    model: LoadedModel
    mouse: MouseRuntime
    responses: np.ndarray
    timing: Timing
    first_frame: int = 0  # index in the trial of the first frame answered
    replayed: bool = False
    next_frame: int = 0  # a stream step: the next frame the session expects


@dataclass(frozen=True)
class Clip:
    """A whole clip, checked: the model and mouse it asks for and the graph's feeds."""

    model: LoadedModel
    mouse: MouseRuntime
    feeds: dict[str, np.ndarray]  # (B, T, ...) each

    @property
    def batch(self) -> int:
        """B: clips of equal length run together."""
        return int(self.feeds["video"].shape[0])

    @property
    def frames(self) -> int:
        """T."""
        return int(self.feeds["video"].shape[1])

    @property
    def version(self) -> int:
        """The model version that runs it."""
        return self.model.version.version


@dataclass(frozen=True)
class Part:
    """Responses to consecutive frames of a clip, from ``first_frame`` on."""

    first_frame: int
    responses: np.ndarray  # (B, frames, N)
    timing: Timing


@dataclass(frozen=True)
class Snapshot:
    """A stream session's state, enough to continue it on a replica with the same graphs."""

    model: str
    version: int
    mouse: str
    manifest_sha256: str
    next_frame: int
    trial_count: int
    state: dict[str, np.ndarray]
    session_id: str = ""


class DataPlane:
    """Everything the servicers ask of the server."""

    def __init__(self, settings: Settings, store: ModelStore, metrics: Metrics) -> None:
        """Wire the store, a scheduler and the session manager together."""
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.scheduler = Scheduler(
            settings.workers,
            settings.max_queue,
            metrics.observe_inference,
            settings.clip_workers,
            settings.clip_priority,
        )
        self.sessions = SessionManager(
            settings.max_sessions,
            settings.idle_timeout_s,
            self._count_sessions,
            metrics.stream_events.labels("expired").inc,
        )
        self.statistics = Statistics()
        self.draining = False
        # Loads and retires versions while serving (set once the start-up load is done).
        self.live: LiveRepository | None = None
        # While draining: the monotonic time by which clip work must be done (None: no limit).
        self.clip_deadline: float | None = None

    def drain(self, seconds: float) -> None:
        """Start draining: clips not done within ``seconds`` stop at their next chunk."""
        self.draining = True
        self.clip_deadline = time.monotonic() + seconds

    def _count_sessions(self, model: str) -> None:
        self.metrics.sessions.labels(model).set(self.sessions.by_model(model))

    @property
    def message_limit(self) -> int:
        """Largest message the server sends, in bytes."""
        return self.settings.max_message_mb * 2**20

    def resolve(self, model: str, version: int, mouse: str) -> tuple[LoadedModel, MouseRuntime]:
        """The served model and mouse a request names (empty names: the only one)."""
        loaded = self.store.get(model, version)
        return loaded, self.store.mouse(loaded, mouse)

    async def clip(
        self,
        model: str,
        version: int,
        mouse: str,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        batch: bool = False,
    ) -> Clip:
        """A checked clip, ready for :meth:`parts` (raises on a bad request).

        With ``batch``, the arrays have a leading axis of clips of equal length (OIP
        ModelInfer), which run together.
        """
        loaded, runtime = self.resolve(model, version, mouse)
        started = time.perf_counter()
        try:
            feeds = await asyncio.to_thread(  # a clip's checks take milliseconds: off the loop
                _checked_batch if batch else check_inputs,
                video,
                behavior,
                pupil_center,
                loaded.frame_shape,
                self.settings.max_clip_frames,
            )
        except Exception:  # a request for this model version that failed
            seconds = time.perf_counter() - started
            self.statistics.finished(loaded.name, loaded.version.version, seconds, ok=False)
            raise
        return Clip(loaded, runtime, feeds)

    def part_frames(self, clip: Clip) -> int:
        """Frames in the largest part of :meth:`parts`: a chunk, or the whole clip."""
        chunk = self.settings.clip_chunk_frames
        if chunk and clip.frames > chunk and clip.mouse.chunks is not None:
            return chunk
        return clip.frames

    async def parts(self, clip: Clip) -> AsyncIterator[Part]:
        """The responses to ``clip`` as they are computed, in order of frames.

        A clip longer than ``clip_chunk_frames`` runs through the streaming graph in
        chunks (exact: stepping equals the clip, checked at export and at load), one
        part per chunk. Peak memory then follows the chunk, not the clip, and each
        chunk queues on its own, so a long clip does not hold a worker for its whole
        length while streams wait. A shorter clip is one part, from the clip graph.
        """
        started, ok = time.perf_counter(), False
        try:
            async for part in self._parts(clip):
                self.statistics.executed(clip.model.name, clip.version, part.timing, clip.batch)
                yield part
            ok = True
        finally:
            seconds = time.perf_counter() - started
            self.statistics.finished(clip.model.name, clip.version, seconds, ok, clip.batch)

    async def _parts(self, clip: Clip) -> AsyncIterator[Part]:
        loaded, runtime, feeds = clip.model, clip.mouse, clip.feeds
        if self.part_frames(clip) == clip.frames:
            outputs, timing = await self.scheduler.run(
                lambda: run_graph(runtime.clip, feeds), (loaded.name, "clip")
            )
            yield Part(0, outputs[0], timing)
            return
        chunk, stepper = self.settings.clip_chunk_frames, runtime.chunks
        assert stepper is not None
        state = stepper.initial_state(clip.batch)
        for start in range(0, clip.frames, chunk):
            self._check_clip_deadline()
            part = {name: array[:, start : start + chunk] for name, array in feeds.items()}
            (responses, state), timing = await self.scheduler.run(
                functools.partial(stepper.run, part, state), (loaded.name, "clip")
            )
            yield Part(start, responses, timing)

    async def predict(
        self,
        model: str,
        version: int,
        mouse: str,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        response_itemsize: int = 4,
        batch: bool = False,
    ) -> Prediction:
        """Responses to one trial in one array (the parts of :meth:`parts` joined).

        With ``batch``: B clips of equal length in, (B, T, N) out; else (T, N).
        """
        clip = await self.clip(model, version, mouse, video, behavior, pupil_center, batch)
        check_response_size(
            clip.batch * clip.frames, clip.mouse.neuron_count, response_itemsize, self.message_limit
        )
        parts, queue_s, compute_s = [], 0.0, 0.0
        async for part in self.parts(clip):
            parts.append(part.responses)
            queue_s, compute_s = queue_s + part.timing.queue_s, compute_s + part.timing.compute_s
        if len(parts) == 1:
            responses = parts[0]
        else:
            responses = await asyncio.to_thread(np.concatenate, parts, axis=1)
        responses = responses if batch else responses[0]
        return Prediction(clip.model, clip.mouse, responses, Timing(queue_s, compute_s))

    def _check_clip_deadline(self) -> None:
        """While draining, past the deadline: UNAVAILABLE, so the client retries elsewhere."""
        if self.clip_deadline is not None and time.monotonic() > self.clip_deadline:
            raise UnavailableError(
                "this replica is draining and the clip would not finish before it stops; "
                "retry on another replica"
            )

    def open_stream(
        self,
        model: str,
        version: int,
        mouse: str,
        response_dtype: np.dtype,
        owner: Attachment,
        snapshot: Snapshot | None = None,
    ) -> StreamSession:
        """A new stream session held by ``owner``: zero state, or continuing ``snapshot``.

        Raises:
            UnavailableError: while draining (open it on another replica).
            FailedPreconditionError: a snapshot of another model version or mouse.
            InvalidInputError: a snapshot whose state does not fit the step graph.
        """
        if self.draining:
            raise UnavailableError("this replica is draining; open the stream on another one")
        state = None
        if snapshot is None:
            loaded, runtime = self.resolve(model, version, mouse)
        else:
            loaded, runtime = self._snapshot_target(model, version, mouse, snapshot)
        if runtime.step is None:
            raise FailedPreconditionError(
                f"model {loaded.name} version {loaded.version.version} does not stream: it "
                "has no step graph and no checked window (clip only); use Predict, or export "
                "it with window_frames"
            )
        if snapshot is not None:
            state = runtime.step.adopt(_snapshot_state(snapshot, loaded, runtime))
        session = self.sessions.open(loaded, runtime, response_dtype, owner, state)
        if snapshot is not None:
            session.next_frame, session.trial_count = snapshot.next_frame, snapshot.trial_count
            self.metrics.stream_events.labels("snapshot_opened").inc()
        return session

    def _snapshot_target(
        self, model: str, version: int, mouse: str, snapshot: Snapshot
    ) -> tuple[LoadedModel, MouseRuntime]:
        model = _match(model, snapshot.model, "model")
        mouse = _match(mouse, snapshot.mouse, "mouse")
        if version and version != snapshot.version:
            raise FailedPreconditionError(
                f"snapshot: taken on version {snapshot.version}, the stream asks for {version}"
            )
        try:
            return self.resolve(model, snapshot.version, mouse)
        except NotFoundError as err:
            raise FailedPreconditionError(f"snapshot: {err}") from None

    async def resume_stream(self, session_id: str, owner: Attachment) -> StreamSession:
        """Reattach ``owner`` to an open session (its previous call, if any, is told to end)."""
        session = self.sessions.find(session_id)
        async with session.lock:  # a step of the previous call finishes first
            self.sessions.find(session_id)  # raises if it closed meanwhile
            self.sessions.attach(session, owner)
        self.metrics.stream_events.labels("resumed").inc()
        return session

    def snapshot(self, session: StreamSession) -> Snapshot:
        """The session's state now (call it holding ``session.lock`` or between steps)."""
        names = [spec.input for spec in session.mouse.state]
        return Snapshot(
            session.model.name,
            session.model.version.version,
            session.mouse.mouse,
            session.model.version.manifest_sha256,
            session.next_frame,
            session.trial_count,
            dict(zip(names, session.mouse.stepper.arrays(session.state), strict=True)),
            session.id,
        )

    async def step(
        self,
        session: StreamSession,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        frame_index: int | None = None,
    ) -> Prediction:
        """Run the step graph on the next frames of a stream and keep the new state.

        Frames sent again with the same ``frame_index`` and the same inputs (a client
        that lost replies in a broken connection) get their kept reply back; the state
        does not step twice.
        """
        started, ok = time.perf_counter(), False
        try:
            result = await self._checked_step(session, video, behavior, pupil_center, frame_index)
            ok = True
            return result
        finally:
            version = session.model.version.version
            seconds = time.perf_counter() - started
            self.statistics.finished(session.model.name, version, seconds, ok)

    async def _checked_step(
        self,
        session: StreamSession,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        frame_index: int | None,
    ) -> Prediction:
        async with session.lock:
            value = None
            if frame_index is not None:
                value = digest(video, behavior, pupil_center)
                if frame_index < session.next_frame:
                    kept = session.replay(frame_index, value)
                    if kept is not None:
                        self.metrics.stream_events.labels("replayed").inc()
                        return Prediction(
                            session.model,
                            session.mouse,
                            kept.responses,
                            kept.timing,
                            _answered(session, kept.first_frame),
                            replayed=True,
                            next_frame=kept.first_frame + int(video.shape[0]),
                        )
                if frame_index != session.next_frame:
                    raise FailedPreconditionError(
                        f"frame_index: got {frame_index}, expected {session.next_frame} (the "
                        "next frame of this trial; frames answered before are replayed only "
                        "with the same inputs; send reset to start a new trial)"
                    )
            return await self._step(session, video, behavior, pupil_center, value)

    async def _step(
        self,
        session: StreamSession,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        value: int | None,
    ) -> Prediction:
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
        # A ring graph writes the state in place: once a step is under way, its frames are
        # part of the stream even if the call breaks meanwhile, so the step is finished
        # and kept (a resume then replays its reply) before the cancellation goes on.
        (outputs, state), timing, cancelled = await self.scheduler.run_to_end(
            functools.partial(session.mouse.stepper.run, feeds, session.state),
            (session.model.name, "step"),
        )
        self.statistics.executed(session.model.name, session.model.version.version, timing)
        if not session.state:  # closed while the step ran
            if cancelled:
                raise asyncio.CancelledError
            raise FailedPreconditionError("the stream session was closed")
        session.state = state
        first = session.next_frame
        session.next_frame += int(video.shape[0])
        responses = outputs[0]
        if value is not None:
            session.replies.append(Replayable(session.trial_count, first, value, responses, timing))
        if cancelled:
            raise asyncio.CancelledError
        return Prediction(
            session.model,
            session.mouse,
            responses,
            timing,
            _answered(session, first),
            next_frame=session.next_frame,
        )

    def close_stream(self, session: StreamSession) -> None:
        """End a session and free its state."""
        self.sessions.close(session)


def _answered(session: StreamSession, first: int) -> int:
    """The first frame a step answers whose first input frame is ``first``.

    A window stream of a model that is not causal answers ``latency_frames`` late.
    """
    return max(0, first - session.model.streaming.latency_frames)


def _match(asked: str, snapshot: str, field: str) -> str:
    if asked and asked != snapshot:
        raise FailedPreconditionError(
            f"snapshot: its {field} is {snapshot[:80]!r}, the stream asks for {asked[:80]!r}"
        )
    return snapshot


def _snapshot_state(
    snapshot: Snapshot, loaded: LoadedModel, runtime: MouseRuntime
) -> list[np.ndarray]:
    """The snapshot's state tensors in step-graph order, checked against this replica."""
    served = loaded.version.manifest_sha256
    same = served == snapshot.manifest_sha256 and loaded.version.version == snapshot.version
    replaced = snapshot.manifest_sha256 in loaded.version.state_compatible - {served}
    if not (same or replaced):
        raise FailedPreconditionError(
            f"snapshot: taken on {snapshot.model} version {snapshot.version} (manifest "
            f"{snapshot.manifest_sha256[:12]}), this replica serves version "
            f"{loaded.version.version} (manifest {served[:12]}): state only continues on "
            "the same graphs or on a re-export that lists them (state_compatible_with)"
        )
    if snapshot.next_frame < 0 or snapshot.trial_count < 1:
        raise InvalidInputError(
            f"snapshot: next_frame {snapshot.next_frame} and trial_count "
            f"{snapshot.trial_count}, expected >= 0 and >= 1"
        )
    expected = {spec.input: (1, *spec.shape) for spec in runtime.state}
    if set(snapshot.state) != set(expected):
        raise InvalidInputError(
            f"snapshot: state tensors {sorted(snapshot.state)[:8]}, expected {sorted(expected)}"
        )
    state = []
    for name, shape in expected.items():
        array = snapshot.state[name]
        if array.dtype != np.float32 or tuple(array.shape) != shape:
            raise InvalidInputError(
                f"snapshot: state {name} is {array.dtype} {tuple(array.shape)}, "
                f"expected float32 {shape}"
            )
        if not np.isfinite(array).all():
            raise InvalidInputError(f"snapshot: state {name} holds NaN or infinite values")
        state.append(np.array(array))  # writable, owned: the wire buffer may be freed
    return state


def _checked_batch(
    video: np.ndarray,
    behavior: np.ndarray,
    pupil_center: np.ndarray,
    frame_shape: tuple[int, int],
    max_frames: int,
) -> dict[str, np.ndarray]:
    """:func:`check_inputs` of every clip of a batch, stacked: (B, T, ...) feeds."""
    clips = [
        check_inputs(v, b, p, frame_shape, max_frames)
        for v, b, p in zip(video, behavior, pupil_center, strict=True)
    ]
    return {name: np.concatenate([c[name] for c in clips]) for name in clips[0]}
