"""What the drivers share for getting results acknowledged (no broker: the send function is a
stand-in that answers with futures, the way a Kafka client does)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, MessageSizeTooLargeError

from stream_engine.runtime.stage.codec import DROPPED_HEADER
from stream_engine.runtime.stage.delivery import (
    deliver,
    oversized,
    sort_failures,
    without_value,
)
from stream_engine.runtime.stage.processor import Outgoing

DLQ = "p.dlq"


def out(topic: str = "p.decisions", value: bytes = b"{}", headers=None) -> Outgoing:
    return Outgoing(topic, b"id-1", value, list(headers or []))


def test_a_message_refused_as_too_large_becomes_a_dead_letter_without_its_value():
    stand_in = without_value(out(value=b"x" * 5000), "compliance", DLQ)

    headers = dict(stand_in.headers)
    assert stand_in.topic == DLQ
    assert stand_in.value == b""
    assert stand_in.key == b"id-1"
    assert headers["dlq.reason"] == b"too_large"
    assert headers["dlq.stage"] == b"compliance"
    assert headers["dlq.original.topic"] == b"p.decisions"
    assert headers[DROPPED_HEADER] == b"5000"
    assert oversized(stand_in)


def test_a_too_large_dead_letter_keeps_its_own_headers_and_drops_only_the_value():
    letter = out(DLQ, b"y" * 10, [("dlq.reason", b"decode_error"), ("dlq.stage", b"a")])

    stand_in = without_value(letter, "a", DLQ)

    assert dict(stand_in.headers)["dlq.reason"] == b"decode_error"
    assert dict(stand_in.headers)[DROPPED_HEADER] == b"10"


def test_failures_are_sorted_into_stand_ins_retries_and_nothing_for_successes():
    todo = [out(value=b"ok"), out(value=b"big"), out(value=b"down")]
    results = [None, MessageSizeTooLargeError(), KafkaConnectionError()]

    again = sort_failures(todo, results, "s", DLQ)

    assert [o.value for o in again] == [b"", b"down"]
    assert oversized(again[0])
    assert not oversized(again[1])


def test_an_error_that_is_not_from_kafka_is_raised_not_retried():
    with pytest.raises(ZeroDivisionError):
        sort_failures([out()], [ZeroDivisionError()], "s", DLQ)


async def test_deliver_sends_again_only_what_was_not_acknowledged():
    sent: list[bytes] = []
    fail_once = {b"b"}

    async def send(message: Outgoing):
        sent.append(message.value)
        future = asyncio.get_running_loop().create_future()
        if message.value in fail_once:
            fail_once.discard(message.value)
            future.set_exception(KafkaConnectionError())
        else:
            future.set_result(None)
        return future

    await asyncio.wait_for(
        deliver(send, [out(value=b"a"), out(value=b"b")], "s", DLQ, asyncio.Event()), 5
    )

    assert sent == [b"a", b"b", b"b"]


async def test_deliver_gives_up_when_the_worker_is_stopping_so_the_batch_stays_uncommitted():
    stopping = asyncio.Event()
    stopping.set()

    async def send(message: Outgoing):
        future = asyncio.get_running_loop().create_future()
        future.set_exception(KafkaConnectionError())
        return future

    with pytest.raises(KafkaError, match="stopping"):
        await deliver(send, [out()], "s", DLQ, stopping)
