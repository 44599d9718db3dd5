"""Streaming a model that has no step graph: the clip graph on a window of recent frames.

A clip-only model whose window was checked at export (the response at frame t needs
only the W frames ending at t + L) streams like this: each session keeps a ring of
the last W frames (video, behaviour, pupil centre) and a count of how many it holds;
each new frame enters the ring and the clip graph runs on the frames held, and the
response at position (held - 1 - L) is the answer for frame t - L. Until a trial has
L frames, a step answers none. The ring is the session's state: it is what a
snapshot carries and what a handoff moves, exactly like the state tensors of a step
graph, so resume, snapshots and drain work unchanged.

Window streaming equals the clip graph run on the same windows (the same graph on
the same frames); equal to the whole clip wherever the declared window holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from sensorium_server.errors import InvalidInputError
from sensorium_server.stepping import StateSpec, run_graph

INPUTS = ("video", "behavior", "pupil_center")
COUNT = "window_count"  # state tensor (1, 1): frames the ring holds, 0..W


class WindowStepper:
    """A clip graph stepped by window; the same interface as :class:`Stepper`.

    State (batch of 1, float32, host memory): ``window_video`` (1, W, H, Wd),
    ``window_behavior`` (1, W, 2), ``window_pupil_center`` (1, W, 2) (oldest frame
    first) and ``window_count`` (1, 1).
    """

    device = "cpu"

    def __init__(
        self,
        session: ort.InferenceSession,
        window: int,
        latency: int,
        frame_shape: tuple[int, int],
        neurons: int,
    ) -> None:
        """Step ``session`` (a clip graph) on windows of ``window`` frames, ``latency`` late."""
        self.session = session
        self.window, self.latency, self.neurons = window, latency, neurons
        h, w = frame_shape
        shapes = {"video": (window, h, w), "behavior": (window, 2), "pupil_center": (window, 2)}
        self.specs = [StateSpec(f"window_{n}", f"window_{n}", shapes[n]) for n in INPUTS]
        self.specs.append(StateSpec(COUNT, COUNT, (1,)))

    def initial_state(self) -> list[np.ndarray]:
        """An empty ring."""
        return [np.zeros((1, *s.shape), dtype=np.float32) for s in self.specs]

    def adopt(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """A snapshot's ring (shapes and dtypes already checked), its count checked here."""
        count = float(arrays[-1].ravel()[0])
        if not (count.is_integer() and 0 <= count <= self.window):
            raise InvalidInputError(
                f"snapshot: state {COUNT} is {count}, expected a whole number 0..{self.window}"
            )
        return [np.array(a, dtype=np.float32) for a in arrays]

    @staticmethod
    def arrays(state: list[np.ndarray]) -> list[np.ndarray]:
        """The state (already in host memory)."""
        return list(state)

    def run(
        self, inputs: dict[str, np.ndarray], state: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Frames ``inputs`` (1, k, ...) into the ring; responses (1, answered, N), new ring."""
        rings = list(state[:3])
        count = int(state[3][0, 0])
        answers = []
        for t in range(inputs["video"].shape[1]):
            rings = [
                np.concatenate((ring[:, 1:], inputs[name][:, t : t + 1]), axis=1)
                for ring, name in zip(rings, INPUTS, strict=True)
            ]
            count = min(count + 1, self.window)
            answer = count - 1 - self.latency
            if answer < 0:
                continue
            held = {
                name: np.ascontiguousarray(ring[:, self.window - count :])
                for name, ring in zip(INPUTS, rings, strict=True)
            }
            responses = run_graph(self.session, held)[0]
            answers.append(responses[:, answer])
        if answers:
            out = np.stack(answers, axis=1)
        else:
            out = np.zeros((1, 0, self.neurons), dtype=np.float32)
        return out, [*rings, np.array([[count]], dtype=np.float32)]
