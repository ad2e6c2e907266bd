"""Lazy timeouts and eager gathering: correct whether or not a coroutine suspends."""

from __future__ import annotations

import asyncio

import pytest

from stream_engine.core.aio import await_with_timeout, gather_eager, start


async def immediate(value):
    return value


async def sleeping(value, delay):
    await asyncio.sleep(delay)
    return value


async def failing_after(delay, exc):
    await asyncio.sleep(delay)
    raise exc


def test_a_coroutine_that_never_suspends_finishes_inline():
    done, value = start(immediate(7))
    assert (done, value) == (True, 7)


async def test_a_suspended_coroutine_continues_where_it_stopped():
    done, rest = start(sleeping("late", 0.01))
    assert done is False
    assert await rest == "late"


async def test_timeout_is_not_armed_for_a_coroutine_that_finishes_without_waiting():
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    assert await await_with_timeout(immediate(1), 0.001) == 1
    assert len(loop._scheduled) == before  # type: ignore[attr-defined]


async def test_timeout_fires_for_a_coroutine_that_waits_too_long():
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(await_with_timeout(sleeping(1, 5.0), 0.02), timeout=2.0)


async def test_timeout_lets_a_quick_waiting_coroutine_finish():
    assert await await_with_timeout(sleeping("ok", 0.01), 1.0) == "ok"


async def test_exceptions_raised_after_suspension_propagate():
    with pytest.raises(ValueError, match="boom"):
        await await_with_timeout(failing_after(0.01, ValueError("boom")), 1.0)


async def test_cancellation_reaches_the_suspended_coroutine():
    cleaned = asyncio.Event()

    async def guarded():
        try:
            await asyncio.sleep(5.0)
        finally:
            cleaned.set()

    task = asyncio.ensure_future(await_with_timeout(guarded(), 10.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_gather_eager_keeps_order_and_runs_waiting_coroutines_concurrently():
    first, second = asyncio.Event(), asyncio.Event()

    async def meet(mine, other, value):
        mine.set()
        await other.wait()
        return value

    # Each waits for the other: this only finishes if both run at the same time.
    results = await asyncio.wait_for(
        gather_eager([meet(first, second, "a"), immediate("b"), meet(second, first, "c")]),
        timeout=2.0,
    )
    assert results == ["a", "b", "c"]


async def test_gather_eager_propagates_the_first_error_and_cancels_the_rest():
    cancelled = asyncio.Event()

    async def long_one():
        try:
            await asyncio.sleep(5.0)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(KeyError):
        await gather_eager([long_one(), failing_after(0.01, KeyError("x"))])
    await asyncio.wait_for(cancelled.wait(), timeout=1.0)


async def test_a_timeout_armed_inline_fires_as_timeout_after_the_coroutine_moved_to_a_task():
    """gather_eager starts each coroutine on the caller's task and moves it to a task of its
    own when it suspends; a timeout armed before the move must still end in TimeoutError for
    that coroutine alone, not cancel the caller."""

    async def guarded(delay):
        try:
            return await await_with_timeout(sleeping("late", delay), 0.05)
        except TimeoutError:
            return "timed out"

    results = await gather_eager([guarded(5.0), guarded(0.0), immediate("now")])

    assert results == ["timed out", "late", "now"]


async def test_a_coroutine_that_must_not_run_inline_starts_on_its_own_task():
    caller = asyncio.current_task()

    async def where():
        return asyncio.current_task()

    ran_on = await await_with_timeout(where(), None, inline=False)
    eager = await gather_eager([where(), where()], inline=False)

    assert ran_on is not caller
    assert all(task is not caller for task in eager)


async def test_cancelling_the_caller_cancels_the_timed_task_too():
    inner_cancelled = asyncio.Event()

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            inner_cancelled.set()
            raise

    outer = asyncio.ensure_future(await_with_timeout(slow(), 30))
    await asyncio.sleep(0.01)
    outer.cancel()

    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner_cancelled.is_set()
