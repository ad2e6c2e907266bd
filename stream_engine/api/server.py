"""An API process: a producer to the input topic, the output reader that feeds the view, and
the aiohttp listener (TLS when ``api.tls`` says). ``ApiServer`` is what ``serve`` and ``dev``
start; ``serve_api`` runs one until SIGTERM/SIGINT.

A record is acknowledged (202, or the wait of a decide call begins) only after the broker
acknowledged it with acks=all, so an API process that dies loses nothing it answered for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_engine.api.app import ApiApp
from stream_engine.api.intake import Intake, Submission
from stream_engine.api.metrics import ApiMetrics
from stream_engine.api.openapi import document
from stream_engine.api.outputs import OutputReader
from stream_engine.api.problems import ApiProblem, ProblemKind
from stream_engine.api.security import Guard
from stream_engine.api.view import DecisionView
from stream_engine.config.api_models import ApiTlsConfig
from stream_engine.config.compiled import CompiledPipeline
from stream_engine.errors import ConfigError, StreamEngineError
from stream_engine.runtime.cluster.client_logs import redact_client_logs
from stream_engine.runtime.cluster.settings import KafkaSettings, connected, reach
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.codec import TRACE_HEADER, Codec
from stream_engine.runtime.stage.integrity import envelope_auth

log = logging.getLogger("stream_engine.api")

#: The producer waits this long to fill a request with more records (latency first).
LINGER_MS = 1


def tls_context(tls: ApiTlsConfig) -> ssl.SSLContext:
    """The listener's TLS context (TLS 1.2 at least; client certificates when configured)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file is not None:
            context.load_verify_locations(tls.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("api.tls", f"cannot load the certificate or key: {exc}") from None
    return context


class ApiServer:
    """One API process's parts, started and stopped together."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        kafka: KafkaSettings,
        anonymous: bool = False,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        config = pipeline.config.api
        self.pipeline = pipeline
        self.kafka = kafka
        self.config = config
        self.host = host or config.host
        self.port = config.port if port is None else port
        self.guard = Guard(config, anonymous)
        if not config.keys and not self.guard.anonymous:
            raise ConfigError(
                "api.keys",
                "no API keys: list callers with their key hashes ('stream-engine api-key' "
                "makes one), or set api.anonymous: true to let anyone decide",
            )
        redact_client_logs()  # aiokafka's debug lines would hold the records it sends
        self.topics = pipeline_topics(pipeline)
        plan = pipeline.plan
        self.intake = Intake(
            Codec.for_pipeline(pipeline),
            self.topics.input,
            plan.active_stages[0].name,
            config.max_records,
        )
        self.view = DecisionView(
            config.view.max_decisions, config.view.retention_s, config.max_pending
        )
        self.metrics = ApiMetrics(plan.name, lambda: self.view.pending, lambda: len(self.view))
        self.reader = OutputReader(
            self.topics,
            kafka,
            self.view,
            envelope_auth(pipeline),
            self.metrics.refused,
        )
        self._producer: AIOKafkaProducer | None = None
        self._stack = contextlib.AsyncExitStack()
        self._runner: web.AppRunner | None = None
        self.ssl = None if config.tls is None else tls_context(config.tls)

    @property
    def url(self) -> str:
        """Where the API listens (the bound port, once started)."""
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def unready(self) -> str | None:
        """Why the API cannot serve yet; None when it can."""
        if self._producer is None:
            return "connecting to the broker"
        if not self.reader.caught_up.is_set():
            return "rebuilding the view of decisions from the output topics"
        return None

    def app(self) -> ApiApp:
        """The routes over this process's parts (its OpenAPI document says who may call)."""
        return ApiApp(
            self.config,
            self.intake,
            self.view,
            self.publish,
            self.guard,
            self.metrics,
            self.unready,
            lambda: document(self.pipeline, anonymous=self.guard.anonymous),
        )

    async def start(self) -> str:
        """Listen, connect, start reading the outputs; returns the URL. ``/ready`` answers
        503 until the view is rebuilt."""
        runner = web.AppRunner(self.app().application(), access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StreamEngineError(
                f"api: cannot listen on {self.host}:{self.port} ({exc.strerror}); choose "
                "another with --api-port (0: any free port)"
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        try:
            await reach(self.kafka)
            producer = AIOKafkaProducer(**self.kafka.producer(linger_ms=LINGER_MS))
            await self._stack.enter_async_context(connected(producer, self.kafka))
            await self.reader.start()
            self._producer = producer
        except BaseException:
            await self.stop()
            raise
        return self.url

    async def publish(self, submissions: Sequence[Submission]) -> None:
        """Send records to the input topic and wait for every acknowledgement (acks=all);
        ``ApiProblem`` 503 when the broker does not take them."""
        producer = self._producer
        if producer is None:
            raise ApiProblem(ProblemKind.NOT_READY, "not connected to the broker")
        try:
            sent = [
                await producer.send(
                    self.topics.input, s.value, key=s.key,
                    headers=[(TRACE_HEADER, s.trace.encode("ascii"))],
                )
                for s in submissions
            ]  # fmt: skip
            await asyncio.gather(*sent)
        except KafkaError as exc:
            raise ApiProblem(
                ProblemKind.BROKER_UNAVAILABLE,
                f"the broker did not acknowledge the records ({type(exc).__name__}); "
                "retry the request",
                headers={"Retry-After": "1"},
            ) from None

    async def stop(self) -> None:
        """Stop listening, reading and producing."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.reader.stop()
        self._producer = None
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def running_api(
    pipeline: CompiledPipeline,
    kafka: KafkaSettings,
    anonymous: bool = False,
    host: str | None = None,
    port: int | None = None,
) -> AsyncIterator[ApiServer]:
    """An API process's parts, started for the block (``dev`` runs one beside the stages)."""
    server = ApiServer(pipeline, kafka, anonymous, host, port)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


async def serve_api(
    pipeline: CompiledPipeline,
    kafka: KafkaSettings,
    announce: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Run one API process until ``stop`` is set or SIGTERM/SIGINT arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with running_api(pipeline, kafka, host=host, port=port) as server:
            if announce is not None:
                announce(server.url)
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
