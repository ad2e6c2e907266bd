"""How a batch driver's results and offsets reach the broker: the processing guarantee.

``processing_guarantee`` picks one ``Guarantee`` when the stage starts:
- ``AtLeastOnce``: one plain producer; a batch's results are produced, every acknowledgement
  awaited, then its offsets committed - a crash in between consumes the batch again.
- ``ExactlyOnce``: one transactional producer per input partition (``PartitionProducers``);
  each partition's share of a batch is produced and its offsets committed in one Kafka
  transaction, read downstream with ``read_committed``. A newly assigned partition is taken
  over (its producer fences the previous owner's, completing or aborting what it left open)
  before it is processed.
``HandOver`` is the consumer's rebalance listener: it lets the batch in flight finish before
partitions go, and tells the guarantee - and a stage that keeps state, its ``Restorer`` - what
was assigned and revoked."""

from __future__ import annotations

import asyncio
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

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

from stream_engine.errors import BrokerError
from stream_engine.runtime.stage.delivery import (
    Backoff,
    Seal,
    deliver,
    send_all,
    stand_in_if_too_large,
)
from stream_engine.runtime.stage.processor import Outgoing

log = logging.getLogger(__name__)

#: A transaction that has not committed by then is given up (its producer is replaced, which
#: aborts it) and tried again.
TRANSACTION_LIMIT_S = 60.0

#: exactly_once: tries at making a newly assigned partition's producer before the worker stops.
TAKE_OVER_ATTEMPTS = 3

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]

#: Splits a batch into the shares this worker may still process, each delivered and committed
#: on its own; judged by what was true when the batch was fetched.
Split = Callable[[Batch], list[Batch]]

#: What a broker that cannot do transactions answers to InitProducerId (Tansu: UnknownError).
_NO_TRANSACTIONS = (
    UnknownError,
    UnsupportedVersionError,
    TransactionalIdAuthorizationFailed,
    ClusterAuthorizationFailedError,
)


@dataclass(frozen=True)
class StageClients:
    """What a guarantee works with: the stage's consumer and how to make its producers."""

    stage: str
    group: str
    consumer: AIOKafkaConsumer
    #: Producer settings, given extra keyword settings.
    producer_settings: Callable[..., dict[str, Any]]
    #: The broker, as named in an error.
    broker: str
    dlq: str
    seal: Seal
    stopping: asyncio.Event
    #: Stops the stage and tells the worker why.
    fail: Callable[[BaseException], None]


async def queue(producer: AIOKafkaProducer, out: Outgoing) -> Awaitable[object]:
    """Queue one message; return the future of its acknowledgement."""
    future: Awaitable[object] = await producer.send(
        out.topic, out.value, out.key, partition=out.partition, headers=out.headers or None
    )
    return future


def offsets_after(share: Batch) -> dict[TopicPartition, int]:
    """The offsets to commit once ``share`` is done: one past its last record per partition."""
    return {tp: records[-1].offset + 1 for tp, records in share.items()}


class Guarantee(ABC):
    """Gets a batch's results produced and its offsets committed, as the guarantee says."""

    #: The consumer's isolation level: what it reads of transactional producers' writes.
    isolation_level: ClassVar[str]

    def __init__(self, clients: StageClients) -> None:
        self.clients = clients

    @abstractmethod
    async def start(self) -> None:
        """Make what is needed before the consumer joins its group."""

    @abstractmethod
    def fetched(self) -> Split:
        """Called right after a fetch: how to split that batch when its turn comes."""

    @abstractmethod
    async def deliver_and_commit(self, share: Batch, outgoing: list[Outgoing]) -> bool:
        """Produce a share's results and commit its offsets; False if the share's partition
        was lost first (its next owner processes it again)."""

    async def assigned(self, assigned: set[TopicPartition]) -> None:  # noqa: B027 - optional
        """Partitions just assigned to this worker."""

    async def revoked(self, revoked: set[TopicPartition]) -> None:  # noqa: B027 - optional
        """Partitions just taken from this worker (no batch is in flight)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop the producers (after the consumer)."""


class AtLeastOnce(Guarantee):
    """One plain producer; offsets are committed after every result was acknowledged."""

    isolation_level = "read_uncommitted"

    def __init__(self, clients: StageClients) -> None:
        super().__init__(clients)
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(**self.clients.producer_settings())
        await self.producer.start()

    def fetched(self) -> Split:
        return self._split

    def _split(self, batch: Batch) -> list[Batch]:
        """The whole batch as one share, less partitions revoked while it waited (another
        worker owns them now)."""
        owned = self.clients.consumer.assignment()
        batch = {tp: records for tp, records in batch.items() if tp in owned}
        return [batch] if batch else []

    async def deliver_and_commit(self, share: Batch, outgoing: list[Outgoing]) -> bool:
        clients = self.clients
        await deliver(
            self._send, outgoing, clients.stage, clients.dlq, clients.stopping, clients.seal
        )
        await self._commit(offsets_after(share))
        return True

    async def _send(self, out: Outgoing) -> Awaitable[object]:
        assert self.producer is not None
        return await queue(self.producer, out)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.clients.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning(
                "stage %s: offsets not committed (%s); the partition's next owner consumes "
                "the batch again",
                self.clients.stage,
                exc,
            )

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


class PartitionProducers:
    """One transactional producer per input partition, its id derived from the partition, so
    the next owner of a partition fences this one and aborts what it left open."""

    def __init__(self, clients: StageClients) -> None:
        self.clients = clients
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self.making: dict[TopicPartition, asyncio.Future[AIOKafkaProducer]] = {}

    async def get(self, tp: TopicPartition) -> AIOKafkaProducer:
        """The partition's producer, made once: two made side by side (the rebalance listener
        and a batch) would fence each other, as they share the transactional id."""
        producer = self.producers.get(tp)
        if producer is not None:
            return producer
        making = self.making.get(tp)
        if making is None:
            making = self.making[tp] = asyncio.ensure_future(self._new(tp))
        return await asyncio.shield(making)

    async def _new(self, tp: TopicPartition) -> AIOKafkaProducer:
        """Start the partition's producer; it is registered in the same step that ends the
        making, so no caller ever sees neither."""
        try:
            producer = await self._start(tp)
            self.producers[tp] = producer
            return producer
        finally:
            self.making.pop(tp, None)

    async def _start(self, tp: TopicPartition) -> AIOKafkaProducer:
        transactional_id = f"{self.clients.group}.{tp.topic}.{tp.partition}"
        producer = AIOKafkaProducer(
            **self.clients.producer_settings(
                enable_idempotence=True, transactional_id=transactional_id
            )
        )
        try:
            await producer.start()
        except _NO_TRANSACTIONS as exc:
            await producer.stop()
            raise BrokerError(
                f"processing_guarantee exactly_once: the broker {self.clients.broker} "
                f"refused a transactional producer ({type(exc).__name__}); the embedded "
                "broker cannot do transactions - use at_least_once there"
            ) from None
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def drop(self, tp: TopicPartition) -> None:
        """Stop the partition's producer, if it has one (aborting its open transaction)."""
        producer = self.producers.pop(tp, None)
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError as exc:
                log.debug("stage %s: closing the producer of %s: %s", self.clients.stage, tp, exc)

    async def close(self) -> None:
        """Stop every partition's producer."""
        for tp in list(self.producers):
            await self.drop(tp)


class ExactlyOnce(Guarantee):
    """Each partition's share of a batch in one transaction of the partition's producer."""

    isolation_level = "read_committed"

    def __init__(self, clients: StageClients) -> None:
        super().__init__(clients)
        self.producers = PartitionProducers(clients)
        #: The partitions this worker may process now, each with the number of the assignment
        #: that made it ready. A batch keeps only partitions whose assignment has not changed
        #: since it was fetched, so nothing read from a position older than the committed
        #: offset is ever processed.
        self.ready: dict[TopicPartition, int] = {}
        self.assignments = 0

    async def start(self) -> None:
        """Producers are made per partition, as partitions are assigned."""

    def fetched(self) -> Split:
        return functools.partial(self._split, dict(self.ready))

    def _split(self, fetched_under: dict[TopicPartition, int], batch: Batch) -> list[Batch]:
        """One share per partition that was ready when fetched and is still in the same
        assignment (a reassignment re-read the committed offset and sought to it)."""
        return [
            {tp: records}
            for tp, records in batch.items()
            if tp in fetched_under and self.ready.get(tp) == fetched_under[tp]
        ]

    async def deliver_and_commit(self, share: Batch, outgoing: list[Outgoing]) -> bool:
        """Try the transaction until it commits, while the partition is this worker's."""
        (tp,) = share
        offsets = offsets_after(share)
        todo = list(outgoing)
        backoff = Backoff(self.clients.stage, self.clients.stopping)
        while tp in self.ready:
            producer = await self.producers.get(tp)
            try:
                async with asyncio.timeout(TRANSACTION_LIMIT_S):
                    results = await self._transact(producer, offsets, todo)
                if results is None:
                    return True
                todo, retry = self._after_abort(todo, results)
            except ProducerFenced:
                # Only a new owner of the partition makes a producer with its id: this worker
                # lost it, and must not make another (that would fence the owner in turn).
                log.warning(
                    "stage %s: %s has a new owner; its batch is left to it", self.clients.stage, tp
                )
                self.ready.pop(tp, None)
                await self.producers.drop(tp)
                return False
            except (KafkaError, TimeoutError) as exc:
                log.warning("stage %s: transaction on %s failed: %s", self.clients.stage, tp, exc)
                await self.producers.drop(tp)
                retry = todo
            await backoff.wait(retry, "results not committed in a transaction")
        return False

    async def _transact(
        self,
        producer: AIOKafkaProducer,
        offsets: dict[TopicPartition, int],
        todo: list[Outgoing],
    ) -> list[object] | None:
        """One transaction: begin, send, send the offsets, commit; None when it committed,
        else the send results of the transaction it aborted (the broker refused a result)."""
        await producer.begin_transaction()
        results = await send_all(functools.partial(queue, producer), todo)
        if not any(isinstance(r, BaseException) for r in results):
            await producer.send_offsets_to_transaction(offsets, self.clients.group)
            await producer.commit_transaction()
            return None
        await producer.abort_transaction()
        return results

    def _after_abort(
        self, todo: list[Outgoing], results: list[object]
    ) -> tuple[list[Outgoing], list[Outgoing]]:
        """What the next transaction sends - every message again, refused-as-too-large ones
        as their stand-ins - and which of those were refused (to back off for)."""
        clients = self.clients
        todo = [
            stand_in_if_too_large(out, r, clients.stage, clients.dlq, clients.seal)
            for out, r in zip(todo, results, strict=True)
        ]
        refused = [o for o, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
        return todo, refused

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """A transactional producer per new partition right away - fencing the previous
        owner's and completing or aborting what it left open - then the partition starts from
        its committed offset as it stands after that, and becomes ready. A broker that cannot
        do transactions is found out here rather than at the first record."""
        stage = self.clients.stage
        for tp in sorted(assigned):
            for attempt in range(1, TAKE_OVER_ATTEMPTS + 1):
                try:
                    await self.producers.get(tp)
                    await self._start_from_committed(tp)
                    break
                except BrokerError as exc:
                    self.clients.fail(exc)
                    return
                except KafkaError as exc:
                    if attempt == TAKE_OVER_ATTEMPTS:
                        # Without its producer the partition could not be processed at all.
                        log.error("stage %s: cannot take %s over: %s", stage, tp, exc)
                        self.clients.fail(exc)
                        return
                    log.warning("stage %s: taking %s over: %s", stage, tp, exc)
                    await asyncio.sleep(attempt)

    async def _start_from_committed(self, tp: TopicPartition) -> None:
        """Seek a newly assigned partition to its committed offset, read again now. aiokafka
        reads it at the assignment, possibly while the previous owner's last transaction was
        still being completed; making this worker's producer for the partition has completed
        (or aborted) it, so the offset read now is final. Then the partition is ready."""
        consumer = self.clients.consumer
        committed = await consumer.committed(tp)
        if committed is None:  # nothing committed yet: from the start, as auto_offset_reset says
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
        self.assignments += 1
        self.ready[tp] = self.assignments

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.ready.pop(tp, None)
            await self.producers.drop(tp)

    async def close(self) -> None:
        await self.producers.close()


#: The guarantee each ``runtime.processing_guarantee`` names.
GUARANTEES: dict[str, type[Guarantee]] = {
    "at_least_once": AtLeastOnce,
    "exactly_once": ExactlyOnce,
}


class PartitionState(Protocol):
    """What a stage's state needs of a rebalance (``runtime/state/restore.py`` ``Restorer``)."""

    def hold(self, assigned: set[TopicPartition]) -> None:
        """Partitions just assigned, before anything else happens to them (not awaited)."""

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions assigned, taken over by the guarantee."""

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions revoked, their last batch committed."""


class HandOver(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in flight finish (and commit) before partitions are handed over; a
    newly assigned partition is held (paused) by the stage's state first, taken over by the
    guarantee, then given to the state to restore."""

    def __init__(
        self, in_flight: asyncio.Lock, guarantee: Guarantee, state: PartitionState | None = None
    ) -> None:
        self.in_flight = in_flight
        self.guarantee = guarantee
        self.state = state

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.in_flight:
            await self.guarantee.revoked(revoked)
            if self.state is not None:
                await self.state.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.state is not None:
            self.state.hold(assigned)
        await self.guarantee.assigned(assigned)
        if self.state is not None:
            await self.state.assigned(assigned)
