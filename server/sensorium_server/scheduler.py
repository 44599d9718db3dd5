"""The one path from servicers to ONNX Runtime.

Every inference (unary clip or stream step) goes through :class:`Scheduler`: it
bounds the work waiting or running, runs graphs on a fixed pool of threads
(ONNX Runtime releases the GIL, so the event loop keeps serving), and measures
queue and compute time. Batching across concurrent streams belongs here too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from sensorium_server.errors import LimitExceededError


@dataclass(frozen=True)
class Timing:
    """Where a request's time went, in seconds."""

    queue_s: float
    compute_s: float


Observer = Callable[[str, str, Timing], None]


class Scheduler:
    """Bounded queue plus a worker pool in front of ONNX Runtime sessions."""

    def __init__(self, workers: int, max_queue: int, observe: Observer | None = None) -> None:
        """``observe(model, graph, timing)`` is called after every inference."""
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="inference")
        self._max_queue = max_queue
        self._pending = 0
        self._observe = observe

    async def run(
        self,
        session: ort.InferenceSession,
        feeds: dict[str, np.ndarray],
        labels: tuple[str, str],
    ) -> tuple[list[np.ndarray], Timing]:
        """Run ``session`` on ``feeds``; ``labels`` (model, graph) name it in metrics.

        Raises:
            LimitExceededError: when ``max_queue`` inferences are already waiting or running.
        """
        if self._pending >= self._max_queue:
            raise LimitExceededError(
                f"inference queue full ({self._max_queue} requests waiting or running); "
                "retry later or add replicas"
            )
        self._pending += 1
        submitted = time.perf_counter()

        def work() -> tuple[list[np.ndarray], float, float]:
            started = time.perf_counter()
            outputs = session.run(None, feeds)
            return outputs, started, time.perf_counter()

        try:
            outputs, started, done = await asyncio.get_running_loop().run_in_executor(
                self._executor, work
            )
        finally:
            self._pending -= 1
        timing = Timing(started - submitted, done - started)
        if self._observe is not None:
            self._observe(*labels, timing)
        return outputs, timing

    def close(self) -> None:
        """Stop the workers after the work they hold."""
        self._executor.shutdown(wait=True)
