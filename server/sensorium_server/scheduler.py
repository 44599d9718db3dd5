"""The one path from servicers to ONNX Runtime.

Every inference goes through :class:`Scheduler`. It has two lanes, each a bounded
queue in front of its own pool of threads (ONNX Runtime releases the GIL, so the
event loop keeps serving while graphs run): stream steps run on the ``step`` lane,
whole clips and clip chunks on the ``clip`` lane. A stream step therefore never
waits behind clip work for a thread, and clip concurrency is capped by the clip
lane's size, and its threads run at a lower OS priority (``--clip-priority``), so
that on a busy machine a step gets the CPU first. Each lane measures queue and compute time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from sensorium_server.errors import LimitExceededError, UnavailableError


@dataclass(frozen=True)
class Timing:
    """Where a request's time went, in seconds."""

    queue_s: float
    compute_s: float


Observer = Callable[[str, str, Timing], None]
T = TypeVar("T")


def lower_priority(priority: str) -> None:
    """Set the calling thread's OS priority: "idle", "low" or "normal" (Linux: per thread).

    "idle" is SCHED_IDLE: the thread runs only when no other thread wants the CPU.
    Threads started afterwards by this one (ONNX Runtime's pool) inherit it.
    """
    tid = threading.get_native_id()
    if hasattr(os, "SCHED_IDLE"):
        policy = os.SCHED_IDLE if priority == "idle" else os.SCHED_OTHER
        with contextlib.suppress(PermissionError):  # leaving SCHED_IDLE may need privileges
            os.sched_setscheduler(tid, policy, os.sched_param(0))
    if hasattr(os, "setpriority"):
        with contextlib.suppress(PermissionError):  # lowering niceness back needs privileges
            os.setpriority(os.PRIO_PROCESS, tid, 19 if priority == "low" else 0)


@functools.cache
def can_restore_priority() -> bool:
    """Whether a thread may go back to normal priority (root, or CAP_SYS_NICE).

    Without it only ONNX Runtime's own threads for clips run at the lower priority
    (set once, when the session is created); the lane's threads stay normal.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            lower_priority("idle")
            tid = threading.get_native_id()
            if hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            if hasattr(os, "setpriority"):
                os.setpriority(os.PRIO_PROCESS, tid, 0)
            result.append(True)
        except PermissionError:
            result.append(False)

    thread = threading.Thread(target=probe, name="priority-probe")
    thread.start()
    thread.join()
    return result[0]


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]
_current = threading.local()  # .lane: the Lane below normal priority whose thread this is
_AS_IS = contextlib.nullcontext()


def computing() -> contextlib.AbstractContextManager[None]:
    """The calling lane's OS priority, for the span of one graph run and no longer.

    Wrap only ONNX Runtime's run, which releases the GIL: a thread below normal
    priority that holds the GIL (binding inputs, copying outputs) can be kept off a
    busy CPU for tens of ms while every other thread of the server, the event loop
    and the step threads included, waits for the GIL. On a normal-priority lane (the
    step lane: every stream step) and outside any lane (start-up checks, tests) it is
    a shared no-op.
    """
    lane: Lane | None = getattr(_current, "lane", None)
    return _AS_IS if lane is None else lane.priority()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting call was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    """Run ``callback`` on the loop that asked for the work (dropped if that loop is gone)."""
    with contextlib.suppress(RuntimeError):  # the loop closed while the work ran
        loop.call_soon_threadsafe(callback, *args)


class Lane:
    """A pool of threads and the count of inferences waiting for or running on it."""

    def __init__(self, name: str, workers: int, max_queue: int, priority: str = "normal") -> None:
        """``workers`` threads at OS ``priority``; at most ``max_queue`` waiting or running."""
        self.name = name
        self._priority = priority
        self.max_queue = max_queue
        self.pending = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self.threads = [
            threading.Thread(target=self._serve, name=f"inference-{name}_{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``work`` for the lane's threads; its result comes back on the calling loop.

        One queue put and one ``call_soon_threadsafe`` per call: the loop does less per
        stream step than with ``run_in_executor`` (a concurrent future, its condition,
        and a second future chained to it).
        """
        if self._closed:
            raise UnavailableError("the server is stopping; retry on another replica")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, work))
        return future

    def _serve(self) -> None:
        _current.lane = None if self._priority == "normal" else self
        while (job := self._jobs.get()) is not None:
            loop, future, work = job
            if future.cancelled():  # its caller went away while it was queued
                continue
            if self._closed:
                _on_loop(loop, future.cancel)
                continue
            try:
                result = work()
            except BaseException as err:  # handed to the awaiting caller
                _on_loop(loop, _settle, future, None, err)
            else:
                _on_loop(loop, _settle, future, result, None)

    def close(self) -> None:
        """Cancel the work still queued; each thread exits after the work it is running."""
        self._closed = True
        for _ in self.threads:
            self._jobs.put(None)

    @contextlib.contextmanager
    def priority(self) -> Iterator[None]:
        """The lane's OS priority while ONNX Runtime computes (see :func:`computing`)."""
        if self._priority == "normal" or not can_restore_priority():
            yield
            return
        lower_priority(self._priority)
        try:
            yield
        finally:
            lower_priority("normal")

    def admit(self) -> None:
        """Count one more inference, or refuse it when the lane is full."""
        if self.pending >= self.max_queue:
            raise LimitExceededError(
                f"inference queue full ({self.max_queue} {self.name} requests waiting or "
                "running); retry later or add replicas"
            )
        self.pending += 1


class Scheduler:
    """Two lanes (stream steps, clips) in front of ONNX Runtime sessions."""

    def __init__(
        self,
        workers: int,
        max_queue: int,
        observe: Observer | None = None,
        clip_workers: int = 1,
        clip_priority: str = "normal",
    ) -> None:
        """``workers`` step threads, ``clip_workers`` clip threads, a queue limit per lane.

        ``observe(model, graph, timing)`` is called after every inference.
        """
        self._lanes = {
            "step": Lane("step", workers, max_queue),
            "clip": Lane("clip", clip_workers, max_queue, clip_priority),
        }
        self._observe = observe

    async def run(self, work: Callable[[], T], labels: tuple[str, str]) -> tuple[T, Timing]:
        """Run ``work`` (one inference) on a lane; ``labels`` (model, graph) name it.

        The graph label picks the lane: ``step`` runs on the step lane, anything else
        (``clip``) on the clip lane. A cancelled caller leaves the work (dropped if it
        had not started).

        Raises:
            LimitExceededError: when that lane's queue is full.
        """
        result, timing, _ = await self._run(work, labels, keep=False)
        return result, timing

    async def run_to_end(
        self, work: Callable[[], T], labels: tuple[str, str]
    ) -> tuple[T, Timing, bool]:
        """As :meth:`run`, but the work is never dropped once submitted.

        A cancellation of the caller waits for the work to finish (for work whose
        effects must be kept, such as a step that writes a stream's state in place);
        the third value says whether the caller was cancelled meanwhile, and the
        caller then raises ``CancelledError`` itself. Work the lane cancelled (the
        server stopping before it ran) raises ``CancelledError`` here.
        """
        return await self._run(work, labels, keep=True)

    async def _run(
        self, work: Callable[[], T], labels: tuple[str, str], keep: bool
    ) -> tuple[T, Timing, bool]:
        lane = self._lanes["step" if labels[1] == "step" else "clip"]
        lane.admit()
        submitted = time.perf_counter()

        def timed() -> tuple[T, float, float]:
            started = time.perf_counter()
            result = work()  # its graph run alone at the lane's priority: computing()
            return result, started, time.perf_counter()

        cancelled = False
        try:
            future = lane.submit(timed)
            while True:
                try:  # a shielded plain future: no task per step
                    result, started, done = await (asyncio.shield(future) if keep else future)
                    break
                except asyncio.CancelledError:
                    if not keep or future.cancelled():
                        raise
                    cancelled = True  # it may have finished just before: its result is taken
        finally:
            lane.pending -= 1
        timing = Timing(started - submitted, done - started)
        if self._observe is not None:
            self._observe(*labels, timing)
        return result, timing, cancelled

    def close(self, timeout: float | None = None) -> int:
        """Stop the workers: queued work is cancelled, running work gets ``timeout`` s.

        Returns the number of threads still inside a graph after it (0: all stopped;
        ``None`` waits for them). A thread starved of CPU at the clip lane's idle
        priority can outlive any grace; the process then exits without it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        threads: list[threading.Thread] = []
        for lane in self._lanes.values():
            lane.close()
            threads += lane.threads
        for thread in threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return sum(thread.is_alive() for thread in threads)
