"""What every stage driver does, whichever Kafka client it consumes with: handle a batch
(process, produce, wait for acknowledgements), count it, tell the hooks, and stop cleanly.

Two drivers implement it: ``batch`` (aiokafka ``getmany`` straight into the core, the
default) and ``faust`` (a faust agent taking events). ``runtime.driver`` picks one."""

from __future__ import annotations

import asyncio
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from stream_engine.core.plan import StagePlan
from stream_engine.runtime.stage.processor import BatchReport, StageProcessor

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline
    from stream_engine.runtime.state.restore import Restorer

BatchHook = Callable[[str, BatchReport, float], None]


def worker_name() -> str:
    """``host:pid``, recorded in every audit entry this process writes."""
    return f"{socket.gethostname()}:{os.getpid()}"


def group_id(pipeline: CompiledPipeline, stage: StagePlan) -> str:
    """The stage's consumer group: ``<group_prefix or pipeline>.<stage>``."""
    prefix = pipeline.config.runtime.group_prefix or pipeline.plan.name
    return f"{prefix}.{stage.name}"


class StageDriver(ABC):
    """One stage in this process: consumes its topic in the stage's consumer group."""

    def __init__(self, stage: StagePlan, processor: StageProcessor, pipeline: CompiledPipeline):
        conf = pipeline.config.runtime
        self.stage = stage
        self.processor = processor
        self.group = group_id(pipeline, stage)
        self.batch_size = conf.batch_size
        self.batch_wait_s = conf.batch_wait_ms / 1000.0
        self.stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.busy = 0
        self.hooks: list[BatchHook] = []
        self.processed = 0
        #: Set when the driver cannot go on (e.g. the broker refuses transactions).
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        #: Restores the stores of a stage that keeps state (the batch driver's only).
        self.restorer: Restorer | None = None

    @abstractmethod
    async def start(self) -> None:
        """Connect and join the consumer group."""

    @abstractmethod
    async def finish(self) -> None:
        """After the last batch: commit what was acknowledged."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the consumer group and disconnect."""

    @abstractmethod
    def assignment(self) -> Iterable[tuple[str, int]]:
        """The (topic, partition) pairs this driver consumes now."""

    @abstractmethod
    async def lags(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, end offset - position)`` for every assigned partition."""

    def restoring(self) -> frozenset[int]:
        """Assigned partitions whose stores are still being restored."""
        return frozenset() if self.restorer is None else self.restorer.pending

    def instrument(self, registry: CollectorRegistry) -> None:  # noqa: B027 - optional hook
        """Register the client library's own metrics, if it has any."""

    def fail(self, error: BaseException) -> None:
        """Stop taking batches and let the worker know why."""
        if self.failure is None:
            self.failure = error
        self.stopping.set()
        self.failed.set()

    def begin(self) -> None:
        self.busy += 1
        self.idle.clear()

    def end(self) -> None:
        self.busy -= 1
        if not self.busy:
            self.idle.set()

    def report(self, report: BatchReport, count: int, elapsed: float) -> None:
        """Count a batch whose results the broker acknowledged, and tell the hooks."""
        self.processed += count
        for hook in self.hooks:
            hook(self.stage.name, report, elapsed)
