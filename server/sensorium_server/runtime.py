"""Loaded models: ONNX Runtime sessions per mouse, warmed up and parity-checked.

A version is served only after :func:`sensorium_server.repository.read_version`
accepts it and its streaming path, stepped frame by frame, reproduces its
whole-clip graph on a random clip (design.md: parity at export and again at load):
the step graph, or for a clip-only model with a checked window, the clip graph run
window by window (:mod:`sensorium_server.windowing`).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sensorium_server.errors import NotFoundError, UnavailableError, short
from sensorium_server.repository import (
    ModelVersion,
    MouseGraphs,
    RepositoryError,
    Streaming,
    list_versions,
    read_version,
)
from sensorium_server.ring import RingStepper
from sensorium_server.scheduler import lower_priority
from sensorium_server.settings import Settings, parse_version_policy
from sensorium_server.stepping import State, StateSpec, Stepper
from sensorium_server.windowing import WindowStepper

logger = logging.getLogger(__name__)
PARITY_FRAMES = 12
PARITY_TOLERANCE = 1e-3  # relative; export checks 1e-4 on CPU, GPUs may use TF32
# The step arena is grown at load for this many streams (at most this much state).
WARM_STREAMS = 16
WARM_STATE_BYTES = 64 * 2**20


@dataclass
class MouseRuntime:
    """The graphs of one mouse, ready to run."""

    mouse: str
    neuron_ids: list[int]
    clip: ort.InferenceSession
    # Streams: the step graph, the clip graph by window, or None (clip only).
    step: Stepper | WindowStepper | None
    # The step graph with the clip graph's threads: long clips run through it in
    # chunks (None without a step graph: clips run whole).
    chunks: Stepper | None
    state: list[StateSpec]
    input_defaults: dict[str, list[float]] = field(default_factory=dict)

    @property
    def neuron_count(self) -> int:
        """Number of neurons this mouse's graphs predict."""
        return len(self.neuron_ids)

    def initial_state(self) -> State:
        """Zero state of a new trial, batch of 1, where the step graph runs."""
        return self.stepper.initial_state()

    @property
    def stepper(self) -> Stepper | WindowStepper:
        """What steps this mouse's streams (only asked of a model that streams)."""
        if self.step is None:
            raise RuntimeError(f"{self.mouse}: this model has no streaming path")
        return self.step


@dataclass
class LoadedModel:
    """A served model version."""

    version: ModelVersion
    mice: dict[str, MouseRuntime]

    @property
    def name(self) -> str:
        """The model's name."""
        return self.version.name

    @property
    def manifest(self) -> dict[str, Any]:
        """The version's manifest."""
        return self.version.manifest

    @property
    def streaming(self) -> Streaming:
        """How this version streams."""
        return self.version.streaming

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of a frame."""
        frame = self.manifest["frame"]
        return int(frame["height"]), int(frame["width"])


def providers_for(setting: str) -> list[str]:
    """Execution providers for a ``--providers`` setting; CUDA only where it exists."""
    available = ort.get_available_providers()
    if setting == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeError(f"--providers cuda, but this ONNX Runtime has only {available}")
    if setting in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
        if preload is not None:  # CUDA and cuDNN from the nvidia-* wheels, when installed
            preload()
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _open(
    path: Path, settings: Settings, threads: int, priority: str = "normal", arena: bool = True
) -> ort.InferenceSession:
    """An ONNX Runtime session whose thread pool runs at OS ``priority``.

    ONNX Runtime starts a session's intra-op threads when the session is created, and
    a new thread inherits its creator's priority: so the session is created in a
    short-lived thread whose priority was set first. Without ``arena`` a run's
    buffers go back to the system when it ends (whole clips: otherwise the process
    would keep the largest clip's peak for good).

    A session below normal priority (clips, to make room for stream steps) does not
    let its idle threads spin-wait for work: spinning burned the CPU the steps
    needed (``make bench-mixed`` the same day: step p99 median 34.3 ms over four
    runs against 40.1 over six with spinning; README), at the cost of a lone clip
    on an idle server (a 300-frame whole clip on 2 threads: 634 instead of 555 ms).
    """
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if priority != "normal":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = providers_for(settings.providers)
    if priority == "normal":
        return ort.InferenceSession(str(path), options, providers=providers)
    made: list[ort.InferenceSession | BaseException] = []

    def create() -> None:
        try:
            lower_priority(priority)
            made.append(ort.InferenceSession(str(path), options, providers=providers))
        except BaseException as err:  # re-raised in the caller's thread
            made.append(err)

    thread = threading.Thread(target=create, name="onnxruntime-load")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def check_stream_parity(mouse: MouseRuntime, frame_shape: tuple[int, int]) -> float:
    """Step a random clip frame by frame; relative max error against the whole clip."""
    rng = np.random.default_rng(0)
    frames = PARITY_FRAMES + mouse.stepper.latency
    video = rng.uniform(0, 255, (1, frames, *frame_shape)).astype(np.float32)
    behavior = rng.uniform(0, 10, (1, frames, 2)).astype(np.float32)
    pupil = rng.uniform(-5, 5, (1, frames, 2)).astype(np.float32)
    clip = mouse.clip.run(None, {"video": video, "behavior": behavior, "pupil_center": pupil})[0]
    state = mouse.initial_state()
    stepped = []
    for t in range(frames):
        frame = {
            "video": video[:, t : t + 1],
            "behavior": behavior[:, t : t + 1],
            "pupil_center": pupil[:, t : t + 1],
        }
        responses, state = mouse.stepper.run(frame, state)
        stepped.append(responses)
    streamed = np.concatenate(stepped, axis=1)  # a window stream answers latency frames late
    error = np.abs(streamed - clip[:, : streamed.shape[1]]).max()
    return float(error / max(float(np.abs(clip).max()), 1e-6))


def load_version(path: Path, settings: Settings) -> LoadedModel:
    """Read, verify, open, warm up and parity-check one version folder."""
    version = read_version(path)
    states = StateSpec.of_manifest(version.manifest)
    loaded = LoadedModel(version, {})
    for name, graphs in version.mice.items():
        entry = next(m for m in version.manifest["mice"] if m["mouse"] == name)
        clip = _open(
            graphs.clip, settings, settings.clip_threads, settings.clip_priority, arena=False
        )
        step, chunks = _streaming(graphs, version.streaming, states, settings, loaded.frame_shape)
        mouse = MouseRuntime(
            name,
            graphs.neuron_ids,
            clip,
            step,
            chunks,
            step.specs if isinstance(step, WindowStepper) else states,
            dict(entry.get("input_defaults", {})),
        )
        if step is not None:
            error = check_stream_parity(mouse, loaded.frame_shape)
            if not error < PARITY_TOLERANCE:
                raise RepositoryError(
                    f"{graphs.step or graphs.clip}: streaming ({version.streaming.mode}) does "
                    f"not reproduce the clip graph (relative error {error:.2e} > "
                    f"{PARITY_TOLERANCE:.0e})"
                )
        if isinstance(step, Stepper):
            warm_arena(step, loaded.frame_shape, settings.workers)
        loaded.mice[name] = mouse
    return loaded


def warm_arena(stepper: Stepper, frame_shape: tuple[int, int], threads: int) -> None:
    """Grow the step session's memory arena at load (see :meth:`Stepper.warm`).

    For as many streams as fit in ``WARM_STATE_BYTES`` of state, at most
    ``WARM_STREAMS``, stepped on the step lane's ``threads``.
    """
    state_bytes = sum(4 * int(np.prod(spec.shape)) for spec in stepper.specs)
    streams = max(1, min(WARM_STREAMS, WARM_STATE_BYTES // max(state_bytes, 1)))
    inputs = {
        "video": np.zeros((1, 1, *frame_shape), np.float32),
        "behavior": np.zeros((1, 1, 2), np.float32),
        "pupil_center": np.zeros((1, 1, 2), np.float32),
    }
    stepper.warm(inputs, streams, threads)


def _streaming(
    graphs: MouseGraphs,
    streaming: Streaming,
    states: list[StateSpec],
    settings: Settings,
    frame_shape: tuple[int, int],
) -> tuple[Stepper | WindowStepper | None, Stepper | None]:
    """What steps streams of a mouse, and what runs long clips in chunks."""
    if streaming.mode == "state" and graphs.step is not None:
        step: Stepper
        if graphs.ring is not None and settings.ring:
            step = RingStepper(_open(graphs.ring, settings, settings.intra_op_threads), states)
        else:
            step = Stepper(_open(graphs.step, settings, settings.intra_op_threads), states)
        return (
            step,
            Stepper(
                _open(graphs.step, settings, settings.clip_threads, settings.clip_priority),
                states,
            ),
        )
    if streaming.mode == "window":
        # The clip graph again, with the step lane's threads and priority.
        session = _open(graphs.clip, settings, settings.intra_op_threads)
        window = WindowStepper(
            session,
            streaming.window_frames,
            streaming.latency_frames,
            frame_shape,
            graphs.neuron_count,
        )
        return window, None
    return None, None


def select_versions(repository: Path, policy: str) -> list[Path]:
    """The version folders the ``--versions`` policy serves, per model."""
    kind, numbers = parse_version_policy(policy)
    by_model: dict[str, list[Path]] = defaultdict(list)
    for path in list_versions(repository):
        by_model[path.parent.name].append(path)
    chosen = []
    for versions in by_model.values():
        if kind == "latest":
            chosen += versions[-numbers[0] :]
        elif kind == "specific":
            chosen += [v for v in versions if int(v.name) in numbers]
        else:
            chosen += versions
    return chosen


class ModelStore:
    """The served models; looked up by name, version (0: latest) and mouse."""

    def __init__(self) -> None:
        """An empty store; :meth:`load` fills it."""
        self.models: dict[tuple[str, int], LoadedModel] = {}
        self.failures: dict[str, str] = {}
        self.ready = False

    def load(self, settings: Settings) -> None:
        """Load every selected version; one that fails is logged and skipped."""
        root = settings.model_repository
        if not root.is_dir():
            raise RepositoryError(f"{root}: model repository not found")
        for path in select_versions(root, settings.versions):
            try:
                model = load_version(path, settings)
            except RepositoryError as err:
                logger.error("skipping %s: %s", path, err)
                self.failures[str(path)] = str(err)
                continue
            self.models[(model.name, model.version.version)] = model
            logger.info(
                "loaded %s version %d (%d mice)", model.name, model.version.version, len(model.mice)
            )
        self.ready = True

    def served(self) -> list[LoadedModel]:
        """Every served model version, sorted by name and version."""
        if not self.ready:
            raise UnavailableError("models are still loading; retry shortly")
        return [self.models[key] for key in sorted(self.models)]

    def get(self, name: str, version: int = 0) -> LoadedModel:
        """A served model; an empty name means the only model served."""
        if not self.ready:
            raise UnavailableError("models are still loading; retry shortly")
        names = sorted({n for n, _ in self.models})
        if not name:
            if len(names) != 1:
                raise NotFoundError(f"model not named and this server serves {len(names)}: {names}")
            name = names[0]
        versions = sorted(v for n, v in self.models if n == name)
        if not versions:
            raise NotFoundError(f"model {short(name)!r} is not served; models: {names}")
        if version == 0:
            version = versions[-1]
        if (name, version) not in self.models:
            raise NotFoundError(
                f"model {short(name)!r} has no version {version}; versions: {versions}"
            )
        return self.models[(name, version)]

    def mouse(self, model: LoadedModel, mouse: str) -> MouseRuntime:
        """A mouse of ``model``; an empty name means its only mouse."""
        if not mouse and len(model.mice) == 1:
            return next(iter(model.mice.values()))
        if mouse not in model.mice:
            raise NotFoundError(
                f"mouse {short(mouse)!r} is not served by {model.name} version "
                f"{model.version.version}; mice: {sorted(model.mice)}"
            )
        return model.mice[mouse]
