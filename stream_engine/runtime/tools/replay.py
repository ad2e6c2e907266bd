"""Dead-letter replay: send dead letters back to the stage they failed in, after a fix.

Each partition of the dead-letter topic is read from its start up to the end it had when the
replay started, and no further: letters written afterwards - including those of replayed
records that fail again - are not read at all and wait for the next replay, so a replay always
finishes, however fast letters arrive and whatever any clock says. Those ends are taken once,
before anything is sent, as the larger of the broker's end offset and the high watermark of a
first fetch: the embedded broker reports the end of a partition as the first offset of its last
record batch plus one - too early - while its fetch answers carry the right high watermark.

Every letter is judged in one place (``judge``): it is replayed, or skipped with a reason -
malformed ``dlq.*`` headers (named by partition and offset in the summary), filtered out, or a
stage this pipeline does not run. Each chosen letter goes back as it came: its original bytes
and key, its trace header, and ``dlq.attempt`` one higher. Replay keeps no position of its own:
running it twice sends the letters twice (the pipeline is at-least-once anyway; a duplicate
carries the same record id). Narrow it with ``reason``, ``stage`` and ``since``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_engine.errors import StreamEngineError
from stream_engine.runtime.cluster.settings import KafkaSettings, connected
from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.cluster.topics import describe_topics
from stream_engine.runtime.stage.codec import (
    ATTEMPT_HEADER,
    AUTH_HEADER,
    DLQ_PREFIX,
    ORIGINAL_AUTH_HEADER,
    TRACE_HEADER,
)
from stream_engine.runtime.stage.integrity import EnvelopeAuth

#: Skip reasons, as the summary counts them.
MALFORMED = "malformed headers"
#: A letter whose tag does not verify: forged, or altered after a worker wrote it.
UNVERIFIED = "not written by this pipeline's workers"
FILTERED = "filtered out"
FOREIGN_STAGE = "stage not in this pipeline (or disabled)"
#: Malformed letters named one by one in the summary; the rest are only counted.
MAX_NAMED = 100
#: A partition whose position has not moved for this long is given up (and reported).
STALL_S = 30.0
#: The longest ``dlq.attempt`` read (a replay count, not a number to parse at any length).
MAX_ATTEMPT_DIGITS = 9
#: The ``dlq.*`` headers a replay reads; every other header is passed over.
READ_HEADERS = ("stage", "reason", "attempt", "failed_at")


class MalformedLetter(StreamEngineError):
    """A dead letter whose ``dlq.*`` headers this engine did not write; the message says how."""


@dataclass(frozen=True, slots=True)
class Letter:
    """What a replay reads from a dead letter's headers."""

    stage: str
    reason: str
    attempt: int = 1
    failed_at: datetime | None = None
    trace: bytes | None = None
    #: The tag the original message carried (an envelope's): it goes back with the bytes.
    original_auth: bytes | None = None


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which dead letters to replay (all when nothing is set)."""

    reasons: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    since: datetime | None = None

    def accepts(self, letter: Letter) -> bool:
        """Whether this (well-formed) dead letter is chosen; undated ones fail ``since``."""
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.stages and letter.stage not in self.stages:
            return False
        if self.since is not None:
            return letter.failed_at is not None and letter.failed_at >= self.since
        return True


@dataclass(frozen=True, slots=True)
class Skipped:
    """A letter that is not replayed, and why."""

    reason: str
    detail: str = ""


@dataclass(slots=True)
class ReplaySummary:
    """What a replay saw and did."""

    scanned: int = 0
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    by_stage_reason: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The first ``MAX_NAMED`` malformed letters: "partition P offset O: why".
    malformed: list[str] = field(default_factory=list)
    #: Partitions given up before their start-time end: partition -> (position, end).
    unfinished: dict[int, tuple[int, int]] = field(default_factory=dict)

    def skip(self, message: Any, verdict: Skipped) -> None:
        """Count a skipped letter; name it when it is malformed."""
        self.skipped[verdict.reason] += 1
        if verdict.reason in (MALFORMED, UNVERIFIED) and len(self.malformed) < MAX_NAMED:
            where = f"partition {message.partition} offset {message.offset}"
            self.malformed.append(f"{where}: {verdict.detail}")


def _shown(value: bytes | str) -> str:
    """A header value as it may be printed: quoted, escaped, at most 40 characters."""
    return repr(value[:40]) + ("..." if len(value) > 40 else "")


def read_letter(headers: Sequence[tuple[str, bytes | None]]) -> Letter:
    """The replay's view of a dead letter's headers; ``MalformedLetter`` when one it reads is
    repeated, empty, not UTF-8 or not of its form, or ``dlq.stage``/``dlq.reason`` is missing."""
    raw: dict[str, bytes | None] = {}
    trace: bytes | None = None
    original: bytes | None = None
    for name, value in headers:
        if name == TRACE_HEADER:
            trace = value
        elif name == ORIGINAL_AUTH_HEADER:
            original = value
        field_name = name.removeprefix(DLQ_PREFIX)
        if name.startswith(DLQ_PREFIX) and field_name in READ_HEADERS:
            if field_name in raw:
                raise MalformedLetter(f"{name} appears more than once")
            raw[field_name] = value
    text: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            raise MalformedLetter(f"{DLQ_PREFIX}{name} has no value")
        try:
            text[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedLetter(f"{DLQ_PREFIX}{name} is not UTF-8 ({_shown(value)})") from None
    for required in ("stage", "reason"):
        if not text.get(required):
            raise MalformedLetter(f"no {DLQ_PREFIX}{required}")
    attempt = _attempt(text.get("attempt"))
    return Letter(text["stage"], text["reason"], attempt, _when(text), trace, original)


def _attempt(text: str | None) -> int:
    if text is None:
        return 1
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_ATTEMPT_DIGITS):
        raise MalformedLetter(f"{ATTEMPT_HEADER} is not a whole number ({_shown(text)})")
    return int(text)


def _when(text: dict[str, str]) -> datetime | None:
    value = text.get("failed_at")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise MalformedLetter(
            f"{DLQ_PREFIX}failed_at is not an ISO time with a UTC offset ({_shown(value)})"
        )
    return moment


def replayed_headers(letter: Letter) -> list[tuple[str, bytes]]:
    """The headers a replayed message carries: the next attempt number, and the trace."""
    out = [(ATTEMPT_HEADER, str(letter.attempt + 1).encode())]
    if letter.trace is not None:
        out.append((TRACE_HEADER, letter.trace))
    if letter.original_auth is not None:
        out.append((AUTH_HEADER, letter.original_auth))  # the stage verifies it again
    return out


def judge(
    message: Any, chosen: ReplayFilter, topics: TopicNames, auth: EnvelopeAuth | None = None
) -> tuple[str, Letter] | Skipped:
    """The one place a dead letter is accepted - the topic it goes back to, and its letter -
    or skipped with a reason. With the pipeline's keys, a letter a worker did not write (its
    tag, over its bytes and ``dlq.*`` headers, does not verify) is never replayed."""
    headers = list(message.headers or [])
    if auth is not None:
        problem = auth.verify(topics.dlq, message.value or b"", headers, bind=True)
        if problem is not None:
            return Skipped(UNVERIFIED, problem)
    try:
        letter = read_letter(headers)
    except MalformedLetter as exc:
        return Skipped(MALFORMED, str(exc))
    if not chosen.accepts(letter):
        return Skipped(FILTERED)
    target = topics.stage_inputs.get(letter.stage)
    if target is None:
        return Skipped(FOREIGN_STAGE)
    return target, letter


async def replay(
    topics: TopicNames,
    kafka: KafkaSettings,
    chosen: ReplayFilter,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stall_s: float = STALL_S,
    auth: EnvelopeAuth | None = None,
) -> ReplaySummary:
    """Re-publish the chosen dead letters to their stage's topic (acks=all) and wait for the
    broker; ``progress(done, total)`` follows the scan of the dead-letter topic; ``auth``
    verifies each letter first (None: envelope authentication is off)."""
    # Asked of the cluster: a consumer with no subscription holds metadata of no topic
    # (Apache Kafka answers its empty metadata request with none).
    partitions = (await describe_topics([topics.dlq], kafka))[topics.dlq]
    if not partitions:
        raise StreamEngineError(f"topic {topics.dlq} does not exist")
    consumer = AIOKafkaConsumer(
        **kafka.consumer(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    async with connected(consumer, kafka):
        tps = [TopicPartition(topics.dlq, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts = {tp: await consumer.position(tp) for tp in tps}
        committed = kafka.isolation_level == "read_committed"
        ends = await start_ends(consumer, starts, committed)
        scan = _Scan(
            consumer, starts, ends, chosen, topics, ReplaySummary(), progress, stall_s, auth
        )
        if dry_run:
            await scan.run(None)
            return scan.summary
        producer = AIOKafkaProducer(**kafka.producer())
        async with connected(producer, kafka):
            pending: list[Any] = []
            await scan.run((producer, pending))
            for future in pending:
                await future
    return scan.summary


async def start_ends(
    consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int], committed: bool
) -> dict[TopicPartition, int]:
    """Each partition's end as the replay starts: the larger of the listed end offset and the
    high watermark (last stable offset when reading committed) of a fetch at its last record;
    the consumer is left at ``starts``."""
    tps = list(starts)
    listed: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(starts[tp], listed[tp] - 1))

    def mark(tp: TopicPartition) -> int | None:
        value = consumer.last_stable_offset(tp) if committed else consumer.highwater(tp)
        return None if value is None else int(value)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while any(mark(tp) is None for tp in tps) and loop.time() < deadline:
        await consumer.getmany(*tps, timeout_ms=200, max_records=1)
    ends = {tp: max(listed[tp], mark(tp) or 0) for tp in tps}
    for tp in tps:
        consumer.seek(tp, starts[tp])
    return ends


@dataclass
class _Scan:
    """One pass over the dead-letter topic, each partition up to its start-time end."""

    consumer: AIOKafkaConsumer
    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    chosen: ReplayFilter
    topics: TopicNames
    summary: ReplaySummary
    progress: Callable[[int, int], None] | None
    stall_s: float
    auth: EnvelopeAuth | None = None

    async def run(self, sink: tuple[AIOKafkaProducer, list[Any]] | None) -> None:
        """Read every partition to its end (or until it stalls), judging and sending."""
        total = sum(max(self.ends[tp] - self.starts[tp], 0) for tp in self.ends)
        remaining = await self._unfinished(set(self.ends))
        loop = asyncio.get_running_loop()
        moved = loop.time()
        if self.progress is not None:
            self.progress(0, total)
        while remaining:
            batch = await self.consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= self.ends[tp]:
                        break  # written after the replay started: left for the next one
                    await self._one(message, sink)
            if batch:
                moved = loop.time()
            remaining = await self._unfinished(remaining)
            if self.progress is not None:
                self.progress(self.summary.scanned, max(total, self.summary.scanned))
            if remaining and loop.time() - moved > self.stall_s:
                for tp in remaining:
                    position = await self.consumer.position(tp)
                    self.summary.unfinished[tp.partition] = (position, self.ends[tp])
                return

    async def _unfinished(self, partitions: set[TopicPartition]) -> set[TopicPartition]:
        """The partitions not yet read to their end; finished ones are paused."""
        left = set()
        for tp in partitions:
            if await self.consumer.position(tp) < self.ends[tp]:
                left.add(tp)
            else:
                self.consumer.pause(tp)
        return left

    async def _one(self, message: Any, sink: tuple[AIOKafkaProducer, list[Any]] | None) -> None:
        summary = self.summary
        summary.scanned += 1
        verdict = judge(message, self.chosen, self.topics, self.auth)
        if isinstance(verdict, Skipped):
            summary.skip(message, verdict)
            return
        target, letter = verdict
        summary.by_stage_reason[(letter.stage, letter.reason)] += 1
        if sink is not None:
            await _send(message, target, letter, sink)
            summary.replayed += 1


async def _send(
    message: Any, target: str, letter: Letter, sink: tuple[AIOKafkaProducer, list[Any]]
) -> None:
    producer, pending = sink
    pending.append(
        await producer.send(
            target, value=message.value, key=message.key, headers=replayed_headers(letter)
        )
    )
    if len(pending) >= 1000:
        for future in pending:
            await future
        pending.clear()


__all__ = [
    "Letter",
    "MalformedLetter",
    "ReplayFilter",
    "ReplaySummary",
    "Skipped",
    "judge",
    "read_letter",
    "replay",
    "replayed_headers",
]
