"""Stage agents on faust: one faust App per stage, so each stage has its own consumer group
(``<prefix>.<stage>``) and can be scaled out over processes that split its partitions.

Each agent takes a batch of events, runs the stage, produces every result, and waits for the
broker to acknowledge all of them (acks=all) before it asks for the next batch - which is
when faust acks the batch's events and may commit their offsets. A crash anywhere before that
point leaves the offsets uncommitted: the batch is consumed again (at-least-once; duplicates
carry the same record id)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from faust.exceptions import ConsumerNotStarted
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.transport.consumer import Consumer
from faust.types import EventT, StreamT

from stream_engine.config.compiler import CompiledPipeline
from stream_engine.core.plan import StagePlan
from stream_engine.errors import ConfigError
from stream_engine.runtime.codec import Incoming
from stream_engine.runtime.kafka import MAX_TRANSPORT_BYTES, KafkaSettings
from stream_engine.runtime.metrics import Metrics, new_registry
from stream_engine.runtime.names import TopicNames
from stream_engine.runtime.processor import BatchReport, Outgoing, StageProcessor
from stream_engine.runtime.topics import pipeline_topics

log = logging.getLogger(__name__)

BatchHook = Callable[[str, BatchReport, float], None]


def worker_name() -> str:
    """``host:pid``, recorded in every audit entry this process writes."""
    return f"{socket.gethostname()}:{os.getpid()}"


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


@dataclass
class StageAgent:
    """One stage: its faust App, its processor, and the bookkeeping for a clean stop."""

    stage: StagePlan
    app: faust.App
    processor: StageProcessor
    batch_size: int
    batch_wait_s: float
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    busy: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    hooks: list[BatchHook] = field(default_factory=list)
    processed: int = 0

    def __post_init__(self) -> None:
        self.idle.set()
        topic = self.app.topic(
            self.processor.topics.stage_inputs[self.stage.name],
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.app.agent(topic, name=f"stage.{self.stage.name}")(self._consume)

    async def _consume(self, stream: StreamT[bytes]) -> None:
        batches = cast(faust.Stream[bytes], stream).take_events(self.batch_size, self.batch_wait_s)
        async for events in batches:
            if self.stopping.is_set():
                # Stopping: leave this batch for the next worker (it will not be committed).
                _hold_back(events)
                continue
            self.busy += 1
            self.idle.clear()
            work = asyncio.ensure_future(self._batch(events))
            try:
                # Shielded: a stop in the middle lets the batch finish and be acknowledged.
                await asyncio.shield(work)
            except BaseException:
                if not work.done() or work.cancelled() or work.exception() is not None:
                    _hold_back(events)
                raise
            finally:
                self.busy -= 1
                if not self.busy:
                    self.idle.set()

    async def _batch(self, events: Sequence[EventT[Any]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        report = await self.processor.process([_incoming(e) for e in events])
        await self._produce(report)
        self.processed += len(events)
        elapsed = loop.time() - started
        for hook in self.hooks:
            hook(self.stage.name, report, elapsed)

    async def _produce(self, report: BatchReport) -> None:
        """Send every result and wait for the broker to acknowledge all of them; while the
        broker is unreachable, keep trying (the batch is not committed until this returns).
        Only what failed is sent again; a message the broker refuses as too large goes to the
        dead-letter topic without its value, so it cannot hold the stage up."""
        producer = self.app.producer
        delay = 0.5
        todo = list(report.outgoing)
        while todo:
            futures = [await _send(producer, out) for out in todo]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed: list[Outgoing] = []
            for out, result in zip(todo, results, strict=True):
                if isinstance(result, MessageSizeTooLargeError | RecordTooLargeError):
                    failed.append(self._without_value(out))
                elif isinstance(result, KafkaError):
                    failed.append(out)
                elif isinstance(result, BaseException):
                    raise result
            if failed and any(not _oversized(o) for o in failed):
                if self.stopping.is_set():
                    raise KafkaError("stopping with results not acknowledged")
                log.warning(
                    "stage %s: %d message(s) not acknowledged, retrying in %.1fs",
                    self.stage.name,
                    len(failed),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            todo = failed

    def _without_value(self, out: Outgoing) -> Outgoing:
        """A stand-in dead letter for a message the broker refused as too large."""
        headers = [(k, v) for k, v in out.headers if k != DROPPED_HEADER]
        if out.topic != self.processor.topics.dlq:
            headers = [
                ("dlq.stage", self.stage.name.encode()),
                ("dlq.reason", b"too_large"),
                ("dlq.original.topic", out.topic.encode()),
            ]
        headers.append((DROPPED_HEADER, str(len(out.value)).encode()))
        return Outgoing(self.processor.topics.dlq, out.key, b"", headers)


DROPPED_HEADER = "dlq.value.dropped"


def _oversized(out: Outgoing) -> bool:
    return any(k == DROPPED_HEADER for k, _ in out.headers)


async def _send(producer: Any, out: Outgoing) -> Awaitable[Any]:
    """Queue one message; a refusal is returned through its future, not raised here."""
    try:
        future: Awaitable[Any] = await producer.send(
            out.topic, out.key, out.value, None, None, out.headers or None
        )
    except KafkaError as exc:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed
    return future


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


def build_stage_app(
    pipeline: CompiledPipeline,
    stage: StagePlan,
    topics: TopicNames,
    kafka: KafkaSettings,
    worker: str,
) -> StageAgent:
    """A faust App consuming one stage's topic in the stage's consumer group."""
    conf = pipeline.config.runtime
    prefix = conf.group_prefix or pipeline.plan.name
    app_id = f"{prefix}.{stage.name}"
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
    app = faust.App(app_id, **settings)
    processor = StageProcessor(pipeline, stage, topics, worker)
    return StageAgent(stage, app, processor, conf.batch_size, conf.batch_wait_ms / 1000.0)


class StageWorker:
    """Runs some (default: all) enabled stages of a pipeline in this process."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        kafka: KafkaSettings,
        stages: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.kafka = kafka
        self.topics = pipeline_topics(pipeline)
        self.worker = worker or worker_name()
        active = {s.name: s for s in pipeline.plan.active_stages}
        chosen = list(stages) if stages else list(active)
        unknown = [name for name in chosen if name not in active]
        if unknown:
            raise ConfigError(
                "--stage",
                f"not an enabled stage: {', '.join(unknown)} (enabled: {', '.join(active)})",
            )
        self.agents = [
            build_stage_app(pipeline, active[name], self.topics, kafka, self.worker)
            for name in chosen
        ]
        self.metrics = Metrics()
        self.registry = new_registry(self.metrics)
        self._lag_task: asyncio.Task[None] | None = None
        self._instrument()

    def _instrument(self) -> None:
        """Connect the metrics: batches, services, breakers, and faust's own sensor."""
        plan, metrics = self.pipeline.plan, self.metrics
        metrics.config(plan.name, plan.version, plan.config_hash)
        for guarded in self.pipeline.services.values():
            guarded.observer = metrics.service_call
        for name, breaker in self.pipeline.breakers.items():
            breaker.listen(metrics.breaker)
            metrics.breaker(name, breaker.state)

        def on_batch(stage: str, report: BatchReport, elapsed: float) -> None:
            metrics.stage_batch(
                plan.name, stage, report.outcomes, report.decisions, report.dead_letters, elapsed
            )

        for agent in self.agents:
            agent.hooks.append(on_batch)
            prefix = f"faust_{agent.stage.name}".replace("-", "_").replace(".", "_")
            agent.app.monitor = PrometheusMonitor(
                metrics=FaustMetrics.create(self.registry, prefix)
            )

    def ready(self) -> bool:
        """Every stage of this worker has partitions assigned (and so is consuming)."""
        return all(agent.app.consumer.assignment() for agent in self.agents)

    async def _track_lag(self, every_s: float = 5.0) -> None:
        """Consumer lag per assigned partition: the broker's end offset (as of the last
        fetch) minus the consumer's position."""
        while True:
            owned: list[tuple[str, int]] = []
            for agent in self.agents:
                consumer = agent.app.consumer
                for tp in consumer.assignment():
                    position = await consumer.position(tp)
                    end = consumer.highwater(tp)
                    if position is not None and end is not None:
                        self.metrics.lag(tp.topic, tp.partition, end - position)
                        owned.append((tp.topic, tp.partition))
            self.metrics.forget_lag(owned)
            await asyncio.sleep(every_s)

    async def start(self) -> None:
        """Start every stage's app; they join their consumer groups side by side."""
        await asyncio.gather(*(agent.app.start() for agent in self.agents))
        self._lag_task = asyncio.ensure_future(self._track_lag())

    async def stop(self, timeout_s: float | None = None) -> None:
        """Finish the in-flight batches, flush, commit, stop."""
        limit = timeout_s or self.pipeline.config.runtime.shutdown_timeout_s
        for agent in self.agents:
            agent.stopping.set()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(agent.idle.wait() for agent in self.agents)), limit
            )
        except TimeoutError:
            log.warning("stopping with batches still in flight; they will be consumed again")
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.gather(self._lag_task, return_exceptions=True)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(_commit_finished(agent.app) for agent in self.agents)), limit
            )
        except TimeoutError:
            log.warning("the last commit did not finish; its batches will be consumed again")
        await asyncio.gather(*(agent.app.stop() for agent in self.agents))
        await self.pipeline.close()

    @property
    def processed(self) -> int:
        """Messages consumed and fully handled since start."""
        return sum(agent.processed for agent in self.agents)
