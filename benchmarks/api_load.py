"""The decide load of benchmarks/api.py: ``POST /v1/decide`` at a steady rate from an aiohttp
client (open loop: request ``i`` is due at ``start + i / rate`` whatever the answers before
it did; at most ``concurrency`` in flight, a due request waits for a free slot), and the
figures of a run: latency percentiles, the share of 202s, and whether a rate held.

Latency is timed from the request's due time to the last byte of the answer, so a request
held back by the in-flight bound counts the wait (no coordinated omission); its service time
starts when it is sent, as the pipeline's own latency starts when a record is published."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from benchmarks.measure import percentile
from benchmarks.records import BenchRecord
from stream_engine.api.security import API_KEY_HEADER

#: A transport failure (no HTTP status): connection refused, reset, client timeout.
NO_STATUS = 0
DECIDE_PATH = "/v1/decide"
#: A rate holds while the decide p99 stays under this (and no answer is a 202 or an error).
HOLD_P99_MS = 1000.0
#: Issue 16's target: decide's p99 at most the pipeline's own p99 plus this.
SLACK_MS = 10.0


@dataclass(frozen=True, slots=True)
class Call:
    """One decide request: its HTTP status (``NO_STATUS`` when none came), its latency from
    when it was due, and how long of that it waited to be sent (for a free slot, or for this
    process's event loop)."""

    status: int
    latency_ms: float
    waited_ms: float = 0.0

    @property
    def service_ms(self) -> float:
        """From sending the request to reading the answer: what the pipeline's own latency
        (from publishing a record) compares with."""
        return self.latency_ms - self.waited_ms


@dataclass(frozen=True)
class Figures:
    """Latency percentiles (ms) of a set of calls or records, how many, and the statuses."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: Counter[int] = field(default_factory=Counter)
    mean_ms: float = math.nan

    @property
    def share_202(self) -> float:
        """The share of answers that were 202 (the decision not ready within the wait)."""
        return self.statuses.get(202, 0) / self.count if self.count else math.nan

    @property
    def errors(self) -> int:
        """Answers that were neither 200 nor 202 (or no answer at all)."""
        return sum(n for status, n in self.statuses.items() if status not in (200, 202))


def figures(latencies_ms: Sequence[float], statuses: Sequence[int] = ()) -> Figures:
    """p50 / p99 / max of ``latencies_ms``, and the statuses counted."""
    return Figures(
        len(latencies_ms),
        percentile(latencies_ms, 50),
        percentile(latencies_ms, 99),
        max(latencies_ms, default=math.nan),
        Counter(statuses),
        sum(latencies_ms) / len(latencies_ms) if latencies_ms else math.nan,
    )


def call_figures(calls: Sequence[Call]) -> Figures:
    """The figures of decide calls: latency of every call, whatever its status."""
    return figures([c.latency_ms for c in calls], [c.status for c in calls])


def server_seconds(metrics_text: str, route: str = DECIDE_PATH) -> tuple[float, float]:
    """(sum of seconds, count) of the API's request-duration histogram for ``route``, from
    its ``/metrics`` text: the time requests spent inside the API process."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if f'route="{route}"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith("stream_engine_api_request_duration_seconds_sum{"):
            total += float(value)
        elif name.startswith("stream_engine_api_request_duration_seconds_count{"):
            count += float(value)
    return total, count


def holds(decide: Figures, expected: int) -> bool:
    """Whether a rate held: every request answered 200 and the p99 is under 1 s."""
    return (
        decide.count == expected
        and decide.statuses.get(200, 0) == expected
        and decide.p99_ms < HOLD_P99_MS
    )


def target_met(decide_p99_ms: float, pipeline_p99_ms: float, slack_ms: float = SLACK_MS) -> bool:
    """Issue 16's target at one rate: decide's p99 at most the pipeline's own p99 + 10 ms."""
    return (
        math.isfinite(decide_p99_ms)
        and math.isfinite(pipeline_p99_ms)
        and decide_p99_ms <= pipeline_p99_ms + slack_ms
    )


def sweep_rates(start: float, ceiling: float) -> list[float]:
    """The rates of the capacity sweep: ``start`` doubled until past ``ceiling``."""
    rates: list[float] = []
    rate = start
    while rate <= ceiling:
        rates.append(rate)
        rate *= 2
    return rates


def last_held(results: Sequence[tuple[float, bool]]) -> float | None:
    """The last rate that held in a sweep that stops at the first that did not."""
    best = None
    for rate, held in results:
        if not held:
            break
        best = rate
    return best


def due_times(start: float, rate: float, count: int) -> list[float]:
    """When each of ``count`` requests is due at ``rate`` per second from ``start``."""
    return [start + index / rate for index in range(count)]


@dataclass
class DecideLoad:
    """Drives ``POST /v1/decide`` of one API process."""

    url: str
    concurrency: int = 64
    #: The caller's API key (``X-API-Key``).
    key: str | None = None
    timeout_s: float = 60.0

    @property
    def headers(self) -> dict[str, str]:
        """Every request's headers."""
        headers = {"Content-Type": "application/json"}
        if self.key is not None:
            headers[API_KEY_HEADER] = self.key
        return headers

    async def run(self, records: Sequence[BenchRecord], rate: float) -> list[Call]:
        """One request per record at ``rate`` per second; the calls in due order."""
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self.headers
        ) as session:
            slots = asyncio.Semaphore(self.concurrency)
            calls: list[Call | None] = [None] * len(records)
            tasks: list[asyncio.Task[None]] = []
            for index, (record, due) in enumerate(
                zip(records, due_times(time.monotonic() + 0.01, rate, len(records)), strict=True)
            ):
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                tasks.append(
                    asyncio.ensure_future(self._one(session, record, due, slots, calls, index))
                )
            await asyncio.gather(*tasks)
        return [c for c in calls if c is not None]

    async def _one(
        self,
        session: aiohttp.ClientSession,
        record: BenchRecord,
        due: float,
        slots: asyncio.Semaphore,
        calls: list[Call | None],
        index: int,
    ) -> None:
        status = NO_STATUS
        sent = time.monotonic()
        try:
            async with session.post(self.url + DECIDE_PATH, data=record.value) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError):
            status = NO_STATUS
        finally:
            slots.release()
            calls[index] = Call(status, (time.monotonic() - due) * 1000.0, (sent - due) * 1000.0)


async def probe_health(url: str, interval_s: float, into: list[float]) -> None:
    """``GET /health`` every ``interval_s`` until cancelled, each round trip's milliseconds
    into ``into``: what one HTTP exchange with the API process costs under the same load,
    with no Kafka in it."""
    async with aiohttp.ClientSession() as session:
        while True:
            sent = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/health") as response:
                    await response.read()
                    into.append((time.monotonic() - sent) * 1000.0)
            await asyncio.sleep(interval_s)
