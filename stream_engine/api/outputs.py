"""Every API process reads every partition of the pipeline's output topics (no consumer
group: each keeps its own position) and feeds what it reads to its ``DecisionView``: so any
process answers ``GET /v1/decisions/{id}`` and each one sees the decisions its own decide
calls wait for, whichever worker wrote them. On start it reads back ``api.view.retention_s``
(at most ``max_decisions`` a partition) to rebuild the view, and is ready once caught up.

With the pipeline's envelope keys, a message the workers did not sign is left out and counted:
a producer who can write an output topic cannot make the API answer with a forged decision."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_engine.api.view import Answer, DecisionView
from stream_engine.core.outcome import OutputKind, Status
from stream_engine.errors import BrokerError
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.cluster.topics import describe_topics
from stream_engine.runtime.stage.codec import DLQ_PREFIX, TRACE_HEADER
from stream_engine.runtime.stage.integrity import EnvelopeAuth

log = logging.getLogger(__name__)

#: How long a fetch waits on idle partitions. Apache Kafka answers a fetch as soon as a
#: decision is written, but a broker may hold it for this whole wait (Tansu, the embedded
#: broker, does: a decision then waits half of it on average, 26 ms at 100 ms, 4 ms at 20 ms).
#: The price is idle fetches: about 5% of a core per API process with nothing to read, against
#: 1.3% at 100 ms (benchmarks/api.py, README).
FETCH_WAIT_MS = 20
RETRY_S = 1.0


def answer_of(message: Any, dlq_topic: str) -> Answer | None:
    """The answer a consumed output message gives, or None when it is not a decision (not
    JSON, no record id)."""
    if message.topic == dlq_topic:
        return _dead_letter(message)
    value = message.value
    if not value:
        return None
    body = orjson.loads(value)
    if not isinstance(body, dict):
        return None
    record_id, status = body.get("record_id"), body.get("status")
    if not isinstance(record_id, str) or not record_id or not isinstance(status, str):
        return None
    trace = body.get("trace")
    return Answer(
        record_id, status, value, int(message.timestamp), trace if isinstance(trace, str) else None
    )


def _dead_letter(message: Any) -> Answer | None:
    """A dead letter as an answer: why and where it stopped, from its ``dlq.*`` headers (never
    the original bytes, which may hold what the caller sent and more)."""
    headers = {k: v.decode("utf-8", "replace") for k, v in (message.headers or [])}
    record_id = headers.get(DLQ_PREFIX + "record_id")
    if not record_id:
        return None
    body = {
        "record_id": record_id,
        "status": Status.DEAD_LETTER.value,
        "reason": headers.get(DLQ_PREFIX + "reason"),
        "stage": headers.get(DLQ_PREFIX + "stage"),
        "rule": headers.get(DLQ_PREFIX + "rule") or None,
        "message": headers.get(DLQ_PREFIX + "exception.message"),
        "failed_at": headers.get(DLQ_PREFIX + "failed_at"),
        "pipeline": headers.get(DLQ_PREFIX + "pipeline"),
        "config_hash": headers.get(DLQ_PREFIX + "config_hash"),
    }
    trace = headers.get(TRACE_HEADER)
    if trace:
        body["trace"] = trace
    return Answer(
        record_id, Status.DEAD_LETTER.value, orjson.dumps(body), int(message.timestamp), trace
    )


class OutputReader:
    """Reads the output topics into a view until stopped."""

    def __init__(
        self,
        topics: TopicNames,
        kafka: KafkaSettings,
        view: DecisionView,
        auth: EnvelopeAuth | None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.topics = [topics.for_output(kind.value) for kind in OutputKind]
        self.dlq = topics.dlq
        self.kafka = kafka
        self.view = view
        self.auth = auth
        self.on_refused = on_refused
        self.refused = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._behind: dict[TopicPartition, int] = {}
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        """Assign every output partition, seek back to rebuild the view, start reading."""
        consumer = AIOKafkaConsumer(
            **self.kafka.consumer(
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                fetch_max_wait_ms=FETCH_WAIT_MS,
            )
        )
        await consumer.start()
        try:
            await self._assign(consumer)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.ensure_future(self._read())

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        # Partition counts from the cluster itself: the consumer's own metadata need not know a
        # topic created a moment ago (Apache Kafka), and an unknown topic would read nothing.
        counts = await describe_topics(self.topics, self.kafka)
        missing = [t for t, count in counts.items() if not count]
        if missing:
            raise BrokerError(
                f"output topic(s) {', '.join(missing)} do not exist; create them with "
                "'stream-engine topics create CONFIG'"
            )
        partitions = [
            TopicPartition(topic, p) for topic in self.topics for p in range(counts[topic] or 0)
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        since = int(time.time() * 1000) - self.view.retention_ms
        try:
            by_time = await consumer.offsets_for_times(dict.fromkeys(partitions, since))
        except KafkaError:
            by_time = {}
        for tp in partitions:
            found = by_time.get(tp)
            start = ends[tp] if found is None else found.offset
            start = max(start, starts[tp], ends[tp] - self.view.max_decisions)
            consumer.seek(tp, start)
            if start < ends[tp]:
                self._behind[tp] = ends[tp]
        if not self._behind:
            self.caught_up.set()

    async def stop(self) -> None:
        """Stop reading and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _read(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=1000)
            except KafkaError as exc:
                log.warning("reading the output topics: %s; retrying", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                continue
            for tp, messages in batch.items():
                for message in messages:
                    self._take(message)
                if tp in self._behind and messages[-1].offset + 1 >= self._behind[tp]:
                    del self._behind[tp]
            if self._behind and not batch:
                await self._check_behind(consumer)
            if not self._behind and not self.caught_up.is_set():
                self.caught_up.set()

    async def _check_behind(self, consumer: AIOKafkaConsumer) -> None:
        """Partitions whose remaining messages were compacted or deleted count as caught up."""
        for tp, end in list(self._behind.items()):
            if await consumer.position(tp) >= end:
                del self._behind[tp]

    def _take(self, message: Any) -> None:
        """One output message into the view: verified, decoded, or left out and counted."""
        if self.auth is not None:
            problem = self.auth.verify(
                message.topic,
                message.value or b"",
                list(message.headers or []),
                bind=message.topic == self.dlq,
            )
            if problem is not None:
                self._refuse(message, problem)
                return
        try:
            answer = answer_of(message, self.dlq)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            self._refuse(message, f"not a decision ({type(exc).__name__})")
            return
        if answer is None:
            self._refuse(message, "not a decision")
            return
        self.view.offer(answer)

    def _refuse(self, message: Any, why: str) -> None:
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused(message.topic)
        log.warning("left out %s[%d]@%d: %s", message.topic, message.partition, message.offset, why)
