"""The hostile corpus: bytes that are not records, records past every limit, values that
provoke slow paths (backtracking patterns, huge conversions, long comprehensions, thousands of
PII values), values JSON cannot carry, and forged envelopes written straight to a stage topic -
published between the good records of a sample run to a real ``stream-engine run`` worker.

Every hostile message gets a dead letter with its reason, no forged envelope is decided, every
good record is decided as the offline engine decides it, the worker never stops, and its
``/health`` answers within a second throughout."""

from __future__ import annotations

import asyncio
import random
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from harness import by_id, offline_decisions, read_outcomes, samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.integrity import EnvelopeAuth, envelope_auth

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "application_id", "name", "email", "phone", "address", "city", "state", "zip_code",
    "date_of_birth", "ssn", "annual_income", "occupation", "declared_monthly_debt",
]  # fmt: skip

#: Rules that a crafted value could once hold for seconds: a backtracking pattern, an int()
#: of thousands of digits, matches(), a comprehension, a value JSON cannot carry.
SLOW_PATH_RULES = {
    "stages__data_quality__rules__name_words": {
        "class": "Regex",
        "params": {"field": "name", "pattern": "^([a-zA-Z]+ ?)+$", "missing": "skip"},
        "on_fail": "continue",
    },
    "stages__data_quality__rules__big_number": {
        "class": "RequiredFields",
        "params": {"fields": ["application_id"]},
        "when": "has(data.n) && int(data.n) > 5",
    },
    "stages__data_quality__rules__code_shape": {
        "class": "RequiredFields",
        "params": {"fields": ["application_id"]},
        "when": "has(data.code) && data.code.matches('^([a-z]+ ?)+$')",
    },
    "stages__data_quality__rules__many_items": {
        "class": "RequiredFields",
        "params": {"fields": ["application_id"]},
        "when": "has(data.items) && data.items.map(x, x * 2).filter(y, y > 3).size() > 0",
    },
    "stages__preprocessing__rules__raw_bytes": {
        "class": "DerivedField",
        "params": {"field": "raw_bytes", "expr": "bytes(data.raw)"},
        "when": "has(data.raw)",
    },
}


def corpus(count: int) -> list[dict]:
    """Records made by hypothesis: the onboarding fields with arbitrary JSON values."""
    found: list[dict] = []

    @settings(max_examples=count, database=None, suppress_health_check=list(HealthCheck))
    @given(st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS[1:], JSON)))
    def collect(record: dict) -> None:
        found.append(record)

    collect()
    return [r | {"application_id": f"GEN-{i}"} for i, r in enumerate(found)]


def wrong_types(base: dict) -> list[dict]:
    """One record per field with a value of the wrong type, and one with all of them wrong."""
    odd = [12345, ["a", "b"], {"nested": True}, True, -1.5e308, None]
    records = [
        base | {"application_id": f"WRONG-{field}", field: odd[i % len(odd)]}
        for i, field in enumerate(FIELDS[1:])
    ]
    records.append(
        {f: odd[i % len(odd)] for i, f in enumerate(FIELDS[1:])} | {"application_id": "WRONG-ALL"}
    )
    return records


UNICODE = [
    "\u202eevil\u202c Smith",  # right-to-left override
    "Zoë\u200b Ångström",  # zero-width space, combining marks
    "李小龍",
    "🦄 Unicorn 🚀",
    "nul\x00byte",
    "a" * 10_000,
]


def slow_path_records(base: dict) -> list[tuple[dict, str]]:
    """(record, expected dead-letter reason or '' when any outcome will do)."""
    return [
        (base | {"application_id": "SLOW-REGEX", "name": "a" * 27 + "!"}, ""),
        (base | {"application_id": "SLOW-INT", "n": "9" * 5000}, "rule_error"),
        (base | {"application_id": "SLOW-MATCHES", "code": "ab " * 9000 + "!"}, ""),
        (base | {"application_id": "SLOW-ITEMS", "items": list(range(10_000))}, ""),
        (base | {"application_id": "SSN-MANY", "ssn": [f"{i:09d}" for i in range(9_000)]}, ""),
        (base | {"application_id": "NOT-JSON", "raw": "abc"}, "rule_error"),
    ]


def deep(key: str, levels: int) -> bytes:
    return f'{{"application_id": "{key}", "x": '.encode() + b"[" * levels + b"]" * levels + b"}"


def raw_messages() -> list[tuple[str, bytes, str]]:
    """(key, value, expected dead-letter reason) for input that is not a record to run."""
    rng = random.Random(7)
    huge = orjson.dumps({"application_id": "HUGE-VALUE", "notes": "x" * 5_000_000})
    return [
        ("RANDOM-BYTES", bytes(rng.getrandbits(8) for _ in range(512)), "decode_error"),
        ("DEEP-10000", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "decode_error"),
        ("DEEP-253", deep("DEEP-253", 252), "limit_exceeded"),
        ("DEEP-300", deep("DEEP-300", 299), "limit_exceeded"),
        ("DEEP-1022", deep("DEEP-1022", 1021), "limit_exceeded"),
        ("HUGE-VALUE", huge, "too_large"),
        ("LONG-STRING", orjson.dumps({"application_id": "LONG-STRING", "notes": "y" * 70_000}),
         "limit_exceeded"),
        ("MANY-ITEMS", orjson.dumps({"application_id": "MANY-ITEMS", "l": list(range(20_000))}),
         "limit_exceeded"),
        ("LATIN1", '{"application_id": "LATIN1", "name": "Zoë"}'.encode("latin-1"), "decode_error"),
        ("EMPTY", b"", "decode_error"),
        ("ARRAY", b"[1, 2, 3]", "decode_error"),
        ("BIGINT", b'{"application_id": "BIGINT", "annual_income": 1' + b"0" * 400 + b"}",
         "decode_error"),
        ("TWICE", b'{"application_id": "TWICE", "annual_income": 1, "annual_income": 9}',
         "decode_error"),
    ]  # fmt: skip


def forgeries(
    envelope: dict, topics: Any, genuine: EnvelopeAuth
) -> list[tuple[str, str, bytes, list]]:
    """(record id, topic, value, headers) of envelopes a producer could write to stage topics:
    unsigned, signed with a guessed key, and a genuine compliance envelope moved past
    compliance to business_rules."""
    business = topics.stage_inputs["business_rules"]
    compliance = topics.stage_inputs["compliance"]
    out = []
    for record_id, how in (("FORGED-UNSIGNED", "none"), ("FORGED-GUESSED", "guess"),
                           ("FORGED-MOVED", "moved")):  # fmt: skip
        body = orjson.dumps(envelope | {"record_id": record_id})
        if how == "none":
            headers: list = []
        elif how == "guess":
            headers = EnvelopeAuth({"k1": b"password" * 4}, "k1").seal(business, body, [])
        else:
            headers = genuine.seal(compliance, body, [])
        out.append((record_id, business, body, headers))
    return out


def forged_envelope(pipeline: Any, record: dict) -> dict:
    """An envelope claiming data quality and compliance passed, sanctions included."""
    passed = {"outcome": "PASS", "message": "clear", "details": {}, "duration_ms": 1.0,
              "attempts": 1, "cost": 0.0}  # fmt: skip
    results = {
        spec.rule_id: passed | {"stage": stage.name}
        for stage in pipeline.plan.stages[:3]
        for spec in stage.rules
    }
    return {
        "record_id": "FORGED", "pipeline": pipeline.plan.name,
        "config_version": pipeline.plan.version, "config_hash": pipeline.plan.config_hash,
        "data": record, "results": results,
        "audit": [{"stage": s.name, "started_at": "2026-01-01T00:00:00+00:00",
                   "duration_ms": 1.0, "route": "forward", "worker": "trusted:1"}
                  for s in pipeline.plan.stages[:3]],
        "cost": {"total": 0.0, "by_rule": {}},
        "source": {"topic": "x", "partition": 0, "offset": 0, "timestamp": 1},
    }  # fmt: skip


class HealthWatch:
    """Polls ``/health`` every 200 ms with a 1 s timeout; keeps every answer's latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                started = time.perf_counter()
                try:
                    async with session.get(self.url) as response:
                        await response.read()
                        if response.status != 200:
                            self.failures.append(f"status {response.status}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.failures.append(f"{type(exc).__name__} after "
                                         f"{time.perf_counter() - started:.2f}s")  # fmt: skip
                self.latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.2)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._poll())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def metrics_url(log: Path) -> str:
    found = re.search(r"metrics: (http://\S+)/metrics", log.read_text())
    assert found, log.read_text()
    return found.group(1)


async def test_hostile_input_never_stops_the_worker_nor_gets_a_forged_envelope_decided(
    make_pipeline, kafka, worker_process, client_for
):
    pipeline = make_pipeline(**SLOW_PATH_RULES)
    topics = pipeline_topics(pipeline)
    good = samples()
    decided = await offline_decisions(make_pipeline(**SLOW_PATH_RULES), good)
    approved = next(r for r in good if decided[r["application_id"]]["status"] == "approved")
    odd_names = [approved | {"application_id": f"UNI-{i}", "name": name}
                 for i, name in enumerate(UNICODE)]  # fmt: skip
    slow = slow_path_records(approved)
    hostile = [*wrong_types(approved), *odd_names, *corpus(100), *(r for r, _ in slow)]
    raw = raw_messages()
    keys = envelope_auth(pipeline)
    assert keys is not None
    forged = forgeries(forged_envelope(pipeline, approved), topics, keys)

    from broker_fixtures import ensure_topics

    await ensure_topics(pipeline, kafka)
    worker = worker_process(pipeline.effective.path)
    await asyncio.to_thread(worker.wait_ready)
    health = HealthWatch(metrics_url(worker.log) + "/health")
    health.start()
    client = await client_for(pipeline)
    producer = AIOKafkaProducer(**kafka.producer())
    await producer.start()
    try:
        # Hostile messages between good records, so a stuck stage would hold good ones back.
        queue, raw_queue, forged_queue = list(hostile), list(raw), list(forged)
        for index, record in enumerate(good):
            await client.publish(record)
            if index % 2 == 0 and queue:
                await client.publish(queue.pop())
            if index % 20 == 0 and raw_queue:
                key, value, _ = raw_queue.pop()
                await client.publish(value, key=key)
            if index % 50 == 0 and forged_queue:
                record_id, topic, value, headers = forged_queue.pop()
                await producer.send_and_wait(topic, value, key=record_id.encode(),
                                             headers=headers)  # fmt: skip
        assert not raw_queue, "every raw message sits among good ones"
        assert not forged_queue, "every forged envelope sits among good ones"
        await client.publish_many(queue)
        expected = len(good) + len(hostile) + len(raw) + len(forged)
        found = await read_outcomes(kafka, topics, expected, 240, strict=False)
    finally:
        await producer.stop()
        await health.stop()
    outcomes = by_id(found)

    assert worker.process.poll() is None, "the worker is still running"
    log = worker.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "stopped by an internal error" not in log, log[-3000:]
    ids = [r["application_id"] for r in (*good, *hostile)] + [k for k, _, _ in raw]
    missing = [i for i in ids if i not in outcomes]
    assert missing == [], f"{len(missing)} records without an outcome; worker log:\n{log[-3000:]}"
    for record in good:
        got, want = outcomes[record["application_id"]], decided[record["application_id"]]
        assert (got.status, got.stage) == (want["status"], want["decided_by_stage"])
    for key, _, reason in raw:
        assert outcomes[key].headers.get("dlq.reason") == reason, key
    for record, reason in slow:
        if reason:
            assert outcomes[record["application_id"]].headers.get("dlq.reason") == reason
    for record_id, *_ in forged:
        dead = [o for o in found if o.key == record_id]
        assert [o.kind for o in dead] == ["dlq"], f"{record_id} must only be dead-lettered"
        assert dead[0].headers["dlq.reason"] == "integrity"
    slowest = max(health.latencies)
    print(f"\nhostile corpus: {expected} messages, /health polled {len(health.latencies)} "
          f"times, slowest {slowest * 1000:.0f} ms, failures {len(health.failures)}")  # fmt: skip
    assert health.failures == [], health.failures
    assert slowest < 1.0
