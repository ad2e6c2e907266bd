"""The faust stage driver: one faust App per stage, a faust agent taking batches of events.

The agent takes a batch, runs the stage, produces every result, and waits for the broker to
acknowledge all of them (acks=all) before it asks for the next batch - which is when faust
acks the batch's events and may commit their offsets. A crash anywhere before that point
leaves the offsets uncommitted: the batch is consumed again (at-least-once; duplicates carry
the same record id)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.transport.consumer import Consumer
from faust.types import EventT, StreamT
from prometheus_client import CollectorRegistry

from stream_engine.core.plan import StagePlan
from stream_engine.runtime.cluster.settings import MAX_TRANSPORT_BYTES, KafkaSettings
from stream_engine.runtime.drivers.base import StageDriver
from stream_engine.runtime.stage.codec import Incoming
from stream_engine.runtime.stage.delivery import deliver
from stream_engine.runtime.stage.processor import Outgoing, StageProcessor

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger(__name__)


def _incoming(event: EventT[Any]) -> Incoming:
    message = event.message
    headers = message.headers
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    return Incoming(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=int((message.timestamp or 0) * 1000),
        key=message.key,
        value=message.value,
        headers=[(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in pairs],
    )


class FaustStage(StageDriver):
    """One stage on its own faust App (consumer group ``<prefix>.<stage>``)."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        stage: StagePlan,
        processor: StageProcessor,
        kafka: KafkaSettings,
    ) -> None:
        super().__init__(stage, processor, pipeline)
        self.app = faust.App(self.group, **_settings(pipeline, stage, kafka, self.group))
        topic = self.app.topic(
            processor.topics.stage_inputs[stage.name],
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.app.agent(topic, name=f"stage.{stage.name}")(self._consume)

    async def _consume(self, stream: StreamT[bytes]) -> None:
        batches = cast(faust.Stream[bytes], stream).take_events(self.batch_size, self.batch_wait_s)
        async for events in batches:
            if self.stopping.is_set():
                # Stopping: leave this batch for the next worker (it will not be committed).
                _hold_back(events)
                continue
            self.begin()
            work = asyncio.ensure_future(self._batch(events))
            try:
                # Shielded: a stop in the middle lets the batch finish and be acknowledged.
                await asyncio.shield(work)
            except Exception as exc:  # a bug must stop the worker, not crash the agent alone
                _hold_back(events)
                log.exception("stage %s: stopped by an internal error", self.stage.name)
                self.fail(exc)
                return
            except BaseException:
                if not work.done() or work.cancelled() or work.exception() is not None:
                    _hold_back(events)
                raise
            finally:
                self.end()

    async def _batch(self, events: Sequence[EventT[Any]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        processor = self.processor
        report = await processor.process([_incoming(e) for e in events])
        await deliver(
            self._send,
            report.outgoing,
            self.stage.name,
            processor.topics.dlq,
            self.stopping,
            processor.seal,
        )
        self.report(report, len(events), loop.time() - started)

    async def _send(self, out: Outgoing) -> Awaitable[object]:
        future: Awaitable[object] = await self.app.producer.send(
            out.topic, out.key, out.value, None, None, out.headers or None
        )
        return future

    async def start(self) -> None:
        await self.app.start()

    async def finish(self) -> None:
        await _commit_finished(self.app)

    async def close(self) -> None:
        await self.app.stop()

    def assignment(self) -> Iterable[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in self.app.consumer.assignment()]

    async def lags(self) -> list[tuple[str, int, int]]:
        consumer = self.app.consumer
        out = []
        for tp in consumer.assignment():
            position = await consumer.position(tp)
            end = consumer.highwater(tp)
            if position is not None and end is not None:
                out.append((tp.topic, tp.partition, end - position))
        return out

    def instrument(self, registry: CollectorRegistry) -> None:
        """faust's own sensor metrics, prefixed ``faust_<stage>_``."""
        prefix = f"faust_{self.stage.name}".replace("-", "_").replace(".", "_")
        self.app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, prefix))


def _hold_back(events: Sequence[EventT[Any]]) -> None:
    """Keep these events from ever being committed by this worker: they are marked as
    already acknowledged, so faust's acks skip them and their offsets stay uncommitted (a gap
    faust's commit never passes). The next worker to own the partition consumes them again."""
    for event in events:
        event.message.acked = True


async def _commit_finished(app: faust.App) -> None:
    """Commit what the finished batches acknowledged. faust commits once more as its consumer
    stops, but skips that commit when a periodic one is in flight: it waits for that one, whose
    offsets may have been taken before the last batch was acknowledged - which would leave that
    batch uncommitted and consumed again after a clean stop. So wait for any commit in flight,
    then commit: a commit starting after the wait (ours, or a periodic one ours then waits for)
    takes every acknowledgement."""
    consumer = cast(Consumer, app.consumer)
    try:
        if not consumer.assignment():
            return
    except ConsumerNotStarted:
        return
    await consumer.maybe_wait_for_commit_to_finish()
    await consumer.commit()


def _faust_home() -> Path:
    """Where faust may make its per-app data directories (tables are in memory)."""
    home = Path(tempfile.gettempdir()) / "stream-engine-faust"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _settings(
    pipeline: CompiledPipeline, stage: StagePlan, kafka: KafkaSettings, app_id: str
) -> dict[str, Any]:
    conf = pipeline.config.runtime
    settings: dict[str, Any] = {
        "broker": [f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        "broker_client_id": f"{kafka.client_id}.{stage.name}",
        "value_serializer": "raw",
        "key_serializer": "raw",
        "producer_acks": -1,
        "broker_session_timeout": conf.session_timeout_s,
        "broker_heartbeat_interval": conf.heartbeat_interval_s,
        "broker_commit_interval": conf.commit_interval_s,
        "broker_rebalance_timeout": max(conf.session_timeout_s * 2, 10.0),
        "broker_max_poll_records": conf.batch_size,
        "consumer_auto_offset_reset": "earliest",
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "web_enabled": False,
        "store": "memory://",
        # faust makes a data directory per app even with in-memory tables: not in the cwd.
        "datadir": str(_faust_home() / app_id),
        "autodiscover": False,
        "stream_wait_empty": False,
        "producer_max_request_size": MAX_TRANSPORT_BYTES,
        "consumer_max_fetch_size": MAX_TRANSPORT_BYTES,
    }
    context = kafka.ssl_context()
    if kafka.security_protocol.startswith("SASL"):
        settings["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username or "",
            password=kafka.sasl_password or "",
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    elif context is not None:
        settings["broker_credentials"] = faust.SSLCredentials(context)
    return settings
