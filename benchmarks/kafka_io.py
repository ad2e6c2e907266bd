"""The benchmark's own Kafka clients (aiokafka): create topics, publish the input records,
and watch the output topics for decisions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from benchmarks.records import BenchRecord
from benchmarks.topology import Topology

#: Header carrying the wall-clock publish time (nanoseconds since the epoch, as text).
PUBLISHED_HEADER = "bench.published_ns"


async def create_topics(
    bootstrap: str, topology: Topology, partitions: int, dlq_partitions: int
) -> None:
    """Create every topic of ``topology`` (existing ones are left alone)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [
            NewTopic(name, dlq_partitions if name == topology.output("dlq") else partitions, 1)
            for name in topology.all_topics()
        ]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(topics)
    finally:
        await admin.close()


async def wait_for_topics(bootstrap: str, names: Sequence[str], timeout_s: float = 30.0) -> None:
    """Wait until the broker reports partitions for every topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            await consumer._client.force_metadata_update()
            if all(consumer.partitions_for_topic(name) for name in names):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not ready: {', '.join(names)}")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


def new_producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    """A batching producer; acks=all, not idempotent (the embedded broker refuses that)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
    )


@dataclass
class Publisher:
    """Publishes records to one topic and remembers when each was sent (wall clock)."""

    bootstrap: str
    topic: str
    published: dict[str, float] = field(default_factory=dict)
    on_sent: Callable[[int], None] | None = None
    #: The producer's linger; None: 5 ms at a rate, 50 ms when preloading.
    linger_ms: int | None = None

    async def publish(self, records: Sequence[BenchRecord], rate: float | None = None) -> None:
        """Send every record and wait for all acknowledgements; at ``rate`` per second if
        given (records due in the same 5 ms go together), else as fast as possible."""
        linger = self.linger_ms if self.linger_ms is not None else (5 if rate else 50)
        producer = new_producer(self.bootstrap, linger_ms=linger)
        await producer.start()
        try:
            futures: list[asyncio.Future[object]] = []
            started = time.monotonic()
            for index, record in enumerate(records):
                if rate:
                    due = started + index / rate
                    delay = due - time.monotonic()
                    if delay > 0.005:
                        await asyncio.sleep(delay)
                futures.append(await self._send(producer, record))
                if len(futures) >= 5000:
                    await self._settle(futures)
            await self._settle(futures)
        finally:
            await producer.stop()

    async def _send(
        self, producer: AIOKafkaProducer, record: BenchRecord
    ) -> asyncio.Future[object]:
        now = time.time()
        self.published[record.record_id] = now
        header = (PUBLISHED_HEADER, str(time.time_ns()).encode())
        key = record.record_id.encode()
        future: asyncio.Future[object] = await producer.send(
            self.topic, record.value, key=key, headers=[header]
        )
        return future

    async def _settle(self, futures: list[asyncio.Future[object]]) -> None:
        await asyncio.gather(*futures)
        if self.on_sent is not None:
            self.on_sent(len(futures))
        futures.clear()


@dataclass(slots=True)
class Seen:
    """When a record's decision was first seen, and on which output."""

    at: float
    kind: str


@dataclass
class Collector:
    """Reads the output topics (and the first stage's output topic, for the start time) from
    the beginning, without a consumer group, recording when each record id first appears."""

    bootstrap: str
    topology: Topology
    seen: dict[str, Seen] = field(default_factory=dict)
    duplicates: int = 0
    first_hop_at: float | None = None
    #: Read only committed transactions (what an exactly-once pipeline's consumers see).
    read_committed: bool = False
    messages: Counter[str] = field(default_factory=Counter)
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Connect and seek every partition to its beginning."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            isolation_level="read_committed" if self.read_committed else "read_uncommitted",
        )
        await consumer.start()
        topics = [*self.topology.outputs(), self.topology.first_hop]
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._consumer = consumer

    async def run(self) -> None:
        """Consume until cancelled."""
        assert self._consumer is not None
        kinds = self.topology.outputs()
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
            now = time.time()
            for tp, messages in batches.items():
                kind = kinds.get(tp.topic)
                if kind is None:
                    self._first_hop(now)
                    continue
                self.messages[kind] += len(messages)
                for message in messages:
                    self._record(message.key, kind, now)

    def _first_hop(self, now: float) -> None:
        """The first stage forwarded its first record: note when, and stop reading there."""
        if self.first_hop_at is None:
            self.first_hop_at = now
            assert self._consumer is not None
            hop = [tp for tp in self._consumer.assignment() if tp.topic == self.topology.first_hop]
            self._consumer.pause(*hop)

    def _record(self, key: bytes | None, kind: str, now: float) -> None:
        record_id = key.decode() if key else ""
        if record_id in self.seen:
            self.duplicates += 1
        else:
            self.seen[record_id] = Seen(now, kind)

    def count(self, ids: Sequence[str]) -> int:
        """How many of ``ids`` have been seen."""
        return sum(1 for record_id in ids if record_id in self.seen)

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
