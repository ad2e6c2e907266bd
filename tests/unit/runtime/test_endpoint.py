"""The metrics endpoint against real clients on loopback: it listens on 127.0.0.1 by default,
drops idle connections after a short timeout, and past its connection cap drops the oldest so
/health keeps answering."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from stream_engine.config.models import RuntimeConfig
from stream_engine.runtime.observe import endpoint as endpoint_module
from stream_engine.runtime.observe.endpoint import MetricsEndpoint


@pytest.fixture
async def endpoint() -> AsyncIterator[Callable[..., object]]:
    """Starts endpoints on a free loopback port; stops them at the end."""
    started: list[MetricsEndpoint] = []

    async def start(**options: object) -> MetricsEndpoint:
        point = MetricsEndpoint(CollectorRegistry(), lambda: True, port=0, **options)  # type: ignore[arg-type]
        await point.start()
        started.append(point)
        return point

    yield start
    for point in started:
        await point.stop()


async def closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    """Whether the server closes the connection within ``within_s`` (reading what it sends)."""
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def get(port: int, path: str, timeout_s: float = 1.0) -> int:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        await response.read()
        return response.status


def test_the_endpoint_and_the_runtime_default_to_loopback_only():
    assert RuntimeConfig().metrics_host == "127.0.0.1"
    assert MetricsEndpoint(CollectorRegistry(), lambda: True).host == "127.0.0.1"


async def test_by_default_the_endpoint_listens_on_127_0_0_1_alone(endpoint):
    point = await endpoint()

    assert point.addresses == [("127.0.0.1", point.port)]
    assert await get(point.port, "/health") == 200


async def test_a_client_that_connects_and_never_sends_a_request_is_dropped(endpoint):
    point = await endpoint(idle_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", point.port)

    assert await closed_by_server(reader, within_s=3.0)
    writer.close()


async def test_a_request_sent_only_in_part_is_dropped_after_the_idle_timeout(endpoint):
    point = await endpoint(idle_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", point.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    await writer.drain()

    assert await closed_by_server(reader, within_s=3.0)
    writer.close()


async def test_a_kept_alive_connection_is_closed_once_idle_after_its_response(endpoint):
    point = await endpoint(idle_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", point.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 1.0)

    assert status.startswith(b"HTTP/1.1 200")
    assert await closed_by_server(reader, within_s=3.0)
    writer.close()


async def test_past_the_connection_cap_the_oldest_are_dropped_and_health_still_answers(endpoint):
    point = await endpoint(idle_timeout_s=60.0, max_connections=64)
    idle = [await asyncio.open_connection("127.0.0.1", point.port) for _ in range(250)]
    await asyncio.sleep(0)  # let the server see the last ones

    answers = [await get(point.port, "/health") for _ in range(3)]

    assert answers == [200, 200, 200]
    assert point.connections <= 64
    assert point.dropped >= 250 - 64
    oldest, _ = idle[0]
    assert await closed_by_server(oldest, within_s=1.0)
    for _, writer in idle:
        writer.close()


async def test_only_the_three_paths_answer_and_only_to_get_and_head(endpoint):
    point = await endpoint()
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        base = f"http://127.0.0.1:{point.port}"
        async with session.get(f"{base}/metrics") as metrics:
            assert metrics.status == 200
            assert metrics.headers["Content-Type"].startswith("text/plain")
        async with session.head(f"{base}/health") as head:
            assert head.status == 200
        async with session.get(f"{base}/ready") as ready:
            assert (ready.status, await ready.json()) == (200, {"status": "ready"})
        async with session.get(f"{base}/nope") as missing:
            assert missing.status == 404
        async with session.post(f"{base}/metrics") as post:
            assert post.status == 405


def spin(seconds: float) -> None:
    """Hold this thread - the stages' event loop - busy, as a long batch would."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def get_from_another_thread(url: str, results: list[tuple[int, float]]) -> threading.Thread:
    """GET ``url`` from a thread (the test's own loop is about to be blocked)."""

    def fetch() -> None:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        results.append((status, time.perf_counter() - started))

    thread = threading.Thread(target=fetch)
    thread.start()
    return thread


async def test_health_answers_while_the_stages_loop_is_busy(endpoint):
    point = await endpoint()
    results: list[tuple[int, float]] = []
    base = point.url.removesuffix("/metrics")
    thread = get_from_another_thread(base + "/health", results)
    spin(1.5)  # the stages' loop is busy with a long batch
    thread.join(5)
    [(status, took)] = results
    assert status == 200
    assert took < 0.5


async def test_health_says_stalled_once_the_stages_loop_misses_its_beats(endpoint, monkeypatch):
    monkeypatch.setattr(endpoint_module, "STALL_S", 0.5)
    point = await endpoint()
    results: list[tuple[int, float]] = []
    spin(1.2)  # stuck past the stall limit
    health = point.url.removesuffix("/metrics") + "/health"
    thread = get_from_another_thread(health, results)
    thread.join(5)
    assert [status for status, _ in results] == [503]
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 5
        status = 503
        while status != 200 and time.monotonic() < deadline:  # it beats again
            await asyncio.sleep(0.1)
            async with session.get(health) as response:
                status = response.status
    assert status == 200


async def test_ready_says_503_with_its_reason_while_state_is_restoring(endpoint):
    reason: list[str | None] = ["restoring state: stage counting partition(s) 0, 2"]
    point = await endpoint(unready=lambda: reason[0])
    base = f"http://127.0.0.1:{point.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/ready") as ready:
            assert ready.status == 503
            assert await ready.json() == {"status": "not ready", "reason": reason[0]}
        reason[0] = None
        async with session.get(f"{base}/ready") as ready:
            assert (ready.status, await ready.json()) == (200, {"status": "ready"})
