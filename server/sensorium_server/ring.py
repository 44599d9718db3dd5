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
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from sensorium_server.scheduler import computing
from sensorium_server.stepping import (
    State,
    StateSpec,
    Stepper,
    _bind_cpu_inputs,
    _zeros,
    device_of,
)

HEAD = "ring_head"


class RingState(list[ort.OrtValue]):
    """One stream's rings (one per state, graph order) and how many frames it stepped."""

    def __init__(self, rings: Sequence[ort.OrtValue], host: Sequence[np.ndarray]) -> None:
        """``rings`` on the device; ``host`` keeps the arrays CPU rings share alive."""
        super().__init__(rings)
        self.host = list(host)
        self.pointers = [ring.data_ptr() for ring in rings]  # where each ring's slot 0 is
        self.steps = 0


@dataclass(frozen=True)
class _Layer:
    """One state's names in the ring graph, its ring's slots and one slot's size."""

    ring: str
    frame: str
    slots: int
    frame_shape: list[int]  # (1, 1, C, H, W): one slot
    slot_bytes: int


class RingStepper(Stepper):
    """A ring graph (one frame of one stream) with the interface of :class:`Stepper`."""

    def __init__(self, session: ort.InferenceSession, specs: Sequence[StateSpec]) -> None:
        """Run the ring graph ``session`` for the states ``specs`` (the step graph's)."""
        self.session = session
        self.specs = list(specs)
        self.device = device_of(session)
        self.responses = session.get_outputs()[0].name
        inputs = {i.name: i.shape for i in session.get_inputs()}
        self.layers = []
        for spec in self.specs:
            suffix = spec.input.split("_", 1)[1]
            ring = f"ring_{suffix}"
            channels, frames, height, width = spec.shape
            if inputs.get(ring) != [frames + 1, 1, channels, height, width]:
                raise ValueError(f"ring graph: {ring} is {inputs.get(ring)}, not a ring of {spec}")
            shape = [1, 1, channels, height, width]
            size = 4 * channels * height * width  # float32
            self.layers.append(_Layer(ring, f"frame_{suffix}", frames + 1, shape, size))
        self.period = math.lcm(*(layer.slots for layer in self.layers))  # steps, kept small

    def _state(self, host: list[np.ndarray]) -> RingState:
        rings = [ort.OrtValue.ortvalue_from_numpy(a, self.device, 0) for a in host]
        return RingState(rings, host if self.device == "cpu" else [])

    def initial_state(self, batch: int = 1) -> State:
        """Zero rings of a new trial: a stream's own, written in place as it steps.

        Their pages are touched here (by the caller: the event loop at open or reset),
        not by the step thread's first steps, which would wait on the kernel's memory
        lock behind clip threads at idle priority (``test_predict.py``).
        """
        if batch != 1:
            raise ValueError("a ring graph steps one stream (batch 1)")
        return self._state(
            [_zeros((layer.slots, *layer.frame_shape[1:]), writeable=True) for layer in self.layers]
        )

    def adopt(self, arrays: Sequence[np.ndarray]) -> State:
        """State in the step graph's form (1, C, T, H, W) per state, as rings."""
        host = []
        for array, layer in zip(arrays, self.layers, strict=True):
            ring = np.empty((layer.slots, *layer.frame_shape[1:]), np.float32)
            ring[-1] = 0.0
            ring[:-1, 0] = np.moveaxis(array[0], 1, 0)  # oldest first, slot 0 on
            host.append(ring)
        return self._state(host)

    def arrays(self, state: State) -> list[np.ndarray]:  # type: ignore[override]
        """The state in the step graph's form, oldest frame first (copies, read-only)."""
        if not isinstance(state, RingState):
            return Stepper.arrays(state)
        arrays = []
        for value, layer in zip(state, self.layers, strict=True):
            order = (state.steps + np.arange(layer.slots - 1)) % layer.slots
            array = np.ascontiguousarray(np.moveaxis(value.numpy()[order, 0], 0, 1)[None])
            array.flags.writeable = False
            arrays.append(array)
        return arrays

    def run(self, inputs: dict[str, np.ndarray], state: State) -> tuple[np.ndarray, State]:
        """Step each of the k frames of ``inputs`` (1, k, ...); the rings change in place."""
        if not isinstance(state, RingState):
            raise TypeError("a ring graph steps the state it made (initial_state or adopt)")
        frames = int(inputs["video"].shape[1])
        if frames == 1:
            return self._one(inputs, state), state
        responses = [
            self._one({n: a[:, t : t + 1] for n, a in inputs.items()}, state) for t in range(frames)
        ]
        return np.concatenate(responses, axis=1), state

    def _one(self, inputs: dict[str, np.ndarray], state: RingState) -> np.ndarray:
        binding = self.session.io_binding()
        _bind_cpu_inputs(binding, inputs)
        binding.bind_cpu_input(HEAD, np.array(state.steps, np.int64))
        binding.bind_output(self.responses, "cpu")
        for layer, value, pointer in zip(self.layers, state, state.pointers, strict=True):
            binding.bind_ortvalue_input(layer.ring, value)
            free = (state.steps + layer.slots - 1) % layer.slots  # outside this step's frames
            binding.bind_output(
                layer.frame,
                self.device,
                0,
                np.float32,
                layer.frame_shape,
                pointer + free * layer.slot_bytes,
            )
        with computing():
            self.session.run_with_iobinding(binding)
        state.steps = (state.steps + 1) % self.period
        return binding.get_outputs()[0].numpy()
