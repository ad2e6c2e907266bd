"""Running one system under test end to end and measuring it.

Preload mode (default): publish all N records to the input topic, then start the system's
processes and watch the output topics until every record id has a decision (or the
deadline passes). Rate mode: start the system, send a few warm-up records through it (so
every stage has joined its group), then publish N records at a steady rate while it runs.

What is timed (wall clock, seconds, as seen by this process):

* ``window`` - from the first message on the first stage's output topic (the first record
  the system finished with in stage 1: process start-up and the consumer-group join are
  excluded) - in rate mode from the first publish - to the last record's decision arriving.
  ``records/s = N / window``.
* ``latency`` - from publishing a record to its decision arriving on an output topic.
  With a preloaded input this is mostly queueing; ``--rate`` gives the meaningful figure.
* ``CPU`` - user+system seconds of the system's processes (children included) within the
  window, interpolated from psutil samples every 0.2 s; ``cpu_total_s`` includes start-up.
* ``peak RSS`` - the largest sum of the processes' resident memory over the samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.kafka_io import Collector, Publisher, Seen, create_topics, wait_for_topics
from benchmarks.measure import Monitor, ProcessTree, percentile
from benchmarks.records import BenchRecord
from benchmarks.systems import Context, Processes, System, create_stream_engine_topics, partitions
from benchmarks.topology import STATUS_OF_OUTPUT

Progress = Callable[[str, int, int], None]


@dataclass
class Result:
    """What one system achieved."""

    system: str
    records: int
    counts: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    duplicates: int = 0
    window_s: float = float("nan")
    startup_s: float = float("nan")
    total_s: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    cpu_window_s: float = float("nan")
    cpu_total_s: float = float("nan")
    peak_rss_bytes: int = 0
    broker_cpu_window_s: float = float("nan")
    bench_cpu_window_s: float = float("nan")
    processes: int = 0
    error: str | None = None

    @property
    def records_per_s(self) -> float:
        """N / window (NaN when the run did not finish)."""
        if self.missing or not self.window_s > 0:
            return float("nan")
        return self.records / self.window_s

    @property
    def cpu_per_1k(self) -> float:
        """CPU seconds of the system per 1,000 records, within the window."""
        return self.cpu_window_s * 1000.0 / self.records

    @property
    def broker_cpu_per_1k(self) -> float:
        """CPU seconds of the (embedded) broker per 1,000 records, within the window."""
        return self.broker_cpu_window_s * 1000.0 / self.records

    @property
    def bench_cpu_per_1k(self) -> float:
        """CPU seconds of this benchmark's own process (publisher, collector) per 1,000
        records, within the window: the measurement's share of the machine."""
        return self.bench_cpu_window_s * 1000.0 / self.records


@dataclass(frozen=True)
class RunSettings:
    """How to run every system."""

    rate: float | None
    timeout_s: float


@dataclass
class Run:
    """One system's run in progress: its clients, processes and monitors."""

    system: System
    context: Context
    settings: RunSettings
    records: Sequence[BenchRecord]
    warmup: Sequence[BenchRecord]
    progress: Progress
    broker_pid: int | None
    collector: Collector = field(init=False)
    publisher: Publisher = field(init=False)
    processes: Processes | None = None
    monitor: Monitor | None = None
    broker_monitor: Monitor | None = None
    self_monitor: Monitor | None = None
    launched_at: float = 0.0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        topology = self.context.topology
        total = len(self.records) + (len(self.warmup) if self.settings.rate else 0)
        self.collector = Collector(
            self.context.bootstrap,
            topology,
            read_committed=self.context.guarantee == "exactly_once",
        )
        self.publisher = Publisher(
            self.context.bootstrap,
            topology.input,
            on_sent=lambda _: self.progress("publish", len(self.publisher.published), total),
        )

    async def setup(self) -> None:
        """Create the topics and start watching the outputs."""
        topology = self.context.topology
        if self.system.stream_engine:
            with (self.context.workdir / f"{self.system.name}.log").open("a") as log:
                await asyncio.to_thread(create_stream_engine_topics, self.context, log)
        else:
            await create_topics(self.context.bootstrap, topology, *partitions())
        await wait_for_topics(self.context.bootstrap, topology.all_topics())
        await self.collector.start()
        self._spawn(self.collector.run())
        self.self_monitor = Monitor(ProcessTree.of([os.getpid()], recursive=False), time.time)
        self._spawn(self.self_monitor.run())
        if self.broker_pid is not None:
            self.broker_monitor = Monitor(ProcessTree.of([self.broker_pid]), time.time)
            self._spawn(self.broker_monitor.run())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.ensure_future(work))

    def launch(self) -> None:
        """Start the system's processes and their monitor."""
        log = self.context.workdir / f"{self.system.name}.log"
        self.launched_at = time.time()
        self.processes = Processes.start(self.system.commands(self.context), log)
        self.monitor = Monitor(ProcessTree.of(self.processes.pids), time.time)
        self._spawn(self.monitor.run())

    async def wait_for(self, ids: Sequence[str], deadline: float, label: str) -> None:
        """Until every id has a decision, the deadline passes, or a process dies."""
        while True:
            done = self.collector.count(ids)
            self.progress(label, done, len(ids))
            if done >= len(ids) or time.time() > deadline:
                return
            if self.processes is not None and self.processes.exited():
                await asyncio.sleep(1.0)  # let the last decisions arrive
                raise RuntimeError(
                    f"a process of {self.system.name} exited "
                    f"({self.processes.exited()}):\n{self.processes.log_tail()}"
                )
            await asyncio.sleep(0.25)

    async def execute(self) -> float:
        """Publish and process; returns the start of the measured window."""
        deadline = time.time() + self.settings.timeout_s
        ids = [r.record_id for r in self.records]
        if self.settings.rate is None:
            await self.publisher.publish(self.records)
            self.launch()
            await self.wait_for(ids, deadline, "decided")
            return self.collector.first_hop_at or self.launched_at
        self.launch()
        await self.publisher.publish(self.warmup)
        warmup = [r.record_id for r in self.warmup]
        await self.wait_for(warmup, deadline, "warm-up")
        if self.collector.count(warmup) < len(warmup):
            raise TimeoutError(
                f"the warm-up records were not decided within {self.settings.timeout_s:g} s"
            )
        publishing = asyncio.ensure_future(self.publisher.publish(self.records, self.settings.rate))
        self.tasks.append(publishing)
        await self.wait_for(ids, deadline, "decided")
        published = self.publisher.published
        return min((published[i] for i in ids if i in published), default=self.launched_at)

    async def teardown(self) -> None:
        """Stop the processes (SIGTERM, then SIGKILL), the clients and the monitors."""
        if self.processes is not None:
            await asyncio.to_thread(self.processes.stop)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.collector.stop()

    def result(self, start: float) -> Result:
        """The measurements of a finished run."""
        assert self.monitor is not None
        assert self.processes is not None
        self.monitor.sample()
        ids = [r.record_id for r in self.records]
        seen = [self.collector.seen[i] for i in ids if i in self.collector.seen]
        end = max((s.at for s in seen), default=float("nan"))
        latencies = latencies_ms(ids, self.collector.seen, self.publisher.published)
        result = Result(self.system.name, len(ids), processes=len(self.processes.pids))
        result.counts = Counter(STATUS_OF_OUTPUT[s.kind] for s in seen)
        result.missing = len(ids) - len(seen)
        result.duplicates = self.collector.duplicates
        result.window_s = end - start
        result.startup_s = start - self.launched_at
        result.total_s = end - self.launched_at
        result.p50_ms, result.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
        result.cpu_window_s = self.monitor.cpu_between(start, end)
        result.cpu_total_s = self.monitor.cpu_total
        result.peak_rss_bytes = self.monitor.peak_rss
        if self.broker_monitor is not None:
            self.broker_monitor.sample()
            result.broker_cpu_window_s = self.broker_monitor.cpu_between(start, end)
        if self.self_monitor is not None:
            self.self_monitor.sample()
            result.bench_cpu_window_s = self.self_monitor.cpu_between(start, end)
        return result


def latencies_ms(
    ids: Sequence[str], seen: Mapping[str, Seen], published: Mapping[str, float]
) -> list[float]:
    """Publish -> decision seen, in milliseconds, of every id that was published and decided
    (in the order of ``ids``)."""
    return [(seen[i].at - published[i]) * 1000.0 for i in ids if i in seen and i in published]


def broker_pid(port: int) -> int | None:
    """The embedded broker this process started, found by its listener port."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if f"127.0.0.1:{port}" in " ".join(child.cmdline()):
                pid: int = child.pid
                return pid
    return None


async def run_system(
    system: System,
    context: Context,
    settings: RunSettings,
    records: Sequence[BenchRecord],
    warmup: Sequence[BenchRecord],
    progress: Progress,
    broker_port: int | None,
) -> Result:
    """Run one system and measure it; failures are reported in the result, never raised."""
    run = Run(
        system,
        context,
        settings,
        records,
        warmup,
        progress,
        broker_pid(broker_port) if broker_port else None,
    )
    try:
        await run.setup()
        start = await run.execute()
        return run.result(start)
    except Exception as exc:  # noqa: BLE001 - one system's failure must not stop the others
        failed = Result(system.name, len(records), error=f"{type(exc).__name__}: {exc}")
        if run.monitor is not None:
            with contextlib.suppress(Exception):
                partial = run.result(run.collector.first_hop_at or run.launched_at)
                partial.error = failed.error
                return partial
        return failed
    finally:
        await run.teardown()


def workdir_for(base: Path, name: str) -> Path:
    """A scratch folder for one system's config copy and logs."""
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path
