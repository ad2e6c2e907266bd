"""The batch stage driver: aiokafka straight into the core, a whole ``getmany`` batch at a time.

Each batch is decoded, run through the stage, produced, and its offsets are committed only
after the broker acknowledged every result (at-least-once), or - with ``processing_guarantee:
exactly_once`` - produced and committed in one Kafka transaction per input partition, read
downstream with ``read_committed``. A rebalance waits for the batch in flight, so a worker
hands over its partitions with their offsets committed."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
    UnknownError,
    UnsupportedVersionError,
)

from stream_engine.core.plan import StagePlan
from stream_engine.errors import BrokerError
from stream_engine.runtime.codec import Incoming
from stream_engine.runtime.delivery import Backoff, deliver, send_all, stand_in_if_too_large
from stream_engine.runtime.driver import StageDriver
from stream_engine.runtime.kafka import MAX_TRANSPORT_BYTES, KafkaSettings
from stream_engine.runtime.processor import BatchReport, Outgoing, StageProcessor

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger(__name__)

#: A transaction that has not committed by then is given up (its producer is replaced, which
#: aborts it) and tried again.
TRANSACTION_LIMIT_S = 60.0

#: exactly_once: tries at making a newly assigned partition's producer before the worker stops.
TAKE_OVER_ATTEMPTS = 3

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]

#: What a broker that cannot do transactions answers to InitProducerId (Tansu: UnknownError).
_NO_TRANSACTIONS = (
    UnknownError,
    UnsupportedVersionError,
    TransactionalIdAuthorizationFailed,
    ClusterAuthorizationFailedError,
)


def _incoming(record: ConsumerRecord[bytes, bytes]) -> Incoming:
    return Incoming(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        headers=list(record.headers),
    )


def _merge(reports: Iterable[BatchReport]) -> BatchReport:
    merged = BatchReport([], [], [], [])
    for report in reports:
        merged.outgoing += report.outgoing
        merged.outcomes += report.outcomes
        merged.decisions += report.decisions
        merged.dead_letters += report.dead_letters
        merged.poison += report.poison
    return merged


class BatchStage(StageDriver):
    """One stage on an aiokafka consumer in the stage's group, and its producer(s)."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        stage: StagePlan,
        processor: StageProcessor,
        kafka: KafkaSettings,
    ) -> None:
        super().__init__(stage, processor, pipeline)
        conf = pipeline.config.runtime
        self.kafka = kafka
        self.topic = processor.topics.stage_inputs[stage.name]
        self.transactional = conf.processing_guarantee == "exactly_once"
        self.client_id = f"{kafka.client_id}.{stage.name}"
        connection = {**kafka.aiokafka(), "client_id": self.client_id}
        self.consumer = AIOKafkaConsumer(
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=conf.batch_size,
            # A broker may hold a fetch for its whole maximum wait (Tansu does): never longer
            # than a batch is allowed to wait.
            fetch_max_wait_ms=conf.batch_wait_ms,
            session_timeout_ms=int(conf.session_timeout_s * 1000),
            heartbeat_interval_ms=int(conf.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(max(conf.session_timeout_s * 2, 10.0) * 1000),
            max_partition_fetch_bytes=MAX_TRANSPORT_BYTES,
            fetch_max_bytes=MAX_TRANSPORT_BYTES,
            isolation_level="read_committed" if self.transactional else "read_uncommitted",
            **connection,
        )
        self.producer: AIOKafkaProducer | None = None
        #: exactly_once: one transactional producer per input partition, its id derived from
        #: the partition, so the next owner of a partition fences this one and aborts what it
        #: left open.
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._making: dict[TopicPartition, asyncio.Future[AIOKafkaProducer]] = {}
        #: exactly_once: the partitions this worker may process now, each with the number of
        #: the assignment that made it ready. A batch keeps only partitions whose assignment
        #: has not changed since it was fetched, so nothing read from a position older than
        #: the committed offset is ever processed.
        self._ready: dict[TopicPartition, int] = {}
        self._assignments = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def _producer_settings(self, **extra: Any) -> dict[str, Any]:
        return self.kafka.producer(
            client_id=self.client_id, linger_ms=2, max_batch_size=512 * 1024, **extra
        )

    async def start(self) -> None:
        if not self.transactional:
            self.producer = AIOKafkaProducer(**self._producer_settings())
            await self.producer.start()
        self.consumer.subscribe([self.topic], listener=_HandOver(self))
        await self.consumer.start()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                batch: Batch = await self.consumer.getmany(
                    timeout_ms=int(self.batch_wait_s * 1000), max_records=self.batch_size
                )
                # No await since getmany: the readiness seen here is the one it fetched under.
                fetched_under = dict(self._ready) if self.transactional else None
                if not batch or self.stopping.is_set():
                    continue  # when stopping, the batch stays uncommitted for the next owner
                self.begin()
                try:
                    async with self._lock:
                        # Shielded: a stop in the middle lets the batch finish and commit.
                        await asyncio.shield(self._handle(batch, fetched_under))
                finally:
                    self.end()
        except KafkaError as exc:
            if not self.stopping.is_set():
                log.error("stage %s: %s", self.stage.name, exc)
                self.fail(exc)
        except BrokerError as exc:
            self.fail(exc)
        except Exception as exc:  # a bug here must stop the worker, not leave it idle
            log.exception("stage %s: stopped by an internal error", self.stage.name)
            self.fail(exc)

    async def _handle(self, batch: Batch, fetched_under: dict[TopicPartition, int] | None) -> None:
        if fetched_under is None:
            owned = self.consumer.assignment()
            # Partitions revoked while this batch waited for the lock belong to another worker.
            batch = {tp: records for tp, records in batch.items() if tp in owned}
        else:
            # exactly_once: only partitions that were ready when fetched and are still in the
            # same assignment (a reassignment re-read the committed offset and sought to it).
            batch = {
                tp: records
                for tp, records in batch.items()
                if tp in fetched_under and self._ready.get(tp) == fetched_under[tp]
            }
        if not batch:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.transactional:
            done = await asyncio.gather(*(self._transact(tp, rs) for tp, rs in batch.items()))
            report = _merge(r for r in done if r is not None)
            count = sum(
                len(rs) for (tp, rs), r in zip(batch.items(), done, strict=True) if r is not None
            )
        else:
            report = await self.processor.process(
                [_incoming(r) for rs in batch.values() for r in rs]
            )
            await deliver(
                self._send,
                report.outgoing,
                self.stage.name,
                self.processor.topics.dlq,
                self.stopping,
                self.processor.seal,
            )
            await self._commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
            count = sum(len(records) for records in batch.values())
        self.report(report, count, loop.time() - started)

    async def _send(self, out: Outgoing) -> Awaitable[object]:
        assert self.producer is not None
        return await _queue(self.producer, out)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning(
                "stage %s: offsets not committed (%s); the partition's next owner consumes "
                "the batch again",
                self.stage.name,
                exc,
            )

    async def _transact(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> BatchReport | None:
        """One partition's share of the batch, produced and committed in one transaction;
        None when the partition was lost before it committed (its next owner redoes it)."""
        report = await self.processor.process([_incoming(r) for r in records])
        todo = list(report.outgoing)
        backoff = Backoff(self.stage.name, self.stopping)
        dlq = self.processor.topics.dlq
        while tp in self._ready:
            producer = await self._transactional_producer(tp)
            try:
                async with asyncio.timeout(TRANSACTION_LIMIT_S):
                    await producer.begin_transaction()
                    results = await send_all(functools.partial(_queue, producer), todo)
                    refused = [r for r in results if isinstance(r, BaseException)]
                    if not refused:
                        await producer.send_offsets_to_transaction(
                            {tp: records[-1].offset + 1}, self.group
                        )
                        await producer.commit_transaction()
                        return report
                    await producer.abort_transaction()
                    todo = [
                        stand_in_if_too_large(out, r, self.stage.name, dlq, self.processor.seal)
                        for out, r in zip(todo, results, strict=True)
                    ]
                    retry = [
                        o
                        for o, r in zip(todo, results, strict=True)
                        if isinstance(r, BaseException)
                    ]
            except ProducerFenced:
                # Only a new owner of the partition makes a producer with its id: this worker
                # lost it, and must not make another (that would fence the owner in turn).
                log.warning(
                    "stage %s: %s has a new owner; its batch is left to it", self.stage.name, tp
                )
                self._ready.pop(tp, None)
                await self._drop_producer(tp)
                return None
            except (KafkaError, TimeoutError) as exc:
                log.warning("stage %s: transaction on %s failed: %s", self.stage.name, tp, exc)
                await self._drop_producer(tp)
                retry = todo
            await backoff.wait(retry, "results not committed in a transaction")
        return None

    async def _transactional_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        """The partition's producer, made once: two made side by side (the rebalance listener
        and a batch) would fence each other, as they share the transactional id."""
        producer = self.producers.get(tp)
        if producer is not None:
            return producer
        making = self._making.get(tp)
        if making is None:
            making = self._making[tp] = asyncio.ensure_future(self._new_producer(tp))
        return await asyncio.shield(making)

    async def _new_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        """Start the partition's producer; it is registered in the same step that ends the
        making, so no caller ever sees neither."""
        try:
            producer = await self._start_producer(tp)
            self.producers[tp] = producer
            return producer
        finally:
            self._making.pop(tp, None)

    async def _start_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        transactional_id = f"{self.group}.{tp.topic}.{tp.partition}"
        producer = AIOKafkaProducer(
            **self._producer_settings(enable_idempotence=True, transactional_id=transactional_id)
        )
        try:
            await producer.start()
        except _NO_TRANSACTIONS as exc:
            await producer.stop()
            raise BrokerError(
                f"processing_guarantee exactly_once: the broker {self.kafka.describe()} "
                f"refused a transactional producer ({type(exc).__name__}); the embedded "
                "broker cannot do transactions - use at_least_once there"
            ) from None
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _start_from_committed(self, tp: TopicPartition) -> None:
        """Seek a newly assigned partition to its committed offset, read again now. aiokafka
        reads it at the assignment, possibly while the previous owner's last transaction was
        still being completed; making this worker's producer for the partition has completed
        (or aborted) it, so the offset read now is final. Then the partition is ready."""
        committed = await self.consumer.committed(tp)
        if committed is None:  # nothing committed yet: from the start, as auto_offset_reset says
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, committed)
        self._assignments += 1
        self._ready[tp] = self._assignments

    async def _drop_producer(self, tp: TopicPartition) -> None:
        producer = self.producers.pop(tp, None)
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError as exc:
                log.debug("stage %s: closing the producer of %s: %s", self.stage.name, tp, exc)

    async def finish(self) -> None:
        """Every batch commits itself; nothing is left to commit."""

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()
        for tp in list(self.producers):
            await self._drop_producer(tp)
        if self.producer is not None:
            await self.producer.stop()

    def assignment(self) -> Iterable[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in self.consumer.assignment()]

    async def lags(self) -> list[tuple[str, int, int]]:
        out = []
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = await self.consumer.position(tp)
            except IllegalStateError:
                continue
            out.append((tp.topic, tp.partition, end - position))
        return out


async def _queue(producer: AIOKafkaProducer, out: Outgoing) -> Awaitable[object]:
    future: Awaitable[object] = await producer.send(
        out.topic, out.value, out.key, headers=out.headers or None
    )
    return future


class _HandOver(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in flight finish (and commit) before partitions are handed over."""

    def __init__(self, driver: BatchStage) -> None:
        self.driver = driver

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.driver._lock:
            for tp in revoked:
                self.driver._ready.pop(tp, None)
                await self.driver._drop_producer(tp)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """exactly_once: a transactional producer per new partition right away - fencing the
        previous owner's and completing or aborting what it left open - then the partition
        starts from its committed offset as it stands after that, and becomes ready. A broker
        that cannot do transactions is found out here rather than at the first record."""
        driver = self.driver
        if not driver.transactional:
            return
        for tp in sorted(assigned):
            for attempt in range(1, TAKE_OVER_ATTEMPTS + 1):
                try:
                    await driver._transactional_producer(tp)
                    await driver._start_from_committed(tp)
                    break
                except BrokerError as exc:
                    driver.fail(exc)
                    return
                except KafkaError as exc:
                    if attempt == TAKE_OVER_ATTEMPTS:
                        # Without its producer the partition could not be processed at all.
                        log.error("stage %s: cannot take %s over: %s", driver.stage.name, tp, exc)
                        driver.fail(exc)
                        return
                    log.warning("stage %s: taking %s over: %s", driver.stage.name, tp, exc)
                    await asyncio.sleep(attempt)
