"""Client-side tools: publish JSON lines or CSV to the input topic, tail an output topic."""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_engine.errors import InputFileError
from stream_engine.runtime.cluster.settings import KafkaSettings, connected
from stream_engine.runtime.stage.codec import DLQ_PREFIX, record_key


def read_records(stream: BinaryIO, fmt: str = "auto") -> Iterator[bytes]:
    """Raw message values: each JSON line byte for byte (even if it is not valid JSON or
    UTF-8 - the pipeline dead-letters it), or each CSV row (UTF-8) as a JSON object.

    A CSV row is keyed by the header row; every value is a string (an empty cell is ``""``).
    A row with fewer values than the header leaves the missing trailing fields out of its
    object (absent, not null); a row with more values, or a header naming a column twice, is
    an ``InputFileError`` naming it, so nothing is dropped silently. Rows before a bad one
    have already been yielded."""
    if fmt == "auto":
        name = getattr(stream, "name", "")
        fmt = "csv" if str(name).endswith(".csv") else "jsonl"
    if fmt == "csv":
        where = getattr(stream, "name", "<stdin>")
        rows = 0
        reader = csv.DictReader(_text_lines(stream))
        try:
            _check_header(reader.fieldnames or [], where)
            for row in reader:
                rows += 1
                extra = row.get(None)  # DictReader's restkey: the values beyond the header
                if extra:
                    header = len(reader.fieldnames or ())
                    raise InputFileError(
                        f"{where}: CSV row {rows} (ending on line {reader.line_num}) has "
                        f"{header + len(extra)} values but the header has {header}"
                    )
                yield orjson.dumps({k: v for k, v in row.items() if v is not None})
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputFileError(f"{where}: after CSV row {rows}: {exc}") from None
        return
    for line in stream:
        if line.strip():
            yield line.rstrip(b"\r\n")


def _check_header(names: Sequence[str], where: str) -> None:
    """A column named twice would silently lose one of its values in every row."""
    first: dict[str, int] = {}
    for position, name in enumerate(names, 1):
        if name in first:
            raise InputFileError(
                f"{where}: the CSV header names column '{name}' twice "
                f"(columns {first[name]} and {position})"
            )
        first[name] = position


def _text_lines(stream: BinaryIO) -> Iterator[str]:
    """The lines of a UTF-8 stream (split on \\n, \\r\\n and \\r, kept, as ``newline=""`` does),
    each decoded on its own: a decoding error surfaces at its own row, not a chunk ahead."""
    encoding = "utf-8-sig"
    for chunk in stream:
        for line in chunk.splitlines(keepends=True):
            yield line.decode(encoding)
            encoding = "utf-8"


async def publish(
    values: Iterable[bytes],
    topic: str,
    kafka: KafkaSettings,
    key_field: str | None = None,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Produce every value (acks=all) and wait for the broker; returns how many were sent."""
    producer = AIOKafkaProducer(**kafka.producer(linger_ms=5))
    sent = 0
    async with connected(producer, kafka):
        pending = []
        started = time.monotonic()
        for value in values:
            pending.append(
                await producer.send(topic, value=value, key=record_key(value, key_field))
            )
            sent += 1
            if progress is not None:
                progress(1)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 1000:
                await _settle(pending)
        await _settle(pending)
    return sent


async def _settle(pending: list[Any]) -> None:
    await asyncio.gather(*pending)
    pending.clear()


def as_json(message: Any) -> dict[str, Any]:
    """A consumed message as one JSON object: decisions as they are; anything else framed
    with its key and position - dead letters with their headers and the original value (as
    text when it is not JSON), a tombstone with ``value: null``, a value that is not JSON as
    text and JSON that is not an object as it is."""
    headers = {k: v.decode("utf-8", "replace") for k, v in (message.headers or [])}
    if any(k.startswith(DLQ_PREFIX) for k in headers):
        return _framed(message, _value_of(message.value), headers)
    if message.value is None:  # a tombstone
        return _framed(message, None)
    value = _value_of(message.value)
    return value if isinstance(value, dict) else _framed(message, value)


def _value_of(raw: bytes | None) -> Any:
    """A message value as JSON, else as text; None when empty."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _framed(message: Any, value: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    framed: dict[str, Any] = {
        "key": message.key.decode("utf-8", "replace") if message.key else None
    }
    if headers is not None:
        framed["headers"] = headers
    framed.update(
        value=value, topic=message.topic, partition=message.partition, offset=message.offset
    )
    return framed


async def tail(
    topics: list[str],
    kafka: KafkaSettings,
    from_beginning: bool = False,
    count: int | None = None,
    idle_timeout_s: float | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Messages of ``topics`` as JSON objects, without joining a consumer group."""
    consumer = AIOKafkaConsumer(
        *topics,
        **kafka.consumer(),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    seen = 0
    last = time.monotonic()
    async with connected(consumer, kafka):
        while count is None or seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            last = time.monotonic()
            for messages in batch.values():
                for message in messages:
                    yield as_json(message)
                    seen += 1
                    if count is not None and seen >= count:
                        return
