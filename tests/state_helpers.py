"""Stateful pipelines for the tests of Kafka-backed state: a test-only rule that counts records
per key (``TestCountPerKey``: the ``count_rule`` fixture registers it for one test, so the
catalogue of rules stays the library's; ``state_worker.py`` for its process), a two-stage
pipeline whose second stage
counts by account, reading the counts back from decisions, writing a changelog directly, and
``stream-engine`` subprocesses that know the test rule (``state_worker.py``)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from harness import Outcome, WorkerProcess
from pydantic import Field

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.core.result import Verdict, passed
from stream_engine.core.rule import RuleContext
from stream_engine.core.stores import encode_entry
from stream_engine.pipeline import load_pipeline
from stream_engine.rules.base import RULES, ConfiguredRule, RuleParams
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.stage.integrity import EnvelopeAuth

RULE = "per_account"
STAGE = "counting"
#: Far beyond any stream time: the test rule's entries never expire.
NEVER_MS = 2**53
WORKER_SCRIPT = Path(__file__).resolve().with_name("state_worker.py")
_counter = itertools.count()


class CountParams(RuleParams):
    key: str = Field(description="The field whose value records are counted by.")


class CountPerKey(ConfiguredRule[CountParams]):
    """Counts records per key. Idempotent by identity: a redelivered record (the same input
    position) gets the count it got the first time, and counts nothing more."""

    Params = CountParams

    def state_key(self) -> tuple[str, ...]:
        return (self.params.key,)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        view = ctx.stores
        assert view is not None, "a stateful rule runs with its stores"
        state = view.state(self.store_name)
        key = str(ctx.data[self.params.key])
        entry = state.get(key) or {"n": 0, "seen": {}}
        count = entry["seen"].get(view.identity)
        if count is None:
            count = entry["n"] + 1
            state.put(key, {"n": count, "seen": {**entry["seen"], view.identity: count}}, NEVER_MS)
        return passed(f"record {count} of its account", count=count)


#: The name the test rule is registered under.
COUNT_RULE = "TestCountPerKey"


def register_count_rule() -> None:
    """Register the test rule for good (a worker subprocess)."""
    RULES.add(COUNT_RULE, CountPerKey)


@pytest.fixture
def count_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test rule, registered for one test."""
    RULES.names()  # entry points first, so nothing registers over it later
    monkeypatch.setitem(RULES._classes, COUNT_RULE, CountPerKey)


def stateful_pipeline(
    directory: Path,
    broker: str,
    input_partitions: int = 4,
    guarantee: str = "at_least_once",
    partitions: int = 4,
    **runtime: Any,
) -> CompiledPipeline:
    """A two-stage pipeline of its own name: ``intake`` (records keyed by ``id``) and
    ``counting``, whose ``per_account`` rule counts records per ``account``; every topic has
    ``partitions`` partitions but the input, ``input_partitions`` (1: each account's records
    reach the counting stage in publishing order, so its counts are known in advance)."""
    name = f"st{next(_counter)}_{uuid.uuid4().hex[:6]}"
    (directory / f"{name}.topics.yaml").write_text(
        yaml.safe_dump(
            {
                "defaults": {"partitions": partitions, "replication_factor": 1},
                "kinds": {"input": {"partitions": input_partitions}},
            }
        )
    )
    data = {
        "pipeline": name,
        "input": {"key_field": "id"},
        "stages": {
            "intake": {"rules": {"has_account": {"class": "RequiredFields",
                                                 "params": {"fields": ["account"]}}}},
            STAGE: {"rules": {RULE: {"class": COUNT_RULE, "params": {"key": "account"}}}},
        },
        "topics": {"file": f"{name}.topics.yaml"},
        "kafka": {"bootstrap_servers": broker},
        "runtime": {
            "session_timeout_s": 3.0,
            "heartbeat_interval_s": 0.5,
            "batch_wait_ms": 20,
            "shutdown_timeout_s": 15.0,
            "processing_guarantee": guarantee,
            **runtime,
        },
    }  # fmt: skip
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_pipeline(path)


def records(accounts: int, per_account: int, prefix: str = "r") -> list[dict[str, Any]]:
    """``per_account`` records for each of ``accounts`` accounts, interleaved."""
    return [
        {"id": f"{prefix}-{round_}-{a}", "account": f"acct-{a}"}
        for round_ in range(per_account)
        for a in range(accounts)
    ]


def counts(outcomes: Iterable[Outcome]) -> dict[str, list[int]]:
    """Each decided record's counts (one per copy of its decision)."""
    out: dict[str, list[int]] = defaultdict(list)
    for outcome in outcomes:
        out[outcome.record_id].append(outcome.body["results"][RULE]["details"]["count"])
    return out


def ranks(published: list[dict[str, Any]], start: int = 0) -> dict[str, int]:
    """The count an uninterrupted run gives each record when each account's records reach the
    counting stage in publishing order: its rank among them (after ``start`` earlier ones)."""
    seen: dict[str, int] = defaultdict(lambda: start)
    out = {}
    for record in published:
        seen[record["account"]] += 1
        out[record["id"]] = seen[record["account"]]
    return out


async def write_changelog(
    kafka: KafkaSettings,
    topic: str,
    entries: Iterable[tuple[str, Any]],
    auth: EnvelopeAuth | None,
) -> int:
    """Write store entries straight into a changelog, each to the partition its key hashes to
    (the partition the counting stage's records of that key arrive on), sealed as a worker
    seals them, in whole batches (fast); returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, max_batch_size=1024 * 1024
    )
    await producer.start()
    written = 0
    try:
        partitions = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        batches = {p: producer.create_batch() for p in partitions}
        sent = []
        for key, value in entries:
            raw, encoded = encode_entry(value, NEVER_MS), key.encode()
            headers = auth.seal(topic, raw, []) if auth is not None else []
            partition = partitioner(encoded, partitions, partitions)
            batch = batches[partition]
            if batch.append(key=encoded, value=raw, timestamp=None, headers=headers) is None:
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=encoded, value=raw, timestamp=None, headers=headers)
            written += 1
        for partition, batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return written


def counted(n: int, identities: Iterable[str]) -> dict[str, Any]:
    """A count rule's entry: ``n`` records counted, the given identities among them."""
    return {"n": n, "seen": {identity: i + 1 for i, identity in enumerate(identities)}}


# -- subprocess workers -------------------------------------------------------------------


class StateWorker(WorkerProcess):
    """``stream-engine run --verbose`` in a subprocess that knows the test rule; with ``gate``
    it waits for that file to exist before it starts (its imports done, so it joins at once)."""

    def __init__(self, config: Path, broker: str, log: Path, gate: Path | None = None) -> None:
        args = ["run", str(config), "--broker", broker, "--metrics-port", "0", "--verbose"]
        program = [str(WORKER_SCRIPT), *(["--gate", str(gate)] if gate is not None else [])]
        super().__init__(args, log, program=program)

    @property
    def url(self) -> str | None:
        """The metrics endpoint's base URL, once the log names it."""
        found = re.search(r"metrics: (http://\S+)/metrics", self.log.read_text())
        return found.group(1) if found else None

    def restoring(self) -> bool:
        """``/ready`` says the worker is restoring state."""
        status, body = self.ready_status()
        return status == 503 and "restoring state" in body

    def ready_status(self) -> tuple[int, str]:
        """``/ready``'s status and body (0 before the endpoint listens)."""
        url = self.url
        if url is None:
            return 0, ""
        try:
            with urllib.request.urlopen(url + "/ready", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on this worker (0 when it has none)."""
        url = self.url
        if url is None:
            return 0.0
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")):
                total += float(line.rsplit(" ", 1)[1])
        return total


def until(predicate: Any, timeout_s: float, what: str, every_s: float = 0.1) -> None:
    """Wait until ``predicate()`` holds, or fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"{what} within {timeout_s}s")


async def read_topic(
    kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 60.0
) -> list[Any]:
    """At least ``expected`` messages of ``topic`` from its beginning (fails past the deadline)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while len(found) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for messages in batch.values():
                found.extend(messages)
    finally:
        await consumer.stop()
    assert len(found) >= expected, f"only {len(found)} of {expected} messages on {topic}"
    return found
