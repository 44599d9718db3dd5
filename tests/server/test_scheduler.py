"""The scheduler's lanes and its shutdown, with real threads and real (slow) work."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

from sensorium_server.errors import LimitExceededError, UnavailableError
from sensorium_server.scheduler import Scheduler, can_restore_priority, computing


def test_close_does_not_wait_past_its_timeout_for_a_graph_still_running() -> None:
    scheduler = Scheduler(workers=1, max_queue=4)
    release = threading.Event()

    async def main() -> None:
        stuck = asyncio.ensure_future(scheduler.run(lambda: release.wait(30), ("m", "clip")))
        quick = await scheduler.run(lambda: 7, ("m", "step"))
        assert quick[0] == 7
        await asyncio.sleep(0.1)  # the clip is running now
        started = time.monotonic()
        assert scheduler.close(timeout=0.3) == 1  # one thread still inside its "graph"
        assert time.monotonic() - started < 2
        release.set()
        result, _ = await stuck
        assert result is True  # it finished on its own afterwards

    asyncio.run(main())


def test_close_returns_zero_when_every_thread_stopped() -> None:
    scheduler = Scheduler(workers=2, max_queue=4)

    async def main() -> None:
        await asyncio.gather(
            *(scheduler.run(lambda: time.sleep(0.05), ("m", "step")) for _ in range(2))
        )

    asyncio.run(main())
    assert scheduler.close(timeout=5) == 0


def test_a_full_lane_refuses_and_the_other_lane_still_takes_work() -> None:
    scheduler = Scheduler(workers=1, max_queue=1)
    release = threading.Event()

    async def main() -> None:
        busy = asyncio.ensure_future(scheduler.run(lambda: release.wait(10), ("m", "clip")))
        await asyncio.sleep(0.05)
        with pytest.raises(LimitExceededError, match="1 clip requests"):
            await scheduler.run(lambda: 1, ("m", "clip"))
        assert (await scheduler.run(lambda: 2, ("m", "step")))[0] == 2
        release.set()
        await busy

    asyncio.run(main())
    assert scheduler.close(timeout=5) == 0


async def _busy_and_queued(
    scheduler: Scheduler, release: threading.Event, ran: list[str]
) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
    """The one step thread held until ``release``, and a step queued behind it."""
    busy = asyncio.ensure_future(scheduler.run(lambda: release.wait(10), ("m", "step")))
    await asyncio.sleep(0.05)  # the one step thread is taken
    queued = asyncio.ensure_future(scheduler.run(lambda: ran.append("queued"), ("m", "step")))
    await asyncio.sleep(0.05)
    return busy, queued


def test_work_whose_caller_went_away_while_queued_never_runs() -> None:
    scheduler = Scheduler(workers=1, max_queue=4)
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        busy, queued = await _busy_and_queued(scheduler, release, ran)
        queued.cancel()  # a client gone before its frame reached a thread
        release.set()
        await busy
        with pytest.raises(ZeroDivisionError):  # errors reach the caller as raised
            await scheduler.run(lambda: 1 / 0, ("m", "step"))
        assert (await scheduler.run(lambda: 3, ("m", "step")))[0] == 3

    asyncio.run(main())
    assert ran == []
    assert scheduler.close(timeout=5) == 0

    async def after_close() -> None:
        with pytest.raises(UnavailableError, match="stopping"):
            await scheduler.run(lambda: 4, ("m", "step"))

    asyncio.run(after_close())


def test_close_cancels_the_work_still_queued() -> None:
    scheduler = Scheduler(workers=1, max_queue=4)
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        busy, queued = await _busy_and_queued(scheduler, release, ran)
        scheduler.close(timeout=0)  # the busy thread is still inside its work
        release.set()
        assert (await busy)[0] is True  # the work under way finishes
        with pytest.raises(asyncio.CancelledError):
            await queued

    asyncio.run(main())
    assert ran == []
    assert scheduler.close(timeout=5) == 0


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="needs Linux scheduling policies")
def test_a_clip_thread_is_below_normal_priority_only_inside_the_graph_run() -> None:
    """Holding the GIL at idle priority would stall every thread: only the run is idle."""
    if not can_restore_priority():
        pytest.skip("going back to normal priority needs CAP_SYS_NICE here")
    scheduler = Scheduler(workers=1, max_queue=4, clip_priority="idle")
    tid = threading.get_native_id

    def work() -> tuple[int, int, int, int]:
        before = os.sched_getscheduler(tid())
        with computing():
            inside = os.sched_getscheduler(tid())
        after = os.sched_getscheduler(tid())
        return before, inside, after, threading.get_native_id()

    async def main() -> None:
        (before, inside, after, worker), _ = await scheduler.run(work, ("m", "clip"))
        assert (before, inside, after) == (os.SCHED_OTHER, os.SCHED_IDLE, os.SCHED_OTHER)
        assert worker != threading.get_native_id()  # on the lane's thread
        step_policies, _ = await scheduler.run(work, ("m", "step"))
        assert step_policies[:3] == (os.SCHED_OTHER,) * 3  # the step lane stays normal

    asyncio.run(main())
    with computing():  # outside any lane: nothing changes
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert scheduler.close(timeout=5) == 0
