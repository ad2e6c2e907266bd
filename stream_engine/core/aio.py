"""Asyncio helpers for the hot path: pay for timers and tasks only when a coroutine really
waits. Most rules, and services answering from memory, finish without ever suspending; arming
a timer or creating a task for each of them would cost more than the rule itself."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


@types.coroutine
def _resume(it: Any, pending: Any) -> Generator[Any, None, Any]:
    """Hand ``pending`` (what ``it`` suspended on) to the running task, then keep delegating
    to ``it``; exceptions thrown in (cancellation, timeouts) are forwarded to it."""
    while True:
        try:
            yield pending
        except GeneratorExit:
            it.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - forwarded, not swallowed
            try:
                pending = it.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            pending = it.send(None)
        except StopIteration as stop:
            return stop.value


async def _continue(it: Any, pending: Any) -> Any:
    return await _resume(it, pending)


def start(coro: Coroutine[Any, Any, T]) -> tuple[bool, Any]:
    """Run ``coro`` until it first suspends: ``(True, result)`` if it finished, else
    ``(False, rest)`` where ``rest`` is a coroutine that carries on from there."""
    it = coro.__await__()
    try:
        pending = it.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, _continue(it, pending)


async def await_with_timeout(
    coro: Coroutine[Any, Any, T], limit: float | None, inline: bool = True
) -> T:
    """``await coro`` under ``limit`` seconds (None: no limit; TimeoutError when exceeded).
    With ``inline``
    the coroutine first runs without a task or timer, and time spent before its first
    suspension is not counted; only code that binds nothing to the current task (no
    ``asyncio.timeout`` inside, no timers of an HTTP client) may run inline, because the rest
    of it continues on another task. The timeout never cancels the caller's task: the rest
    runs as its own task, and that task is what a timeout cancels."""
    if limit is None and inline:
        return await coro
    rest: Coroutine[Any, Any, T] = coro
    if inline:
        done, value = start(coro)
        if done:
            result: T = value
            return result
        rest = value
    task = asyncio.ensure_future(rest)
    try:
        finished, _ = await asyncio.wait((task,), timeout=limit)
    except BaseException:
        await _cancel(task)
        raise
    if not finished:
        await _cancel(task)
        if not task.cancelled() and task.exception() is None:
            return task.result()  # it finished while being cancelled
        raise TimeoutError(f"no answer within {limit}s")
    return task.result()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has unwound (its own errors are its result)."""
    task.cancel()
    await asyncio.wait((task,))


async def gather_eager(coros: Sequence[Coroutine[Any, Any, T]], inline: bool = True) -> list[T]:
    """Like ``asyncio.gather``, but with ``inline`` each coroutine first runs without a task
    until it suspends; only the ones that do get a task (see ``await_with_timeout`` for what
    may run inline). Results keep the input order; the first error propagates after every
    task has finished (the rest are cancelled)."""
    results: list[Any] = [None] * len(coros)
    tasks: list[tuple[int, asyncio.Task[Any]]] = []
    started = 0
    try:
        for position, coro in enumerate(coros):
            started = position + 1
            done, value = start(coro) if inline else (False, coro)
            if done:
                results[position] = value
            else:
                tasks.append((position, asyncio.ensure_future(value)))
        if tasks:
            await asyncio.gather(*(task for _, task in tasks))
    except BaseException:
        for _, task in tasks:
            task.cancel()
        for coro in coros[started:]:
            coro.close()
        raise
    for position, task in tasks:
        results[position] = task.result()
    return results
