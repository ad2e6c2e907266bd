"""Getting a batch's results acknowledged by the broker, whichever client produces them.

At-least-once: every message is sent, the broker's acknowledgements (acks=all) are awaited,
and only what failed is sent again - the batch's offsets are committed after this returns. A
message the broker refuses as too large goes to the dead-letter topic without its value, so
it cannot hold the stage up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from stream_engine.core.outcome import DeadLetterReason
from stream_engine.runtime.stage.codec import (
    DROPPED_HEADER,
    ORIGINAL_TOPIC_HEADER,
    REASON_HEADER,
    STAGE_HEADER,
)
from stream_engine.runtime.stage.processor import Outgoing

log = logging.getLogger(__name__)

#: Queues one message and returns the future of its acknowledgement (a refusal comes back
#: through the future, not raised).
Send = Callable[[Outgoing], Awaitable[Awaitable[object]]]
#: Tags a message this layer made (a stand-in) as its worker's own.
Seal = Callable[[Outgoing], Outgoing]


def _unsealed(out: Outgoing) -> Outgoing:
    return out


def oversized(out: Outgoing) -> bool:
    """True for a stand-in made by ``without_value``."""
    return any(k == DROPPED_HEADER for k, _ in out.headers)


def without_value(out: Outgoing, stage: str, dlq: str, seal: Seal = _unsealed) -> Outgoing:
    """A stand-in dead letter for a message the broker refused as too large."""
    headers = [(k, v) for k, v in out.headers if k != DROPPED_HEADER]
    if out.topic != dlq:
        headers = [
            (STAGE_HEADER, stage.encode()),
            (REASON_HEADER, DeadLetterReason.TOO_LARGE.value.encode()),
            (ORIGINAL_TOPIC_HEADER, out.topic.encode()),
        ]
    headers.append((DROPPED_HEADER, str(len(out.value or b"")).encode()))
    return seal(Outgoing(dlq, out.key, b"", headers))


async def send_all(send: Send, todo: list[Outgoing]) -> list[object]:
    """Queue every message, then wait for every acknowledgement; errors are returned."""
    futures = []
    for out in todo:
        try:
            futures.append(await send(out))
        except KafkaError as exc:
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            futures.append(failed)
    return await asyncio.gather(*futures, return_exceptions=True)


def sort_failures(
    todo: list[Outgoing], results: list[object], stage: str, dlq: str, seal: Seal = _unsealed
) -> list[Outgoing]:
    """What to send again: refused-as-too-large messages become stand-ins, other Kafka errors
    are retried as they are; anything else is a bug and is raised."""
    failed: list[Outgoing] = []
    for out, result in zip(todo, results, strict=True):
        if isinstance(result, KafkaError):
            failed.append(stand_in_if_too_large(out, result, stage, dlq, seal))
        elif isinstance(result, BaseException):
            raise result
    return failed


def stand_in_if_too_large(
    out: Outgoing, result: object, stage: str, dlq: str, seal: Seal = _unsealed
) -> Outgoing:
    """``out`` to send again - or its stand-in dead letter if the broker refused it as too
    large."""
    if isinstance(result, MessageSizeTooLargeError | RecordTooLargeError):
        return without_value(out, stage, dlq, seal)
    return out


class Backoff:
    """Waits between attempts while the broker is unreachable: 0.5 s doubling up to 10 s."""

    def __init__(self, stage: str, stopping: asyncio.Event) -> None:
        self.stage = stage
        self.stopping = stopping
        self.delay = 0.5

    async def wait(self, failed: list[Outgoing], what: str = "message(s) not acknowledged") -> None:
        """Sleep before the next attempt; raise when the worker is stopping (the batch stays
        uncommitted and is consumed again)."""
        if not failed or all(oversized(o) for o in failed):
            return
        if self.stopping.is_set():
            raise KafkaError(f"stopping with results not acknowledged ({what})")
        log.warning("stage %s: %d %s, retrying in %.1fs", self.stage, len(failed), what, self.delay)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 10.0)


async def deliver(
    send: Send,
    outgoing: list[Outgoing],
    stage: str,
    dlq: str,
    stopping: asyncio.Event,
    seal: Seal = _unsealed,
) -> None:
    """Send every result and wait until the broker has acknowledged all of them; while it is
    unreachable keep trying (only what failed is sent again)."""
    backoff = Backoff(stage, stopping)
    todo = list(outgoing)
    while todo:
        failed = sort_failures(todo, await send_all(send, todo), stage, dlq, seal)
        await backoff.wait(failed)
        todo = failed
