"""Running a step graph with its state kept where the graph runs.

A stream's state (1.8 MB for the default model) goes into every step and comes out
changed. :class:`Stepper` binds it with ONNX Runtime's IOBinding: the state tensors
are ``OrtValue`` s on the session's device and the outputs of one step are bound as
the inputs of the next, so with ``--providers cuda`` a step moves only the frames in
and the responses out; the state reaches host memory only for a snapshot. On the CPU
provider the same path runs (and is what the tests exercise); the values then live
in host memory and nothing is copied either.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from sensorium_server.scheduler import computing

State = list[ort.OrtValue]


def run_graph(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run(None, feeds)`` with only the graph run at the lane's priority.

    A plain ``run`` copies its outputs into new arrays before it returns, holding the
    GIL; bound outputs are copied after the run, back at normal priority.
    """
    binding = session.io_binding()
    _bind_cpu_inputs(binding, feeds)
    for output in session.get_outputs():
        binding.bind_output(output.name, "cpu")
    with computing():
        session.run_with_iobinding(binding)
    return [value.numpy() for value in binding.get_outputs()]


def _bind_cpu_inputs(binding: ort.IOBinding, arrays: dict[str, np.ndarray]) -> None:
    """Bind host arrays as inputs (ONNX Runtime keeps them alive until the run)."""
    for name, array in arrays.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(array))


def _zeros(shape: tuple[int, ...], writeable: bool = False) -> np.ndarray:
    """A zero float32 array whose pages are already in memory (``np.zeros`` maps them lazily)."""
    array = np.empty(shape, dtype=np.float32)
    array.fill(0.0)
    array.flags.writeable = writeable
    return array


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of a step graph (without the batch axis)."""

    input: str
    output: str
    shape: tuple[int, ...]

    @classmethod
    def of_manifest(cls, manifest: dict[str, Any]) -> list[StateSpec]:
        """The state tensors a version's manifest lists, in graph order."""
        return [
            cls(s["input"], s["output"], tuple(int(d) for d in s["shape"]))
            for s in manifest["state"]
        ]


def device_of(session: ort.InferenceSession) -> str:
    """Where the session's first provider keeps tensors: "cuda" or "cpu"."""
    return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"


class Stepper:
    """One step graph (a session) with bound state; thread-safe, one binding per call."""

    latency = 0  # frames a reply runs behind its input (see WindowStepper)

    def __init__(self, session: ort.InferenceSession, specs: Sequence[StateSpec]) -> None:
        """Run ``session``, whose state tensors ``specs`` lists in graph order."""
        self.session = session
        self.specs = list(specs)
        self.device = device_of(session)
        self.responses = session.get_outputs()[0].name
        self._zero = self.adopt([_zeros((1, *s.shape)) for s in self.specs])

    def initial_state(self, batch: int = 1) -> State:
        """Zero state of a new trial (``batch`` of them), on the device.

        A graph only reads its state inputs, so every new trial of one stream starts
        from the same zero tensors, made (and their pages touched) once: opening a
        session allocates nothing, and its first step does not fault in 1.8 MB of
        fresh zero pages on a step thread.
        """
        if batch == 1:
            return list(self._zero)
        return self.adopt([_zeros((batch, *s.shape)) for s in self.specs])

    def warm(self, inputs: dict[str, np.ndarray], sessions: int, threads: int) -> None:
        """Grow ONNX Runtime's memory arena to ``sessions`` states stepped on ``threads``.

        The arena starts as large as the load's single-threaded warm-up needed; the
        first steps of many new streams on several threads would otherwise grow it
        (about 50 MB of fresh pages for 8 streams on 2 threads, faulted in by the step
        threads while clips run). Stepping that many states twice, concurrently, at
        load grows it once; the memory goes back to the arena, not to the system.
        """

        def step_some(count: int) -> None:
            states = [self.initial_state() for _ in range(count)]
            for _ in range(2):
                states = [self.run(inputs, state)[1] for state in states]

        share = -(-sessions // threads)
        workers = [threading.Thread(target=step_some, args=(share,)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def adopt(self, arrays: Sequence[np.ndarray]) -> State:
        """Host arrays (a snapshot's) as device state; the arrays must not change after."""
        return [ort.OrtValue.ortvalue_from_numpy(a, self.device, 0) for a in arrays]

    @staticmethod
    def arrays(state: State) -> list[np.ndarray]:
        """The state in host memory (a copy when it lives on a GPU), read-only.

        On the CPU these are views of the state itself, which may be the zero state
        that every new trial shares: they must not be written to.
        """
        arrays = [value.numpy() for value in state]
        for array in arrays:
            array.flags.writeable = False
        return arrays

    def run(self, inputs: dict[str, np.ndarray], state: State) -> tuple[np.ndarray, State]:
        """Step: frames ``inputs`` (host arrays) and ``state`` -> responses (host), new state."""
        binding = self.session.io_binding()
        _bind_cpu_inputs(binding, inputs)
        for spec, value in zip(self.specs, state, strict=True):
            binding.bind_ortvalue_input(spec.input, value)
        binding.bind_output(self.responses, "cpu")
        for spec in self.specs:
            binding.bind_output(spec.output, self.device)
        with computing():  # the lane's priority (clip chunks: idle) for the run alone
            self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return values[0].numpy(), list(values[1:])
