"""Connection settings for every Kafka client stream_engine makes (aiokafka and faust), from
the config's ``kafka:`` section, overridden by ``--broker`` and ``STREAM_ENGINE_*`` variables.
The password is kept out of every repr, log line and message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from stream_engine.config.models import KafkaConfig
from stream_engine.errors import BrokerError
from stream_engine.runtime.cluster.client_logs import redact_client_logs

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

C = TypeVar("C")

ENV_PREFIX = "STREAM_ENGINE_"
#: The largest message any stream_engine client produces or fetches. Topics may allow up to
#: this (``max_message_bytes``); records over ``runtime.max_message_bytes`` are dead-lettered.
MAX_TRANSPORT_BYTES = 16 * 1024 * 1024
#: How long a client waits for the cluster to answer when it starts (its bootstrap, which
#: aiokafka would give ``request_timeout_ms``, 40 s, per server) before the command gives up.
CONNECT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and how to authenticate."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    client_id: str = "stream-engine"
    #: ``read_committed`` for pipelines that write in transactions (exactly_once).
    isolation_level: str = "read_uncommitted"

    @classmethod
    def resolve(
        cls,
        config: KafkaConfig | None = None,
        broker: str | None = None,
        environ: Mapping[str, str] | None = None,
        read_committed: bool = False,
    ) -> KafkaSettings:
        """Config, then ``STREAM_ENGINE_BROKER`` (and friends), then ``--broker``; consumers
        read only committed transactions with ``read_committed``."""
        env = os.environ if environ is None else environ
        config = config or KafkaConfig()
        password = config.sasl_password.get_secret_value() if config.sasl_password else None

        def pick(name: str, value: str | None) -> str | None:
            return env.get(ENV_PREFIX + name) or value

        return cls(
            bootstrap_servers=broker or pick("BROKER", config.bootstrap_servers) or "",
            security_protocol=pick("SECURITY_PROTOCOL", config.security_protocol) or "PLAINTEXT",
            sasl_mechanism=pick("SASL_MECHANISM", config.sasl_mechanism),
            sasl_username=pick("SASL_USERNAME", config.sasl_username),
            sasl_password=pick("SASL_PASSWORD", password),
            ssl_cafile=pick("SSL_CAFILE", config.ssl_cafile),
            client_id=config.client_id or "stream-engine",
            isolation_level="read_committed" if read_committed else "read_uncommitted",
        )

    @classmethod
    def for_pipeline(cls, pipeline: CompiledPipeline, broker: str | None = None) -> KafkaSettings:
        """A pipeline's settings; its consumers read only committed transactions when its
        stages write in them (exactly_once)."""
        exactly_once = pipeline.config.runtime.processing_guarantee == "exactly_once"
        return cls.resolve(pipeline.config.kafka, broker, read_committed=exactly_once)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context for SSL and SASL_SSL, trusting ``ssl_cafile`` when given."""
        if "SSL" not in self.security_protocol:
            return None
        return ssl.create_default_context(cafile=self.ssl_cafile)

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def consumer(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for an aiokafka consumer of output or dead-letter topics."""
        return {**self.aiokafka(), "isolation_level": self.isolation_level, **extra}

    def producer(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for an aiokafka producer: acks=all, no idempotence (the embedded
        broker refuses it), requests up to ``MAX_TRANSPORT_BYTES``."""
        return {
            **self.aiokafka(),
            "acks": "all",
            "enable_idempotence": False,
            "max_request_size": MAX_TRANSPORT_BYTES,
            **extra,
        }

    def describe(self) -> str:
        """A one-line description that is safe to print (no password)."""
        text = f"{self.bootstrap_servers} ({self.security_protocol}"
        if self.sasl_mechanism or self.security_protocol.startswith("SASL"):
            text += f", {self.sasl_mechanism or 'PLAIN'} as {self.sasl_username or '?'}"
        return text + ")"


@contextlib.asynccontextmanager
async def connected(
    client: C, kafka: KafkaSettings, timeout_s: float = CONNECT_TIMEOUT_S
) -> AsyncIterator[C]:
    """Start an aiokafka client within ``timeout_s``, always close it, and report Kafka
    failures as one ``BrokerError`` naming the cluster (never the password)."""
    try:
        await _start(client, kafka, timeout_s)
        yield client
    except KafkaError as exc:
        raise BrokerError(f"broker {kafka.describe()}: {exc}") from None
    finally:
        close = getattr(client, "stop", None) or client.close  # type: ignore[attr-defined]
        await close()


async def _start(client: Any, kafka: KafkaSettings, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except TimeoutError:
        raise unreachable(kafka, f"no answer within {timeout_s:g}s") from None
    except KafkaConnectionError:
        raise unreachable(kafka, "cannot connect to any bootstrap server") from None


def unreachable(kafka: KafkaSettings, why: str) -> BrokerError:
    """The one-line error of a cluster that does not answer."""
    return BrokerError(f"broker {kafka.describe()}: {why}; is it running and reachable?")


async def reach(kafka: KafkaSettings, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in one line within ``timeout_s`` when the cluster does not answer (a metadata round
    trip), before clients that would wait longer - or forever - are started."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka(), request_timeout_ms=int(timeout_s * 1000))
    async with connected(admin, kafka, timeout_s):
        pass


class _BootstrapNoise(logging.Filter):
    """Drops aiokafka's line per bootstrap server it cannot reach: the command reports an
    unreachable cluster itself, in one line (``-v`` keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(
            ('Unable connect to "', 'Unable to request metadata from "')
        )


_NOISE = _BootstrapNoise()


def quiet_libraries(verbose: bool = False) -> None:
    """faust and aiokafka log a lot at INFO; keep their warnings, drop the chatter (and, unless
    ``verbose``, aiokafka's bootstrap failures, which ``connected`` reports); never the
    contents of messages at any level (``redact_client_logs``)."""
    redact_client_logs()
    for name in ("faust", "aiokafka", "mode", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    clients = logging.getLogger("aiokafka")
    if verbose:
        clients.removeFilter(_NOISE)
    else:
        clients.addFilter(_NOISE)
