"""Running stage agents as a process: ``run`` against a cluster, ``dev`` with the embedded
broker. SIGTERM and SIGINT finish the in-flight batches, flush, commit and exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import secrets
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError
from pydantic import SecretStr

from stream_engine.config.compiled import SAMPLES_FILE
from stream_engine.core.outcome import Status
from stream_engine.errors import BrokerError, ConfigError, StreamEngineError
from stream_engine.runtime.cluster.broker import EmbeddedBroker
from stream_engine.runtime.cluster.settings import KafkaSettings, quiet_libraries, reach
from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.cluster.topics import create_topics, pipeline_topics, topic_specs
from stream_engine.runtime.observe.endpoint import MetricsEndpoint
from stream_engine.runtime.stage.integrity import KEY_ENV
from stream_engine.runtime.stage.processor import BatchReport
from stream_engine.runtime.tools.topic_io import publish, read_records
from stream_engine.runtime.worker import StageWorker

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger("stream_engine")

#: Something ``dev`` runs beside the stages for as long as they run: given the pipeline and
#: the embedded broker's settings, it yields its address.
Companion = Callable[
    ["CompiledPipeline", KafkaSettings], contextlib.AbstractAsyncContextManager[str]
]


async def serve(
    pipeline: CompiledPipeline,
    kafka: KafkaSettings,
    stages: Sequence[str] | None = None,
    on_ready: Callable[[StageWorker, MetricsEndpoint], None] | None = None,
    stop: asyncio.Event | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> StageWorker:
    """Run the stage agents and their metrics endpoint until ``stop`` is set or a
    SIGTERM/SIGINT arrives. ``metrics_port`` overrides ``runtime.metrics_port`` (0: any),
    ``metrics_host`` ``runtime.metrics_host``. A cluster that does not answer is one
    ``BrokerError`` within ``CONNECT_TIMEOUT_S``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    worker = StageWorker(pipeline, kafka, stages)
    conf = pipeline.config.runtime
    port = conf.metrics_port if metrics_port is None else metrics_port
    host = metrics_host or conf.metrics_host
    endpoint = MetricsEndpoint(
        worker.registry,
        worker.ready,
        host,
        port,
        conf.metrics_idle_timeout_s,
        conf.metrics_max_connections,
        worker.unready,
    )
    try:
        await endpoint.start()
    except OSError as exc:
        raise StreamEngineError(
            f"metrics endpoint: cannot listen on {host}:{port} ({exc.strerror}); "
            "choose another with --metrics-port (0: any free port)"
        ) from None
    failure: BaseException | None = None
    try:
        await reach(kafka)
        try:
            await worker.start()
        except KafkaError as exc:
            raise BrokerError(f"broker {kafka.describe()}: {exc}") from None
        if on_ready is not None:
            on_ready(worker, endpoint)
        failure = await worker.until_stopped(stop)
    finally:
        log.info("stopping: finishing in-flight batches")
        await worker.stop()
        await endpoint.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    if failure is not None:
        if isinstance(failure, StreamEngineError):
            raise failure
        raise StreamEngineError(f"a stage stopped: {type(failure).__name__}: {failure}")
    return worker


class Summary:
    """Running totals for the dev demo: decisions by status, failing rules, dead letters."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.failing: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.published = 0

    def add_report(self, stage: str, report: BatchReport, elapsed: float) -> None:
        """Count one batch of one stage."""
        for decision in report.decisions:
            self.statuses[decision.status.value] += 1
            for rules in decision.failed_rules.values():
                self.failing.update(rules)
        for letter in report.dead_letters:
            self.statuses[Status.DEAD_LETTER.value] += 1
            self.dead_letters[letter.reason.value] += 1


def demo_samples(pipeline: CompiledPipeline) -> list[bytes]:
    """The config's sample records (the compiler resolved and confined the file); a file that
    cannot be read is a config error, raised before anything starts."""
    path = pipeline.files.get(SAMPLES_FILE)
    if path is None:
        return []
    try:
        with path.open("rb") as handle:
            return list(read_records(handle, "jsonl"))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(SAMPLES_FILE, f"cannot read {str(path)!r}: {reason}") from None


async def run_demo(
    pipeline: CompiledPipeline,
    kafka: KafkaSettings,
    topics: TopicNames,
    rate: float,
    summary: Summary,
    stop: asyncio.Event,
    values: list[bytes],
) -> None:
    """Publish the config's sample records, round after round, at a steady rate."""
    if not values:
        log.warning("the config names no sample records: nothing to publish")
        return

    def count(n: int) -> None:
        summary.published += n

    # One producer for the whole demo; ``publish`` paces the endless rounds at ``rate``.
    rounds = itertools.takewhile(lambda _: not stop.is_set(), itertools.cycle(values))
    await publish(rounds, topics.input, kafka, pipeline.plan.key_field, rate, count)


async def dev(
    pipeline: CompiledPipeline,
    port: int,
    announce: Callable[[str], None],
    demo_rate: float | None = None,
    on_summary: Callable[[Summary], None] | None = None,
    log_file: Path | None = None,
    stop: asyncio.Event | None = None,
    metrics_port: int | None = None,
    announce_metrics: Callable[[str], None] | None = None,
    metrics_host: str | None = None,
    companion: Companion | None = None,
    announce_companion: Callable[[str], None] | None = None,
) -> None:
    """Embedded broker, topics, every stage and the metrics endpoint; optionally the demo
    publisher, and a ``companion`` run beside the stages on the same broker (the CLI's HTTP
    API: this layer cannot import it), whose address ``announce_companion`` prints."""
    stop = stop or asyncio.Event()
    if pipeline.config.runtime.processing_guarantee == "exactly_once":
        raise ConfigError(
            "runtime.processing_guarantee",
            "exactly_once needs Kafka transactions, which the embedded broker cannot do; "
            "use at_least_once with dev, or run against Apache Kafka",
        )
    pipeline = with_session_key(for_embedded_broker(pipeline))
    samples = demo_samples(pipeline) if demo_rate else []
    with EmbeddedBroker(port, log_file) as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
        await create_topics(topic_specs(pipeline), kafka)
        summary = Summary()
        tasks: list[asyncio.Task[None]] = []
        extra = contextlib.AsyncExitStack()
        address = (
            None
            if companion is None
            else await extra.enter_async_context(companion(pipeline, kafka))
        )

        def ready(worker: StageWorker, endpoint: MetricsEndpoint) -> None:
            for agent in worker.agents:
                agent.hooks.append(summary.add_report)
            announce(broker.bootstrap)
            if announce_metrics is not None:
                announce_metrics(endpoint.url)
            if address is not None and announce_companion is not None:
                announce_companion(address)
            if demo_rate:
                topics = pipeline_topics(pipeline)
                tasks.append(
                    asyncio.ensure_future(
                        run_demo(pipeline, kafka, topics, demo_rate, summary, stop, samples)
                    )
                )
            if on_summary is not None:
                tasks.append(asyncio.ensure_future(_report(summary, on_summary, stop)))

        try:
            await serve(pipeline, kafka, None, ready, stop, metrics_port, metrics_host)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await extra.aclose()


def for_embedded_broker(pipeline: CompiledPipeline) -> CompiledPipeline:
    """The embedded broker makes a group join wait half the session timeout: keep it short
    (at most 3 s) so the stages start consuming within seconds."""
    runtime = pipeline.config.runtime
    if runtime.session_timeout_s <= 3.0:
        return pipeline
    quick = runtime.model_copy(
        update={
            "session_timeout_s": 3.0,
            "heartbeat_interval_s": min(runtime.heartbeat_interval_s, 0.5),
        }
    )
    config = pipeline.config.model_copy(update={"runtime": quick})
    return dataclasses.replace(pipeline, config=config)


def with_session_key(pipeline: CompiledPipeline) -> CompiledPipeline:
    """``dev`` signs envelopes with a key of its own when none is configured: every stage runs
    in this process, so the key lives and dies with it."""
    runtime = pipeline.config.runtime
    if not runtime.envelope_auth or runtime.envelope_keys or os.environ.get(KEY_ENV):
        return pipeline
    keys = {"dev-session": SecretStr(secrets.token_hex(32))}
    config = pipeline.config.model_copy(
        update={"runtime": runtime.model_copy(update={"envelope_keys": keys})}
    )
    return dataclasses.replace(pipeline, config=config)


async def _report(summary: Summary, show: Callable[[Summary], None], stop: asyncio.Event) -> None:
    while not stop.is_set():
        show(summary)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    show(summary)


__all__ = ["Summary", "dev", "quiet_libraries", "serve"]
