"""The worker's HTTP endpoint: ``/metrics`` (Prometheus text format), ``/health`` (the process
is alive and its event loop runs) and ``/ready`` (every stage has partitions assigned and is
consuming; 503 with the reason while a stage restores its state).

It is served from a thread of its own, on its own event loop, so it answers while the stages'
loop is busy with a batch - and ``/health`` can tell a busy loop from a stuck one: the stages'
loop beats every second, and ``/health`` answers 503 once it has missed ``STALL_S`` of beats.

It listens on 127.0.0.1 unless ``runtime.metrics_host`` opens it, and holds no connection for
long: a connection that is idle - no request yet, a request only half sent, or nothing after a
response - is closed after ``idle_timeout_s``, and at most ``max_connections`` are open at once.
A connection past that cap closes the oldest one to make room (every handler answers without
waiting, so the oldest is idle, or slow to read its answer): idle clients can neither exhaust
the file descriptors the Kafka clients need nor keep ``/health`` from answering."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry

from stream_engine.config.models import (
    METRICS_HOST,
    METRICS_IDLE_TIMEOUT_S,
    METRICS_MAX_CONNECTIONS,
)

Route = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

#: How often the stages' event loop beats, and how long without a beat makes it stalled.
BEAT_S = 1.0
STALL_S = 30.0


class _CappedServer(web.Server):
    """aiohttp's low-level server, holding at most ``cap`` connections."""

    def __init__(self, handler: Route, cap: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.cap = cap
        self.dropped = 0

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        """Admit a connection; past the cap, close the oldest one."""
        super().connection_made(handler, transport)
        open_ = [h for h in self.connections if h.transport is not None]
        if len(open_) > self.cap:
            open_[0].force_close()
            self.dropped += 1


class MetricsEndpoint:
    """Serves one registry on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        host: str = METRICS_HOST,
        port: int = 9464,
        idle_timeout_s: float = METRICS_IDLE_TIMEOUT_S,
        max_connections: int = METRICS_MAX_CONNECTIONS,
        unready: Callable[[], str | None] | None = None,
    ) -> None:
        self.registry = registry
        self.ready = ready
        #: Why the worker is not ready (restoring state), shown by ``/ready``; None: ready.
        self.unready = unready
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._routes: dict[str, Route] = {
            "/metrics": self._metrics,
            "/health": self._health,
            "/ready": self._ready,
        }
        self._server: _CappedServer | None = None
        self._runner: web.ServerRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._beat: asyncio.Task[None] | None = None
        self._last_beat = time.monotonic()

    async def start(self) -> int:
        """Listen, from a thread of its own; returns the port actually bound."""
        self._last_beat = time.monotonic()
        self._beat = asyncio.ensure_future(self._beating())
        bound: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(bound,), name="stream-engine-endpoint", daemon=True
        )
        self._thread.start()
        try:
            return await asyncio.wrap_future(bound)
        except BaseException:
            await self.stop()
            raise

    async def _beating(self) -> None:
        while True:
            self._last_beat = time.monotonic()
            await asyncio.sleep(BEAT_S)

    def _serve(self, bound: concurrent.futures.Future[int]) -> None:
        """The endpoint thread: listen, serve until stopped, clean up."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                bound.set_result(loop.run_until_complete(self._listen()))
            except Exception as exc:  # noqa: BLE001 - handed to start(), which raises it
                bound.set_exception(exc)
                return
            loop.run_forever()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
                self._runner = None
        finally:
            loop.close()

    async def _listen(self) -> int:
        self._server = _CappedServer(
            self._handle,
            self.max_connections,
            # Counted from the connection's start, and again from the end of each response.
            keepalive_timeout=self.idle_timeout_s,
            access_log=None,
        )
        self._runner = web.ServerRunner(self._server, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop listening (and the endpoint thread)."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
            self._beat = None
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10.0)
        self._thread = self._loop = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs listened on."""
        if self._runner is None:
            return []
        return [(str(a[0]), int(a[1])) for a in self._runner.addresses]

    @property
    def connections(self) -> int:
        """Connections open now."""
        server = self._server
        return 0 if server is None else sum(h.transport is not None for h in server.connections)

    @property
    def dropped(self) -> int:
        """Connections closed since start because the cap was reached."""
        return 0 if self._server is None else self._server.dropped

    @property
    def url(self) -> str:
        """Where Prometheus scrapes (with ``localhost`` for a wildcard host)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/metrics"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="not found")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        return await route(request)

    async def _metrics(self, request: web.BaseRequest) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.BaseRequest) -> web.Response:
        silent = time.monotonic() - self._last_beat
        if silent > STALL_S:
            body = {"status": "stalled", "event_loop_silent_s": round(silent, 1)}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ok"})

    async def _ready(self, request: web.BaseRequest) -> web.Response:
        reason = self.unready() if self.unready is not None else None
        if reason is not None:
            return web.json_response({"status": "not ready", "reason": reason}, status=503)
        if self.ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)
