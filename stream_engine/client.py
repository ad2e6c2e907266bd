"""A small async client for applications: publish records to a pipeline's input topic and
iterate the decisions that come out (approved/completed, rejected, review, dead letters). An
application that talks to the HTTP API instead uses ``HttpClient`` or ``SyncHttpClient``
(``http_client.py``, re-exported here).

    async with Client("configs/customer_onboarding.yaml", broker="127.0.0.1:9092") as client:
        await client.publish({"customer_id": "C-1", ...})
        async for decision in client.decisions(from_beginning=True):
            print(decision["record_id"], decision["status"])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.core.outcome import OutputKind
from stream_engine.errors import ConfigError, StreamEngineError
from stream_engine.http_client import ApiConnectionError, ApiError, HttpClient, SyncHttpClient
from stream_engine.runtime.cluster.settings import KafkaSettings, connected
from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.codec import record_key
from stream_engine.runtime.stage.integrity import EnvelopeAuth, envelope_auth
from stream_engine.runtime.tools.topic_io import as_json

log = logging.getLogger(__name__)

#: The output topics ``decisions`` reads by default: every kind, by its text.
OUTPUTS: tuple[str, ...] = tuple(kind.value for kind in OutputKind)


class Client:
    """Publishes to one pipeline and reads its output topics. Use as an async context manager;
    the producer waits for acks=all, so a returned ``publish`` is on the broker."""

    def __init__(
        self,
        pipeline: CompiledPipeline | str | Path,
        broker: str | None = None,
        environment: str | None = None,
    ) -> None:
        if not isinstance(pipeline, CompiledPipeline):
            from stream_engine.pipeline import load_pipeline

            pipeline = load_pipeline(pipeline, environment)
        self.pipeline = pipeline
        self.kafka = KafkaSettings.for_pipeline(pipeline, broker)
        self.topics: TopicNames = pipeline_topics(pipeline)
        #: Verifies what the output topics carry, when this client has the pipeline's keys.
        self.auth: EnvelopeAuth | None = None
        with contextlib.suppress(ConfigError):
            self.auth = envelope_auth(pipeline)
        #: Messages left out because they were not written by the pipeline's workers.
        self.refused = 0
        self._stack = contextlib.AsyncExitStack()
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Client:
        producer = AIOKafkaProducer(**self.kafka.producer(linger_ms=5))
        self._producer = await self._stack.enter_async_context(connected(producer, self.kafka))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._producer = None
        await self._stack.aclose()

    def _encode(self, record: Mapping[str, Any] | bytes) -> bytes:
        return record if isinstance(record, bytes) else orjson.dumps(record)

    async def publish(self, record: Mapping[str, Any] | bytes, key: str | None = None) -> None:
        """Send one record (a JSON object, or raw bytes as they are) and wait for the broker.
        The key defaults to the record's id field."""
        await self.publish_many([record], key)

    async def publish_many(
        self, records: Iterable[Mapping[str, Any] | bytes], key: str | None = None
    ) -> int:
        """Send records and wait until the broker acknowledged all of them; returns the count."""
        if self._producer is None:
            raise StreamEngineError("use the client as 'async with Client(...) as client'")
        field = self.pipeline.plan.key_field
        pending = []
        for record in records:
            value = self._encode(record)
            kafka_key = key.encode() if key is not None else record_key(value, field)
            pending.append(await self._producer.send(self.topics.input, value, key=kafka_key))
        for future in pending:
            await future
        return len(pending)

    async def decisions(
        self,
        outputs: Sequence[str] = OUTPUTS,
        from_beginning: bool = False,
        group_id: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Messages of the chosen output topics as JSON objects (dead letters with their
        headers), until the caller stops iterating. Without ``group_id`` no offsets are kept;
        with one, the group's committed position is used and advanced. With the pipeline's
        envelope keys, a message the workers did not write is left out (``refused``)."""
        unknown = [o for o in outputs if o not in OUTPUTS]
        if unknown:
            raise StreamEngineError(f"unknown output(s) {unknown}; choose from {list(OUTPUTS)}")
        consumer = AIOKafkaConsumer(
            *(self.topics.for_output(o) for o in outputs),
            **self.kafka.consumer(),
            group_id=group_id,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=group_id is not None,
        )
        async with connected(consumer, self.kafka):
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for messages in batch.values():
                    for message in messages:
                        if self._authentic(message):
                            yield as_json(message)

    def _authentic(self, message: Any) -> bool:
        """Whether a worker of the pipeline wrote ``message`` (always, without keys: then
        nothing can be checked)."""
        if self.auth is None:
            return True
        headers = list(message.headers or [])
        problem = self.auth.verify(
            message.topic, message.value or b"", headers, bind=message.topic == self.topics.dlq
        )
        if problem is None:
            return True
        self.refused += 1
        log.warning(
            "left out %s[%d]@%d: %s", message.topic, message.partition, message.offset, problem
        )
        return False

    async def wait_for(
        self,
        record_ids: Iterable[str],
        timeout_s: float = 30.0,
        outputs: Sequence[str] = OUTPUTS,
    ) -> dict[str, dict[str, Any]]:
        """The first outcome of each record id, read from the start of the output topics;
        raises ``TimeoutError`` naming what is missing when the deadline passes."""
        wanted = set(record_ids)
        found: dict[str, dict[str, Any]] = {}

        async def collect() -> None:
            async for message in self.decisions(outputs, from_beginning=True):
                record_id = message.get("record_id") or message.get("key")
                if record_id in wanted and record_id not in found:
                    found[record_id] = message
                    if len(found) == len(wanted):
                        return

        try:
            await asyncio.wait_for(collect(), timeout_s)
        except TimeoutError:
            missing = sorted(wanted - set(found))
            raise TimeoutError(
                f"{len(missing)} record(s) without an outcome after {timeout_s}s: {missing[:10]}"
            ) from None
        return found


__all__ = [
    "OUTPUTS", "ApiConnectionError", "ApiError", "Client", "HttpClient", "SyncHttpClient",
]  # fmt: skip
