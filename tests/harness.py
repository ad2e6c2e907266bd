"""Helpers for the integration suite: reading outcomes back from the output topics, sample
records, and ``stream-engine run`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.cluster.topic_names import TopicNames

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class Outcome:
    """Where one record ended: the topic kind, its status and deciding stage."""

    kind: str  # decisions | rejected | review | dlq
    record_id: str
    status: str
    stage: str
    failed_rules: dict[str, list[str]]
    body: dict[str, Any]
    headers: dict[str, str]
    key: str


def outcome_of(kind: str, message: Any) -> Outcome:
    """An output message as an ``Outcome`` (dead letters from their headers)."""
    headers = {k: v.decode("utf-8", "replace") for k, v in (message.headers or [])}
    key = (message.key or b"").decode("utf-8", "replace")
    if kind == "dlq":
        record_id = headers.get("dlq.record_id") or key
        return Outcome(kind, record_id, "dead_letter", headers["dlq.stage"], {}, {}, headers, key)
    body = orjson.loads(message.value)
    return Outcome(
        kind,
        body["record_id"],
        body["status"],
        body["decided_by_stage"],
        body.get("failed_rules", {}),
        body,
        headers,
        key,
    )


async def read_outcomes(
    kafka: KafkaSettings,
    topics: TopicNames,
    expected: int,
    timeout_s: float = 60.0,
    quiet_s: float = 1.0,
    strict: bool = True,
    committed: bool = False,
) -> list[Outcome]:
    """Every message on the four output topics, from the start, until ``expected`` messages
    arrived and the topics stayed quiet for ``quiet_s`` (so extra duplicates are seen too).
    Past the deadline: AssertionError, or with ``strict=False`` what arrived. ``committed``:
    read only committed transactions (what exactly-once consumers see)."""
    import asyncio

    kinds = {topics.for_output(k): k for k in ("decisions", "rejected", "review", "dlq")}
    consumer = AIOKafkaConsumer(
        *kinds,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed" if committed else "read_uncommitted",
    )
    await consumer.start()
    found: list[Outcome] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    quiet_since: float | None = None
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=2000)
            for messages in batch.values():
                found.extend(outcome_of(kinds[m.topic], m) for m in messages)
            if quiet_s == 0 and len(found) >= expected:
                return found
            if batch:
                quiet_since = None
            elif len(found) >= expected:
                quiet_since = quiet_since or loop.time()
                if loop.time() - quiet_since >= quiet_s:
                    return found
    finally:
        await consumer.stop()
    if not strict:
        return found  # the caller says what is missing
    raise AssertionError(f"only {len(found)} of {expected} outcomes within {timeout_s}s")


def by_id(outcomes: list[Outcome]) -> dict[str, Outcome]:
    """The first outcome of each record id."""
    first: dict[str, Outcome] = {}
    for outcome in outcomes:
        first.setdefault(outcome.record_id, outcome)
    return first


def samples(base: str = "customer_onboarding") -> list[dict[str, Any]]:
    """The example's sample records."""
    path = CONFIGS / "samples" / f"{base}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class WorkerProcess:
    """A ``stream-engine`` command in a subprocess (``run`` by default), for signal tests;
    ready once it prints ``ready_marker``."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        ready_marker: bytes = b"running:",
        program: Sequence[str] = ("-m", "stream_engine"),
    ) -> None:
        self.log = log
        self.ready_marker = ready_marker
        self.handle = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, *program, *args],
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @classmethod
    def run(cls, config: Path, broker: str, *extra: str, log: Path) -> WorkerProcess:
        """``stream-engine run CONFIG --broker B --metrics-port 0 ...``."""
        args = ["run", str(config), "--broker", broker, "--metrics-port", "0", *extra]
        return cls(args, log)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready_marker in self.log.read_bytes():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"worker not ready in {timeout_s}s:\n{self.log.read_text()}")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self.handle.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.handle.close()


async def offline_decisions(pipeline: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Decisions by record id from the in-process engine, for comparison."""
    from stream_engine.offline import OfflineEvaluator

    evaluator = OfflineEvaluator(pipeline)
    return {d["record_id"]: d async for d in evaluator.decisions(records)}


def numbered(count: int) -> list[dict[str, Any]]:
    """``count`` onboarding sample applications, each with its own id."""
    base = samples()
    return [
        base[i % len(base)] | {"application_id": f"{base[i % len(base)]['application_id']}-{i}"}
        for i in range(count)
    ]
