"""What benchmarks/api.py runs and measures: the pipeline's topics, its stage workers and one
API process on a broker, the benchmark's own Kafka clients (benchmarks/kafka_io.py, as
benchmarks/run.py uses them) and the psutil monitors of each process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.api_load import DecideLoad, probe_health, server_seconds
from benchmarks.api_profile import report
from benchmarks.api_report import Cpu, Phase
from benchmarks.harness import latencies_ms, workdir_for
from benchmarks.kafka_io import Collector, Publisher, wait_for_topics
from benchmarks.measure import Monitor, ProcessTree
from benchmarks.records import BenchRecord
from benchmarks.systems import SYSTEMS, Context, Processes, create_stream_engine_topics
from stream_engine.api.security import key_hash, new_key

#: The API's producer linger (stream_engine/api/server.py LINGER_MS): the pipeline phase's
#: publisher uses the same, so both paths wait alike before a record leaves.
API_LINGER_MS = 1
_URL = re.compile(r"^api: (https?://\S+)$", re.MULTILINE)
LAYOUTS = {"one": "stream_engine_one_worker", "per-stage": "stream_engine_per_stage"}


def with_api_key(config: Path, key: str) -> None:
    """The benchmark's config copy serves its API to one caller, the benchmark, by ``key``
    (every scope, no rate limit: the sweep must find the process's limit, not the key's)."""
    data = yaml.safe_load(config.read_text())
    api = data.setdefault("api", {})
    api["keys"] = [{"id": "bench", "hash": key_hash(key), "scopes": ["decide", "submit", "read"]}]
    api.pop("anonymous", None)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


class Stack:
    """The broker's pipeline, its workers and one API process, and the clients that drive and
    watch them."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        scratch: Path,
        layout: str,
        broker_pid: int | None,
        profile: bool = False,
        concurrency: int = 64,
    ) -> None:
        self.context = Context(
            bootstrap=bootstrap,
            prefix=prefix,
            workdir=workdir_for(scratch, "api"),
            driver=None,
            guarantee=None,
            raw_layout="per-stage",
            peer_layout="per-stage",
            session_timeout_ms=3000,
        )
        self.layout = layout
        self.concurrency = concurrency
        self.key = new_key()
        self.broker_pid = broker_pid
        self.profile_path = self.context.workdir / "api.prof" if profile else None
        self.collector = Collector(bootstrap, self.context.topology)
        self.workers: Processes | None = None
        self.api: Processes | None = None
        self.api_url = ""
        self.monitors: dict[str, Monitor] = {}
        self._tasks: list[asyncio.Future[None]] = []

    @property
    def config(self) -> Path:
        """The pipeline's config copy (benchmarks/systems.py ``bench_config``)."""
        return self.context.workdir / f"{self.context.prefix}.yaml"

    async def start(self) -> None:
        """Topics, the output watcher, the workers, the API; returns once the API is ready."""
        with (self.context.workdir / "topics.log").open("a") as log:
            await asyncio.to_thread(create_stream_engine_topics, self.context, log)
        with_api_key(self.config, self.key)
        await wait_for_topics(self.context.bootstrap, self.context.topology.all_topics())
        await self.collector.start()
        self._spawn(self.collector.run())
        workers = SYSTEMS[LAYOUTS[self.layout]].commands(self.context)
        self.workers = Processes.start(workers, self.context.workdir / "workers.log")
        self.api = Processes.start([self._api_command()], self.context.workdir / "api.log")
        self.api_url = await self._api_ready()
        self._monitor("api", self.api.pids, recursive=False)
        self._monitor("workers", self.workers.pids, recursive=False)
        self._monitor("bench", [os.getpid()], recursive=False)
        if self.broker_pid is not None:
            self._monitor("broker", [self.broker_pid], recursive=False)

    def _api_command(self) -> list[str]:
        base = [sys.executable]
        if self.profile_path is not None:
            base += ["-m", "benchmarks.profiled", str(self.profile_path)]
        return [
            *base, "-m", "stream_engine.cli", "serve", str(self.config),
            "--broker", self.context.bootstrap, "--api-port", "0",
        ]  # fmt: skip

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.ensure_future(work))

    def _monitor(self, name: str, pids: Sequence[int], recursive: bool) -> None:
        # Not recursive: none of them starts a child, and a walk of every process on the
        # machine every 0.2 s would hold up this process's event loop, and its timings.
        monitor = Monitor(ProcessTree.of(pids, recursive), time.time)
        self.monitors[name] = monitor
        self._spawn(monitor.run())

    async def _api_ready(self, timeout_s: float = 90.0) -> str:
        """The URL the API process printed, once its ``/ready`` answers 200."""
        assert self.api is not None
        deadline = time.monotonic() + timeout_s
        url = None
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                self.check_alive()
                if url is None:
                    found = _URL.search(self.api.log_path.read_text(errors="replace"))
                    url = found.group(1) if found else None
                if url is not None:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(url + "/ready") as response:
                            if response.status == 200:
                                return url
                await asyncio.sleep(0.2)
        raise TimeoutError(f"the API was not ready within {timeout_s:g} s:\n{self.api.log_tail()}")

    def check_alive(self) -> None:
        """Raise when a worker or the API process has exited."""
        for name, processes in (("a worker", self.workers), ("the API", self.api)):
            if processes is not None and processes.exited():
                raise RuntimeError(f"{name} exited:\n{processes.log_tail()}")

    async def wait_decided(self, ids: Sequence[str], timeout_s: float) -> None:
        """Until the collector has seen a decision for every id."""
        deadline = time.monotonic() + timeout_s
        while self.collector.count(ids) < len(ids):
            self.check_alive()
            if time.monotonic() > deadline:
                missing = len(ids) - self.collector.count(ids)
                raise TimeoutError(f"{missing} records not decided within {timeout_s:g} s")
            await asyncio.sleep(0.05)

    async def warm_up(self, records: Sequence[BenchRecord]) -> None:
        """Records through the pipeline until every stage answers, then decide calls (half of
        ``records`` each way)."""
        half = len(records) // 2
        publisher = Publisher(self.context.bootstrap, self.context.topology.input)
        await publisher.publish(records[:half])
        await self.wait_decided([r.record_id for r in records[:half]], 120.0)
        load = DecideLoad(self.api_url, self.concurrency, self.key)
        calls = await load.run(records[half:], 20.0)
        if any(c.status != 200 for c in calls):
            raise RuntimeError(f"warm-up decide calls failed: {[c.status for c in calls]}")

    async def pipeline_phase(self, records: Sequence[BenchRecord], rate: float) -> Phase:
        """Records published at ``rate`` and their decisions read (benchmarks/run.py --rate)."""
        publisher = Publisher(
            self.context.bootstrap, self.context.topology.input, linger_ms=API_LINGER_MS
        )
        ids = [r.record_id for r in records]
        await publisher.publish(records, rate)
        await self.wait_decided(ids, 120.0)
        start = min(publisher.published.values())
        end = max(self.collector.seen[i].at for i in ids)
        latencies = latencies_ms(ids, self.collector.seen, publisher.published)
        return Phase.of(rate, latencies, [], end - start, self._cpu(start, end))

    async def decide_phase(
        self, records: Sequence[BenchRecord], rate: float, from_due: bool = False
    ) -> Phase:
        """``POST /v1/decide`` for every record at ``rate``; latency from sending each
        request (as the pipeline's is from publishing), or with ``from_due`` from when it was
        due (a request waiting for a free slot counts the wait)."""
        self.check_alive()
        load = DecideLoad(self.api_url, self.concurrency, self.key)
        before = await self._server_seconds()
        health: list[float] = []
        probe = asyncio.ensure_future(probe_health(self.api_url, 0.1, health))
        start = time.time()
        try:
            calls = await load.run(records, rate)
        finally:
            end = time.time()
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        after = await self._server_seconds()
        served = after[1] - before[1]
        inside = (after[0] - before[0]) * 1000.0 / served if served else float("nan")
        return Phase.of(
            rate,
            [c.latency_ms if from_due else c.service_ms for c in calls],
            [c.status for c in calls],
            end - start,
            self._cpu(start, end),
            inside,
            tuple(health),
        )

    async def _server_seconds(self) -> tuple[float, float]:
        """The API's own decide-duration histogram: (sum of seconds, count) so far."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.api_url + "/metrics") as response,
        ):
            return server_seconds(await response.text())

    def _cpu(self, start: float, end: float) -> Cpu:
        """CPU seconds of each monitored process within ``[start, end]``."""
        between = {}
        for name, monitor in self.monitors.items():
            monitor.sample()
            between[name] = monitor.cpu_between(start, end)
        nan = float("nan")
        return Cpu(
            between.get("api", nan),
            between.get("workers", nan),
            between.get("broker", nan),
            between.get("bench", nan),
        )

    async def close(self) -> None:
        """Stop the processes (the API first), the monitors and the collector."""
        self.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.collector.stop()

    def stop(self) -> None:
        """SIGTERM the API and the workers (then SIGKILL what is left); safe to repeat."""
        for processes in (self.api, self.workers):
            if processes is not None:
                processes.stop()

    def profile_report(self, top: int = 25) -> str:
        """The API process's cProfile (benchmarks/api_profile.py)."""
        if self.profile_path is None or not self.profile_path.exists():
            return "no profile was written"
        return report(self.profile_path, top)
