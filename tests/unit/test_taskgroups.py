"""taskgroups.run_until: every job a task of one TaskGroup, all cancelled and awaited at the stop;
a failing job cancels the others and its error comes out. looplag: the probe reports lateness."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent_runtime.looplag import sample_loop_lag
from agent_runtime.taskgroups import run_until


async def test_stop_cancels_every_job_and_waits_for_their_cleanup() -> None:
    stop = asyncio.Event()
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that awaits: done before run_until returns
            cleaned.append(name)

    runner = asyncio.create_task(run_until(stop, forever("a"), forever("b")))
    await asyncio.sleep(0.01)
    assert not runner.done()
    stop.set()
    await asyncio.wait_for(runner, 1)
    assert sorted(cleaned) == ["a", "b"]


async def test_jobs_that_finish_early_do_not_end_the_group() -> None:
    stop = asyncio.Event()
    done: list[int] = []

    async def quick() -> None:
        done.append(1)

    runner = asyncio.create_task(run_until(stop, quick()))
    await asyncio.sleep(0.01)
    assert done == [1] and not runner.done()
    stop.set()
    await asyncio.wait_for(runner, 1)


async def test_a_failing_job_cancels_the_others_and_its_error_propagates() -> None:
    cancelled = asyncio.Event()

    async def victim() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def broken() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(run_until(asyncio.Event(), victim(), broken()), 1)
    assert [type(e) for e in info.value.exceptions] == [KeyError]
    assert cancelled.is_set()


async def test_a_stop_already_set_runs_nothing_for_long() -> None:
    stop = asyncio.Event()
    stop.set()
    started = time.monotonic()
    await run_until(stop, asyncio.sleep(10))
    assert time.monotonic() - started < 1


async def test_loop_lag_probe_reports_how_late_each_sleep_ended() -> None:
    lags: list[float] = []

    async def block_once() -> None:
        await asyncio.sleep(0.005)
        time.sleep(0.1)  # hold the loop: the probe's sleep ends ~0.1 s late

    stop = asyncio.Event()

    async def stop_after_two() -> None:
        while len(lags) < 2:
            await asyncio.sleep(0.005)
        stop.set()

    await asyncio.wait_for(run_until(stop, sample_loop_lag(0.02, lags.append), block_once(), stop_after_two()), 5)
    assert max(lags) >= 0.05
