"""The stage agents of one worker process: one driver per stage (``runtime.driver``: the
aiokafka ``batch`` driver or ``faust``), each in the stage's own consumer group
(``<prefix>.<stage>``) so stages scale out over processes that split their partitions; the
metrics they feed (their stores' too), readiness (not while state is restoring), and a clean
stop that commits what was acknowledged."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stream_engine.core.plan import StagePlan
from stream_engine.errors import ConfigError
from stream_engine.runtime.cluster.client_logs import redact_client_logs
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.drivers.base import StageDriver, worker_name
from stream_engine.runtime.drivers.batch import BatchStage
from stream_engine.runtime.drivers.faust import FaustStage
from stream_engine.runtime.observe.metrics import Metrics, new_registry
from stream_engine.runtime.stage.integrity import EnvelopeAuth, envelope_auth
from stream_engine.runtime.stage.processor import BatchReport, StageProcessor
from stream_engine.runtime.state.restore import RestoreStats

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger(__name__)

DRIVERS: dict[str, type[BatchStage] | type[FaustStage]] = {
    "batch": BatchStage,
    "faust": FaustStage,
}


def build_stage(
    pipeline: CompiledPipeline,
    stage: StagePlan,
    topics: TopicNames,
    kafka: KafkaSettings,
    worker: str,
    auth: EnvelopeAuth | None,
) -> StageDriver:
    """The driver ``runtime.driver`` names, consuming one stage's topic."""
    processor = StageProcessor(pipeline, stage, topics, worker, auth)
    return DRIVERS[pipeline.config.runtime.driver](pipeline, stage, processor, kafka)


class StageWorker:
    """Runs some (default: all) enabled stages of a pipeline in this process."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        kafka: KafkaSettings,
        stages: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> None:
        redact_client_logs()  # aiokafka's debug lines would hold the records the stages send
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
        #: Signs and verifies what the stages write and read; None with envelope_auth off.
        self.auth = envelope_auth(pipeline)
        if self.auth is None:
            log.warning(
                "runtime.envelope_auth is off: envelopes are neither signed nor verified, so "
                "anyone who can write to a stage topic can decide for that stage"
            )
        self.agents = [
            build_stage(pipeline, active[name], self.topics, kafka, self.worker, self.auth)
            for name in chosen
        ]
        self._by_stage = {agent.stage.name: agent for agent in self.agents}
        self.metrics = Metrics()
        self.registry = new_registry(self.metrics)
        self._lag_task: asyncio.Task[None] | None = None
        self._instrument()

    def _instrument(self) -> None:
        """Connect the metrics: batches, services, breakers, and the drivers' own."""
        plan, metrics = self.pipeline.plan, self.metrics
        metrics.config(plan.name, plan.version, plan.config_hash, self.auth is not None)
        for guarded in self.pipeline.services.values():
            guarded.observer = metrics.service_call
        for name, breaker in self.pipeline.breakers.items():
            breaker.listen(metrics.breaker)
            metrics.breaker(name, breaker.state)

        def on_batch(stage: str, report: BatchReport, elapsed: float) -> None:
            metrics.stage_batch(
                plan.name,
                stage,
                report.outcomes,
                report.decisions,
                report.dead_letters,
                elapsed,
                report.poison,
            )
            if report.changes:
                self._state_figures(stage)

        for agent in self.agents:
            metrics.stage_started(plan.name, agent.stage.name)
            agent.hooks.append(on_batch)
            agent.instrument(self.registry)
            if agent.restorer is not None:
                agent.restorer.hooks.append(functools.partial(self._restore_event, agent))
                self._state_figures(agent.stage.name)

    def _restore_event(self, agent: StageDriver, stats: RestoreStats) -> None:
        """A restore began or finished: its lag, duration and the stores' figures."""
        if stats.finished:
            self.metrics.restored(self.pipeline.plan.name, agent.stage.name, stats.seconds)
        self._state_figures(agent.stage.name)

    def _state_figures(self, stage: str) -> None:
        """The metrics of a stage's stores, as they are now."""
        agent = self._by_stage[stage]
        if agent.restorer is not None:
            self.metrics.state(
                self.pipeline.plan.name,
                stage,
                agent.restorer.figures(),
                len(agent.restorer.pending),
            )

    def ready(self) -> bool:
        """Every stage of this worker has partitions assigned, none still restoring state."""
        return self.unready() is None and all(agent.assignment() for agent in self.agents)

    def unready(self) -> str | None:
        """Why the worker is not ready while it restores state (None otherwise)."""
        restoring = [(agent.stage.name, agent.restoring()) for agent in self.agents]
        waiting = [
            f"stage {stage} partition(s) {', '.join(map(str, sorted(parts)))}"
            for stage, parts in restoring
            if parts
        ]
        return "restoring state: " + "; ".join(waiting) if waiting else None

    async def _track_lag(self, every_s: float = 5.0) -> None:
        """Consumer lag per assigned partition: the broker's end offset (as of the last
        fetch) minus the consumer's position."""
        while True:
            owned: list[tuple[str, int]] = []
            for agent in self.agents:
                for topic, partition, lag in await agent.lags():
                    self.metrics.lag(topic, partition, lag)
                    owned.append((topic, partition))
            self.metrics.forget_lag(owned)
            await asyncio.sleep(every_s)

    async def start(self) -> None:
        """Start every stage; they join their consumer groups side by side."""
        await asyncio.gather(*(agent.start() for agent in self.agents))
        self._lag_task = asyncio.ensure_future(self._track_lag())

    async def until_stopped(self, stop: asyncio.Event) -> BaseException | None:
        """Wait for ``stop``, or for a stage that cannot go on; returns that stage's error."""
        waits = [asyncio.ensure_future(stop.wait())]
        waits += [asyncio.ensure_future(agent.failed.wait()) for agent in self.agents]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return next((a.failure for a in self.agents if a.failure is not None), None)

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
                asyncio.gather(*(agent.finish() for agent in self.agents)), limit
            )
        except TimeoutError:
            log.warning("the last commit did not finish; its batches will be consumed again")
        await asyncio.gather(*(agent.close() for agent in self.agents))
        await self.pipeline.close()

    @property
    def processed(self) -> int:
        """Messages consumed and fully handled since start."""
        return sum(agent.processed for agent in self.agents)
