"""Dead-letter replay: send dead letters back to the stage they failed in, after a fix.

The dead-letter topic is read from its start to its end; letters written after the replay
started - including those of replayed records that fail again - are left for the next one, so a
replay always finishes. (The end is where the broker's end offset says and nothing more
arrives: the embedded broker reports the end of a partition as the first offset of its last
record batch plus one, too early.) Each chosen letter goes back as it came: its original bytes and
key, its trace header, and ``dlq.attempt`` one higher. Replay keeps no position of its own:
running it twice sends the letters twice (the pipeline is at-least-once anyway; a duplicate
carries the same record id). Narrow it with ``reason``, ``stage`` and ``since``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_engine.errors import StreamEngineError
from stream_engine.runtime.codec import ATTEMPT_HEADER, DLQ_PREFIX, TRACE_HEADER
from stream_engine.runtime.kafka import KafkaSettings, connected
from stream_engine.runtime.names import TopicNames
from stream_engine.runtime.topics import describe_topics


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which dead letters to replay (all when nothing is set)."""

    reasons: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    since: datetime | None = None

    def accepts(self, headers: dict[str, str]) -> bool:
        """Whether a dead letter with these (``dlq.``-less) headers is chosen."""
        if self.reasons and headers.get("reason") not in self.reasons:
            return False
        if self.stages and headers.get("stage") not in self.stages:
            return False
        if self.since is not None:
            failed = _parse_time(headers.get("failed_at"))
            if failed is None or failed < self.since:
                return False
        return True


@dataclass(slots=True)
class ReplaySummary:
    """What a replay saw and did."""

    scanned: int = 0
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    by_stage_reason: Counter[tuple[str, str]] = field(default_factory=Counter)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def replayed_headers(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The headers a replayed message carries: the trace, and the next attempt number."""
    values = dict(headers)
    attempt = values.get(ATTEMPT_HEADER, b"1").decode("ascii", "replace")
    out = [(ATTEMPT_HEADER, str(int(attempt) + 1 if attempt.isdigit() else 2).encode())]
    if TRACE_HEADER in values:
        out.append((TRACE_HEADER, values[TRACE_HEADER]))
    return out


async def replay(
    topics: TopicNames,
    kafka: KafkaSettings,
    chosen: ReplayFilter,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Re-publish the chosen dead letters to their stage's topic (acks=all) and wait for the
    broker; ``progress(done, total)`` follows the scan of the dead-letter topic."""
    summary = ReplaySummary()
    started = datetime.now(UTC)
    # Asked of the cluster: a consumer with no subscription holds metadata of no topic
    # (Apache Kafka answers its empty metadata request with none).
    partitions = (await describe_topics([topics.dlq], kafka))[topics.dlq]
    if not partitions:
        raise StreamEngineError(f"topic {topics.dlq} does not exist")
    consumer = AIOKafkaConsumer(**kafka.consumer(), group_id=None, enable_auto_commit=False)
    async with connected(consumer, kafka):
        tps = [TopicPartition(topics.dlq, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts = {tp: await consumer.position(tp) for tp in tps}
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        if progress is not None:
            progress(0, total)
        scan = _Scan(consumer, tps, chosen, topics, summary, started, progress, total)
        if dry_run:
            await scan.run(None)
            return summary
        producer = AIOKafkaProducer(**kafka.producer())
        async with connected(producer, kafka):
            pending: list[Any] = []
            await scan.run((producer, pending))
            for future in pending:
                await future
    return summary


@dataclass
class _Scan:
    """One pass over the dead-letter topic."""

    consumer: AIOKafkaConsumer
    tps: list[TopicPartition]
    chosen: ReplayFilter
    topics: TopicNames
    summary: ReplaySummary
    started: datetime
    progress: Callable[[int, int], None] | None
    total: int

    async def run(self, sink: tuple[AIOKafkaProducer, list[Any]] | None) -> None:
        summary = self.summary
        while True:
            batch = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            for messages in batch.values():
                for message in messages:
                    summary.scanned += 1
                    target = _target(message, self.chosen, self.topics, summary, self.started)
                    if target is not None and sink is not None:
                        await _send(message, target, sink)
                        summary.replayed += 1
            if self.progress is not None:
                self.progress(summary.scanned, max(self.total, summary.scanned))
            if not batch and await self._at_end():
                return

    async def _at_end(self) -> bool:
        ends = await self.consumer.end_offsets(self.tps)
        for tp in self.tps:
            if await self.consumer.position(tp) < ends[tp]:
                return False
        return True


def _target(
    message: Any,
    chosen: ReplayFilter,
    topics: TopicNames,
    summary: ReplaySummary,
    started: datetime,
) -> str | None:
    """The topic a dead letter goes back to, or None when it is not replayed."""
    headers = {
        k.removeprefix(DLQ_PREFIX): v.decode("utf-8", "replace")
        for k, v in (message.headers or [])
        if k.startswith(DLQ_PREFIX)
    }
    stage = headers.get("stage", "")
    failed = _parse_time(headers.get("failed_at"))
    if failed is not None and failed >= started:
        summary.skipped["written during this replay"] += 1
        return None
    if not chosen.accepts(headers):
        summary.skipped["filtered out"] += 1
        return None
    if stage not in topics.stage_inputs:
        summary.skipped["stage not in this pipeline (or disabled)"] += 1
        return None
    summary.by_stage_reason[(stage, headers.get("reason", "?"))] += 1
    return topics.stage_inputs[stage]


async def _send(message: Any, target: str, sink: tuple[AIOKafkaProducer, list[Any]]) -> None:
    producer, pending = sink
    pending.append(
        await producer.send(
            target,
            value=message.value,
            key=message.key,
            headers=replayed_headers(list(message.headers or [])),
        )
    )
    if len(pending) >= 1000:
        for future in pending:
            await future
        pending.clear()


__all__ = ["ReplayFilter", "ReplaySummary", "replay", "replayed_headers"]
