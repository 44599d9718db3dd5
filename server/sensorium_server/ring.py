"""Stepping streams with a ring graph: the state stays where it is, frame after frame.

A version's ring graph (``mice/<mouse>/ring.onnx``, written by the exporter from the
step graph) steps one frame of one stream with each temporal layer's state in a ring
of T + 1 frames, time first (``sensorium_export.ring``). :class:`RingStepper` keeps a
stream's rings (on the session's device) and its step count, binds the rings as
inputs and each layer's new frame as an output into the ring's free slot: nothing is
shifted or copied, and with ``--providers cuda`` the rings never leave the GPU.

Snapshots stay in the step graph's form (``state_<i>`` (1, C, T, H, W), oldest frame
first): :meth:`RingStepper.arrays` reads a ring in order and :meth:`RingStepper.adopt`
fills one, so that state moves between replicas, versions and graph forms alike.
A message of k frames is k ring steps in one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from sensorium_server.scheduler import computing
from sensorium_server.stepping import State, StateSpec, Stepper, _bind_cpu_inputs

HEAD = "ring_head"


class RingState(list[ort.OrtValue]):
    """One stream's rings (one per state, graph order) and how many frames it stepped."""

    def __init__(self, rings: Sequence[ort.OrtValue], host: Sequence[np.ndarray]) -> None:
        """``rings`` on the device; ``host`` keeps the arrays CPU rings share alive."""
        super().__init__(rings)
        self.host = list(host)
        self.steps = 0


def _touched_zeros(slots: int, spec: StateSpec) -> np.ndarray:
    """A zero ring whose pages are in memory (``np.zeros`` maps them lazily)."""
    ring = np.empty((slots, 1, spec.shape[0], *spec.shape[2:]), np.float32)
    ring.fill(0.0)
    return ring


class RingStepper(Stepper):
    """A ring graph (one frame of one stream) with the interface of :class:`Stepper`."""

    def __init__(self, session: ort.InferenceSession, specs: Sequence[StateSpec]) -> None:
        """Run the ring graph ``session`` for the states ``specs`` (the step graph's)."""
        self.session = session
        self.specs = list(specs)
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.responses = session.get_outputs()[0].name
        inputs = {i.name: i.shape for i in session.get_inputs()}
        self.rings, self.frames = [], []
        for spec in self.specs:
            suffix = spec.input.split("_", 1)[1]
            ring, frame = f"ring_{suffix}", f"frame_{suffix}"
            channels, frames, height, width = spec.shape
            if inputs.get(ring) != [frames + 1, 1, channels, height, width]:
                raise ValueError(f"ring graph: {ring} is {inputs.get(ring)}, not a ring of {spec}")
            self.rings.append(ring)
            self.frames.append(frame)
        self.slots = [spec.shape[1] + 1 for spec in self.specs]
        self.period = math.lcm(*self.slots)  # the step count, kept small

    def initial_state(self, batch: int = 1) -> State:
        """Zero rings of a new trial: a stream's own, written in place as it steps.

        Their pages are touched here (by the caller: the event loop at open or reset),
        not by the step thread's first steps, which would wait on the kernel's memory
        lock behind clip threads at idle priority (``test_predict.py``).
        """
        if batch != 1:
            raise ValueError("a ring graph steps one stream (batch 1)")
        host = [
            _touched_zeros(slots, spec) for slots, spec in zip(self.slots, self.specs, strict=True)
        ]
        return RingState([self._device(a) for a in host], host if self.device == "cpu" else [])

    def _device(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)

    def adopt(self, arrays: Sequence[np.ndarray]) -> State:
        """State in the step graph's form (1, C, T, H, W) per state, as rings."""
        host = []
        for array, slots in zip(arrays, self.slots, strict=True):
            ring = np.empty((slots, 1, array.shape[1], *array.shape[3:]), np.float32)
            ring[slots - 1] = 0.0
            ring[: slots - 1, 0] = np.moveaxis(array[0], 1, 0)  # oldest first, slot 0 on
            host.append(ring)
        return RingState([self._device(a) for a in host], host if self.device == "cpu" else [])

    def arrays(self, state: State) -> list[np.ndarray]:  # type: ignore[override]
        """The state in the step graph's form, oldest frame first (copies, read-only)."""
        if not isinstance(state, RingState):
            return Stepper.arrays(state)
        arrays = []
        for value, slots in zip(state, self.slots, strict=True):
            ring = value.numpy()
            order = (state.steps + np.arange(slots - 1)) % slots
            array = np.ascontiguousarray(np.moveaxis(ring[order, 0], 0, 1)[None])
            array.flags.writeable = False
            arrays.append(array)
        return arrays

    def run(self, inputs: dict[str, np.ndarray], state: State) -> tuple[np.ndarray, State]:
        """Step each of the k frames of ``inputs`` (1, k, ...); the rings change in place."""
        if not isinstance(state, RingState):
            raise TypeError("a ring graph steps the state it made (initial_state or adopt)")
        frames = int(inputs["video"].shape[1])
        responses = [
            self._one({n: a[:, t : t + 1] for n, a in inputs.items()}, state) for t in range(frames)
        ]
        return (responses[0] if frames == 1 else np.concatenate(responses, axis=1)), state

    def _one(self, inputs: dict[str, np.ndarray], state: RingState) -> np.ndarray:
        binding = self.session.io_binding()
        _bind_cpu_inputs(binding, inputs)
        binding.bind_cpu_input(HEAD, np.array(state.steps, np.int64))
        binding.bind_output(self.responses, "cpu")
        for ring, frame, value, slots in zip(
            self.rings, self.frames, state, self.slots, strict=True
        ):
            binding.bind_ortvalue_input(ring, value)
            shape = value.shape()
            size = value.tensor_size_in_bytes() // slots
            free = (state.steps + slots - 1) % slots  # the slot outside this step's frames
            binding.bind_output(
                frame, self.device, 0, np.float32, [1, *shape[1:]], value.data_ptr() + free * size
            )
        with computing():
            self.session.run_with_iobinding(binding)
        state.steps = (state.steps + 1) % self.period
        return binding.get_outputs()[0].numpy()
