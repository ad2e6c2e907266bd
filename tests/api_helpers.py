"""Helpers of the HTTP API tests: a tiny two-stage pipeline written for a test, the API's
answers polled with a deadline, the input topic's end offsets (what was published), the API's
own metrics, and ``stream-engine serve`` in a subprocess (``ApiProcess``)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from broker_fixtures import FAST_RUNTIME, set_path
from harness import WorkerProcess
from prometheus_client.parser import text_string_to_metric_families

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.cluster.topics import describe_topics

#: A record that passes both stages (approved), one that fails the first (rejected), and one
#: the second stage's service cannot answer (100 / 0): a dead letter at the later stage.
APPROVED = {"amount": 5, "divisor": 2}
REJECTED = {"amount": 5000, "divisor": 2}
DEAD_LETTER = {"amount": 5, "divisor": 0}
#: Approved too, but its second stage waits ``SLOW_MS`` for a slow service first.
SLOW = {"amount": 5, "divisor": 2, "slow": True}
SLOW_MS = 1000

#: Two stages: ``check`` rejects amounts over 1000; ``score`` asks a simulated service, whose
#: answer is an error for a divisor of 0 (the rule's on_error: dead_letter), and a slow one for
#: records marked ``slow``. One record a batch, so a slow record holds back none decided
#: before it. Small limits, so each refusal is cheap to provoke.
TINY: dict[str, Any] = {
    "input": {
        "key_field": "id",
        "schema": {
            "type": "object",
            "required": ["id", "amount"],
            "properties": {"amount": {"type": "number"}},
        },
        "limits": {"max_depth": 4},
    },
    "services": {
        "scorer": {
            "class": "SimulatedService",
            "params": {"seed": 1, "fields": {"ratio": "100 / int(request.divisor)"}},
        },
        "slow": {
            "class": "SimulatedService",
            "params": {"latency_ms": SLOW_MS, "fields": {"ok": "true"}},
            "timeout_s": 10,
        },
    },
    "stages": {
        "check": {
            "rules": {
                "small_amount": {
                    "class": "CrossFieldCheck",
                    "params": {"expr": "data.amount <= 1000"},
                }
            }
        },
        "score": {
            "rules": {
                "scored": {
                    "class": "ServiceCheck",
                    "params": {
                        "service": "scorer",
                        "request_fields": ["divisor"],
                        "pass_when": "response.ratio >= 1",
                    },
                },
                "delay": {
                    "class": "ServiceCheck",
                    "when": "has(data.slow)",
                    "params": {"service": "slow", "request_fields": ["id"]},
                },
            }
        },
    },
    "api": {
        "anonymous": True,
        "port": 0,
        "max_records": 5,
        "max_body_bytes": 8192,
        "timeout_ms": 10_000,
        "access_log": False,
    },
}
#: Each record at most this many bytes (under api.max_body_bytes, so the record is refused,
#: not the body).
MAX_MESSAGE_BYTES = 2048

_counter = itertools.count()


def tiny_pipeline(directory: Path, broker: str, **changes: Any) -> CompiledPipeline:
    """``TINY`` under a fresh name (its own topics and groups) with ``dotted__path=value``
    changes (``None`` removes the member), written to ``directory`` and loaded."""
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["pipeline"] = f"api{next(_counter)}_{uuid.uuid4().hex[:6]}"
    data["kafka"] = {"bootstrap_servers": broker}
    data["runtime"] = {**FAST_RUNTIME, "max_message_bytes": MAX_MESSAGE_BYTES, "batch_size": 1}
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        if value is None:
            node = data
            for part in parents:
                node = node[part]
            node.pop(last, None)
        else:
            set_path(data, ".".join([*parents, last]), value)
    path = directory / f"{data['pipeline']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_pipeline(path)


async def until(
    check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0, every_s: float = 0.05
) -> Any:
    """The first truthy result of ``check()``, polled until the deadline (AssertionError)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s}s: last {result!r}")
        await asyncio.sleep(every_s)


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    """GET ``url``: the status and the JSON body."""
    async with session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def decision_of(
    session: aiohttp.ClientSession, base: str, record_id: str, timeout_s: float = 30.0
) -> dict[str, Any]:
    """``GET /v1/decisions/{record_id}`` until it answers 200 (it is 404 until decided)."""

    async def found() -> dict[str, Any] | None:
        status, body = await get_json(session, f"{base}/v1/decisions/{record_id}")
        assert status in (200, 404), (status, body)
        return body if status == 200 else None

    result: dict[str, Any] = await until(found, timeout_s)
    return result


async def wait_ready(session: aiohttp.ClientSession, base: str, timeout_s: float = 30.0) -> None:
    """Until ``/ready`` answers 200 (the view rebuilt, the producer connected)."""

    async def ready() -> bool:
        try:
            status, _ = await get_json(session, f"{base}/ready")
        except aiohttp.ClientConnectionError:
            return False
        return status == 200

    await until(ready, timeout_s)


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """Each partition's end offset as the broker lists it: unchanged while nothing is
    published. (Tansu lists the last record batch's base offset + 1, so after a batch of
    several records it lists less than the true end; it still moves with every append.)"""
    count = (await describe_topics([topic], kafka))[topic] or 0
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(count)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples (``name`` as exposed, e.g. ``..._total``) whose labels
    include ``labels``, from Prometheus text."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def api_metric(session: aiohttp.ClientSession, base: str, name: str, **labels: str) -> float:
    """One of an API process's metrics from its ``/metrics``."""
    async with session.get(f"{base}/metrics") as response:
        return metric(await response.text(), name, **labels)


_API_LINE = re.compile(rb"api: (https?://\S+)")


class ApiProcess(WorkerProcess):
    """``stream-engine serve CONFIG --broker B --api-port 0`` in a subprocess; ``url`` is
    read from its ``api: URL`` line."""

    @classmethod
    def serve(cls, config: Path, broker: str, *extra: str, log: Path) -> ApiProcess:
        args = ["serve", str(config), "--broker", broker, "--api-port", "0", *extra]
        return cls(args, log, ready_marker=b"api: ")

    @property
    def url(self) -> str:
        """The URL the process printed (after ``wait_ready``)."""
        found = _API_LINE.search(self.log.read_bytes())
        if found is None:
            raise AssertionError(f"no 'api: URL' line:\n{self.log.read_text()}")
        return found.group(1).decode()

    def wait_listening(self, timeout_s: float = 60.0) -> str:
        """Until it prints its URL; returns the URL."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _API_LINE.search(self.log.read_bytes()):
                return self.url
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"serve not listening in {timeout_s}s:\n{self.log.read_text()}")
