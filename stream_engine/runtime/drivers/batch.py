"""The batch stage driver: aiokafka straight into the core, a whole ``getmany`` batch at a time.

Each batch is consumed, decoded and run through the stage (processed), its results produced
(delivered) and its offsets committed - how the last two happen is the stage's processing
guarantee (``runtime.transactions``): after the broker acknowledged every result
(at-least-once), or in one Kafka transaction per input partition (exactly-once). A rebalance
waits for the batch in flight, so a worker hands over its partitions with their offsets
committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import IllegalStateError, KafkaError

from stream_engine.core.plan import StagePlan
from stream_engine.errors import BrokerError
from stream_engine.runtime.cluster.settings import MAX_TRANSPORT_BYTES, KafkaSettings
from stream_engine.runtime.drivers.base import StageDriver
from stream_engine.runtime.drivers.transactions import (
    GUARANTEES,
    Batch,
    HandOver,
    Split,
    StageClients,
)
from stream_engine.runtime.stage.codec import Incoming
from stream_engine.runtime.stage.processor import BatchReport, StageProcessor
from stream_engine.runtime.state.changelogs import ensure_changelogs
from stream_engine.runtime.state.restore import RestoreClients, Restorer

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger(__name__)


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
        merged.changes += report.changes
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
        self.pipeline = pipeline
        self.kafka = kafka
        self.topic = processor.topics.stage_inputs[stage.name]
        self.client_id = f"{kafka.client_id}.{stage.name}"
        guarantee = GUARANTEES[conf.processing_guarantee]
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
            isolation_level=guarantee.isolation_level,
            **connection,
        )
        self.guarantee = guarantee(
            StageClients(
                stage=stage.name,
                group=self.group,
                consumer=self.consumer,
                producer_settings=self._producer_settings,
                broker=kafka.describe(),
                dlq=processor.topics.dlq,
                seal=processor.seal,
                stopping=self.stopping,
                fail=self.fail,
            )
        )
        #: Held by the batch in flight; a revocation waits for it.
        self.in_flight = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        if processor.state:
            changelogs = {
                spec.name: processor.topics.changelog(stage.name, spec.name)
                for spec in stage.stores
            }
            clients = RestoreClients(
                stage.name, self.consumer, self._restore_settings, changelogs, processor.auth,
                self.fail, guarantee.isolation_level == "read_committed",
            )  # fmt: skip
            self.restorer = Restorer(processor.state, clients)

    def _restore_settings(self, name: str) -> dict[str, Any]:
        """A restore consumer's settings: no group, reading what this stage's consumer reads."""
        return {
            **self.kafka.aiokafka(),
            "client_id": f"{self.client_id}.{name}",
            "group_id": None,
            "enable_auto_commit": False,
            "isolation_level": self.guarantee.isolation_level,
            "fetch_max_wait_ms": min(self.pipeline.config.runtime.batch_wait_ms, 100),
            "max_partition_fetch_bytes": MAX_TRANSPORT_BYTES,
            "fetch_max_bytes": MAX_TRANSPORT_BYTES,
        }

    def _producer_settings(self, **extra: Any) -> dict[str, Any]:
        return self.kafka.producer(
            client_id=self.client_id, linger_ms=2, max_batch_size=512 * 1024, **extra
        )

    async def start(self) -> None:
        if self.restorer is not None:
            await ensure_changelogs(self.pipeline, self.stage.name, self.kafka)
        await self.guarantee.start()
        listener = HandOver(self.in_flight, self.guarantee, self.restorer)
        self.consumer.subscribe([self.topic], listener=listener)
        await self.consumer.start()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                batch: Batch = await self.consumer.getmany(
                    timeout_ms=int(self.batch_wait_s * 1000), max_records=self.batch_size
                )
                # No await since getmany: the split is judged by what it fetched under.
                split = self.guarantee.fetched()
                if self.restorer is not None:
                    split = self.restorer.fetched(split)
                if not batch or self.stopping.is_set():
                    continue  # when stopping, the batch stays uncommitted for the next owner
                self.begin()
                try:
                    async with self.in_flight:
                        # Shielded: a stop in the middle lets the batch finish and commit.
                        await asyncio.shield(self._handle(batch, split))
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

    async def _handle(self, batch: Batch, split: Split) -> None:
        """Each share of the batch still this worker's: processed, delivered, committed."""
        shares = split(batch)
        if not shares:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        done = [d for d in await asyncio.gather(*map(self._share, shares)) if d is not None]
        report = _merge(report for report, _ in done)
        self.report(report, sum(count for _, count in done), loop.time() - started)

    async def _share(self, share: Batch) -> tuple[BatchReport, int] | None:
        """The share's report and record count, or None if its partition was lost before it
        committed (its next owner processes it again)."""
        records = [_incoming(r) for rs in share.values() for r in rs]
        report = await self.processor.process(records)
        outgoing = report.outgoing + report.changes if report.changes else report.outgoing
        if not await self.guarantee.deliver_and_commit(share, outgoing):
            return None
        return report, len(records)

    async def finish(self) -> None:
        """Every batch commits itself; nothing is left to commit."""

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.restorer is not None:
            await self.restorer.close()
        await self.consumer.stop()
        await self.guarantee.close()

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
