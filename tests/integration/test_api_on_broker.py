"""The HTTP API on a real broker: a real ``ApiServer`` and the pipeline's stages in this
process, called through aiohttp. Each endpoint answers as documented, every refusal is a
problem naming itself and publishes nothing, a late decision is found by GET, a decide call gets
its own submission's decision, and the view rebuilds itself and trusts only signed decisions.

One pipeline, worker and API server are shared by the module (each test uses its own record
ids); tests that need another pipeline or server start their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from api_helpers import (
    APPROVED,
    DEAD_LETTER,
    MAX_MESSAGE_BYTES,
    REJECTED,
    SLOW,
    api_metric,
    decision_of,
    get_json,
    tiny_pipeline,
    until,
    wait_ready,
)
from broker_fixtures import ensure_topics
from state_helpers import read_topic

from stream_engine.api.server import ApiServer, running_api
from stream_engine.config.compiled import CompiledPipeline
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.cluster.topics import describe_topics, pipeline_topics
from stream_engine.runtime.stage.codec import AUTH_HEADER
from stream_engine.runtime.stage.integrity import EnvelopeAuth, envelope_auth
from stream_engine.runtime.worker import StageWorker

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROBLEM = "application/problem+json"
REFUSED = "stream_engine_api_refused_messages_total"


@dataclass
class Stack:
    """The module's pipeline, its worker, its API server and an HTTP session."""

    pipeline: CompiledPipeline
    kafka: KafkaSettings
    topics: TopicNames
    worker: StageWorker
    api: ApiServer
    session: aiohttp.ClientSession
    probe: AIOKafkaConsumer
    inputs: list[TopicPartition]

    async def published(self) -> dict[int, int]:
        """The input topic's end offsets as listed: they move with every record published."""
        ends = await self.probe.end_offsets(self.inputs)
        return {tp.partition: offset for tp, offset in ends.items()}

    @property
    def url(self) -> str:
        return self.api.url

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """POST JSON (or raw bytes as they are): status, parsed body, response."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with self.session.post(f"{self.url}{path}", data=data, headers=headers) as response:
            return response.status, await response.json(content_type=None), response


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    pipeline = tiny_pipeline(tmp_path_factory.mktemp("api"), broker)
    kafka = KafkaSettings(bootstrap_servers=broker)
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    count = (await describe_topics([topics.input], kafka))[topics.input] or 0
    inputs = [TopicPartition(topics.input, p) for p in range(count)]
    worker = StageWorker(pipeline, kafka)
    await worker.start()
    probe = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
    await probe.start()
    try:
        async with running_api(pipeline, kafka) as api, aiohttp.ClientSession() as session:
            await until(_true(worker.ready), 60)
            yield Stack(pipeline, kafka, topics, worker, api, session, probe, inputs)
    finally:
        await probe.stop()
        await worker.stop()


def _true(check: Any) -> Any:
    """A plain predicate as the coroutine function ``until`` polls."""

    async def call() -> Any:
        return check()

    return call


def new_id(prefix: str = "r") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def record(kind: dict[str, Any], record_id: str | None = None) -> dict[str, Any]:
    return {"id": record_id or new_id(), **kind}


# -- the endpoints -------------------------------------------------------------------------


async def test_ready_answers_200_once_the_api_has_started(stack: Stack) -> None:
    status, body = await get_json(stack.session, f"{stack.url}/ready")

    assert (status, body) == (200, {"status": "ready"})


async def test_decide_answers_200_with_the_approved_decision(stack: Stack) -> None:
    sent = record(APPROVED)

    status, body, response = await stack.post("/v1/decide", sent)

    assert status == 200, body
    assert response.content_type == "application/json"
    assert body["record_id"] == sent["id"]
    assert body["status"] == "approved"
    assert body["decided_by_stage"] == "score"
    assert body["data"]["amount"] == sent["amount"]
    assert body["pipeline"] == stack.pipeline.plan.name


async def test_decide_answers_200_with_the_rejected_decision_and_its_reasons(
    stack: Stack,
) -> None:
    sent = record(REJECTED)

    status, body, _ = await stack.post("/v1/decide", sent)

    assert status == 200, body
    assert (body["record_id"], body["status"]) == (sent["id"], "rejected")
    assert body["decided_by_stage"] == "check"
    assert "small_amount" in body["failed_rules"]["check"]


async def test_a_record_dead_lettered_at_a_later_stage_is_answered_200_with_its_reason(
    stack: Stack,
) -> None:
    sent = record(DEAD_LETTER)

    status, body, _ = await stack.post("/v1/decide", sent)

    assert status == 200, body
    assert (body["record_id"], body["status"]) == (sent["id"], "dead_letter")
    assert (body["reason"], body["stage"], body["rule"]) == ("rule_error", "score", "scored")
    assert "division by zero" in body["message"]
    assert body["trace"].startswith("00-"), "the trace of the submission it answers"


async def test_a_batch_decide_answers_every_decision_in_request_order(stack: Stack) -> None:
    sent = [record(DEAD_LETTER), record(APPROVED), record(REJECTED), record(APPROVED)]

    status, body, _ = await stack.post("/v1/decide", {"records": sent})

    assert status == 200, body
    assert body["pending"] == []
    got = [(d["record_id"], d["status"]) for d in body["decisions"]]
    expected = ["dead_letter", "approved", "rejected", "approved"]
    assert got == [(r["id"], s) for r, s in zip(sent, expected, strict=True)]


async def test_records_answers_202_once_the_record_is_on_the_input_topic_then_get_finds_it(
    stack: Stack,
) -> None:
    sent = record(REJECTED)
    before = await stack.published()

    status, body, _ = await stack.post("/v1/records", sent)
    after = await stack.published()

    assert status == 202, body
    href = f"/v1/decisions/{sent['id']}"
    assert body == {"accepted": [{"record_id": sent["id"], "href": href}]}
    assert after != before, "on the broker before the answer"
    messages = await read_topic(stack.kafka, stack.topics.input, sum(after.values()))
    assert [m.key for m in messages].count(sent["id"].encode()) == 1
    decision = await decision_of(stack.session, stack.url, sent["id"])
    assert (decision["record_id"], decision["status"]) == (sent["id"], "rejected")


async def test_a_batch_of_records_is_accepted_in_request_order(stack: Stack) -> None:
    sent = [record(APPROVED), record(REJECTED), record(APPROVED)]

    status, body, _ = await stack.post("/v1/records", {"records": sent})

    assert status == 202, body
    assert [a["record_id"] for a in body["accepted"]] == [r["id"] for r in sent]
    for one in sent:
        assert (await decision_of(stack.session, stack.url, one["id"]))["record_id"] == one["id"]


async def test_get_of_an_unknown_record_id_is_a_404_problem(stack: Stack) -> None:
    async with stack.session.get(f"{stack.url}/v1/decisions/{new_id('unknown')}") as response:
        body = await response.json(content_type=None)

        assert response.status == 404
        assert response.content_type == PROBLEM
    assert body["type"].endswith("/not-found")
    assert body["status"] == 404
    assert "no decision is known" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [("GET", "/v1/decide", 405, "method-not-allowed"), ("GET", "/v2/nothing", 404, "not-found")],
)
async def test_a_wrong_method_or_path_is_a_problem_too(
    stack: Stack, method: str, path: str, status: int, kind: str
) -> None:
    async with stack.session.request(method, f"{stack.url}{path}") as response:
        body = await response.json(content_type=None)

        assert response.status == status
        assert response.content_type == PROBLEM
    assert body["type"].endswith(f"/{kind}")


# -- refusals --------------------------------------------------------------------------------


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"a": node}
    return node


#: (case, body, status, problem kind, words the detail says). Body: bytes as sent, else JSON.
REFUSALS: list[tuple[str, Any, int, str, str]] = [
    ("invalid_json", b'{"id": "x", "amount": ', 400, "invalid-json", "not valid JSON"),
    ("an_empty_body", b"", 400, "invalid-json", "not valid JSON"),
    ("not_an_object", b"[1, 2]", 400, "not-an-object", "JSON array"),
    ("a_string", b'"hello"', 400, "not-an-object", "JSON string"),
    ("body_over_max_body_bytes", {"id": "big", "amount": 1, "pad": "x" * 9000}, 413,
     "too-large", "8192 bytes"),
    ("record_over_max_message_bytes", {"id": "big", "amount": 1, "pad": "x" * 3000}, 413,
     "too-large", f"limit of {MAX_MESSAGE_BYTES}"),
    ("too_many_records", {"records": [{"id": f"m{i}", "amount": 1} for i in range(6)]}, 413,
     "too-many-records", "at most 5"),
    ("no_records", {"records": []}, 400, "not-an-object", "no record"),
    ("failing_the_input_schema", {"id": "s", "amount": "lots"}, 422, "schema-invalid",
     "amount"),
    ("missing_the_key_field", {"amount": 1}, 422, "missing-key-field", "'id'"),
    ("past_the_depth_limit", {"id": "d", "amount": 1, "x": _deep(5)}, 422, "limit-exceeded",
     "nested deeper than 4 levels"),
    ("a_batch_with_one_bad_record",
     {"records": [{"id": "ok1", "amount": 1}, {"id": "bad", "amount": "x"},
                  {"id": "ok2", "amount": 2}]},
     422, "schema-invalid", "1 of 3 records refused; nothing was published"),
]  # fmt: skip


@pytest.mark.parametrize("path", ["/v1/decide", "/v1/records"])
@pytest.mark.parametrize(
    ("body", "status", "kind", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSALS],
)
async def test_a_refused_request_is_a_problem_naming_it_and_publishes_nothing(
    stack: Stack, path: str, body: Any, status: int, kind: str, words: str
) -> None:
    before = await stack.published()

    got, problem, response = await stack.post(path, body)
    after = await stack.published()

    assert got == status, problem
    assert response.content_type == PROBLEM
    assert problem["type"].endswith(f"/{kind}")
    assert problem["status"] == status
    assert problem["title"]
    assert words in problem["detail"]
    assert after == before, "nothing published for a refused request"


async def test_a_batch_refusal_points_at_each_bad_record(stack: Stack) -> None:
    bad = {"records": [{"id": "a", "amount": "x"}, {"id": "b", "amount": 1}, {"amount": 2}]}

    status, problem, _ = await stack.post("/v1/decide", bad)

    assert status == 422
    pointers = [(e["pointer"], e["kind"]) for e in problem["errors"]]
    assert pointers == [("/records/0", "schema-invalid"), ("/records/2", "missing-key-field")]


@pytest.mark.parametrize("timeout_ms", ["abc", "0", "-5", "1.5", "30001", ""])
async def test_a_bad_timeout_ms_is_a_400_problem_and_publishes_nothing(
    stack: Stack, timeout_ms: str
) -> None:
    before = await stack.published()

    status, problem, response = await stack.post(
        f"/v1/decide?timeout_ms={timeout_ms}", record(APPROVED)
    )
    after = await stack.published()

    assert status == 400, problem
    assert response.content_type == PROBLEM
    assert problem["type"].endswith("/invalid-parameter")
    assert "timeout_ms must be a whole number" in problem["detail"]
    assert after == before


# -- late and repeated decisions -------------------------------------------------------------


async def test_a_decide_that_times_out_answers_202_with_location_and_get_then_finds_it(
    stack: Stack,
) -> None:
    sent = record(APPROVED)

    status, body, response = await stack.post("/v1/decide?timeout_ms=1", sent)

    href = f"/v1/decisions/{sent['id']}"
    assert status == 202, body
    assert body == {"status": "pending", "record_id": sent["id"], "href": href}
    assert response.headers["Location"] == href
    decision = await decision_of(stack.session, stack.url, sent["id"])
    assert (decision["record_id"], decision["status"]) == (sent["id"], "approved")
    assert await api_metric(stack.session, stack.url, "stream_engine_api_decide_timeouts_total")
    waiting = await api_metric(stack.session, stack.url, "stream_engine_api_pending_decides")
    assert waiting == 0, "the late call stopped waiting"


async def test_a_batch_decide_that_times_out_answers_202_with_links_to_every_record(
    stack: Stack,
) -> None:
    sent = [record(APPROVED), record(REJECTED)]

    status, body, _ = await stack.post("/v1/decide?timeout_ms=1", {"records": sent})

    assert status == 202, body
    assert body["decisions"] == []
    assert [p["record_id"] for p in body["pending"]] == [r["id"] for r in sent]
    for one, want in zip(sent, ["approved", "rejected"], strict=True):
        assert (await decision_of(stack.session, stack.url, one["id"]))["status"] == want


async def test_a_decide_for_a_record_id_already_decided_returns_the_new_submissions_decision(
    stack: Stack,
) -> None:
    record_id = new_id("again")
    first, old, _ = await stack.post("/v1/decide", record(REJECTED, record_id))

    status, new, _ = await stack.post("/v1/decide", record(APPROVED, record_id))

    assert (first, old["status"]) == (200, "rejected")
    assert status == 200, new
    assert new["status"] == "approved"
    assert new["trace"] != old["trace"]
    latest = await decision_of(stack.session, stack.url, record_id)
    assert latest["trace"] == new["trace"], "GET gives the latest decision"


@pytest.mark.parametrize("older", [REJECTED, DEAD_LETTER], ids=["rejected", "dead_letter"])
async def test_a_decide_outrun_by_an_older_submission_of_its_id_gets_its_own_decision(
    stack: Stack, older: dict[str, Any]
) -> None:
    record_id = new_id("race")
    accepted, _, _ = await stack.post("/v1/records", record(older, record_id))

    # The new submission is slow: the older one's answer comes while the decide waits.
    status, body, _ = await stack.post("/v1/decide", record(SLOW, record_id))

    assert accepted == 202
    assert status == 200, body
    assert (body["record_id"], body["status"]) == (record_id, "approved")
    assert body["results"]["delay"]["outcome"] == "PASS"


async def test_a_batch_with_one_record_id_twice_answers_each_submission_with_its_own_decision(
    stack: Stack,
) -> None:
    record_id = new_id("twice")
    sent = [record(REJECTED, record_id), record(APPROVED, record_id)]

    status, body, _ = await stack.post("/v1/decide", {"records": sent})

    assert status == 200, body
    got = [(d["record_id"], d["status"]) for d in body["decisions"]]
    assert got == [(record_id, "rejected"), (record_id, "approved")]


@pytest.mark.parametrize("record_id", ["acct/7 é", "50%?#&", "12345"])
async def test_a_record_id_that_needs_quoting_is_found_at_the_location_the_api_gave(
    stack: Stack, record_id: str
) -> None:
    sent = {"id": int(record_id) if record_id.isdigit() else record_id, **APPROVED}

    status, body, response = await stack.post("/v1/decide?timeout_ms=1", sent)

    assert status == 202, body
    assert body["record_id"] == record_id

    async def found() -> Any:
        got, answer = await get_json(stack.session, f"{stack.url}{response.headers['Location']}")
        return answer if got == 200 else None

    decision = await until(found)
    assert (decision["record_id"], decision["status"]) == (record_id, "approved")


async def test_a_traceparent_given_by_the_caller_carries_its_trace_id_to_the_decision(
    stack: Stack,
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{'ab' * 8}-01"

    status, body, _ = await stack.post(
        "/v1/decide", record(APPROVED), headers={"traceparent": traceparent}
    )

    assert status == 200, body
    assert body["trace"].split("-")[1] == trace_id


# -- generated ids, the view on start, forged decisions ------------------------------------


async def test_a_pipeline_without_key_field_returns_a_generated_record_id_that_its_decision_has(
    stack: Stack, tmp_path: Any
) -> None:
    pipeline = tiny_pipeline(tmp_path, stack.kafka.bootstrap_servers, input__key_field=None,
                             input__schema__required=["amount"])  # fmt: skip
    await ensure_topics(pipeline, stack.kafka)
    worker = StageWorker(pipeline, stack.kafka)
    await worker.start()
    try:
        async with running_api(pipeline, stack.kafka) as api:
            await until(_true(worker.ready), 60)
            base = api.url
            async with stack.session.post(f"{base}/v1/decide", json=APPROVED) as response:
                decided = await response.json()
                assert response.status == 200, decided
            async with stack.session.post(f"{base}/v1/records", json=REJECTED) as response:
                accepted = await response.json()
                assert response.status == 202, accepted
            given = new_id("given")
            headers = {"Record-Id": given}
            async with stack.session.post(
                f"{base}/v1/decide", json=APPROVED, headers=headers
            ) as response:
                named = await response.json()
            async with stack.session.post(
                f"{base}/v1/decide", json=APPROVED, headers={"Record-Id": "has spaces"}
            ) as response:
                refused = (response.status, (await response.json())["type"])
            generated = accepted["accepted"][0]["record_id"]
            polled = await decision_of(stack.session, base, generated)
    finally:
        await worker.stop()

    assert decided["record_id"].startswith("rec-")
    assert decided["status"] == "approved"
    assert generated.startswith("rec-")
    assert generated != decided["record_id"]
    assert (polled["record_id"], polled["status"]) == (generated, "rejected")
    assert (named["record_id"], named["status"]) == (given, "approved")
    assert refused[0] == 400
    assert refused[1].endswith("/invalid-record-id")


async def test_a_new_api_server_rebuilds_its_view_and_answers_get_for_earlier_decisions(
    stack: Stack,
) -> None:
    sent = [record(APPROVED), record(REJECTED), record(DEAD_LETTER)]
    status, body, _ = await stack.post("/v1/decide", {"records": sent})
    assert status == 200, body

    async with running_api(stack.pipeline, stack.kafka) as fresh:
        await wait_ready(stack.session, fresh.url)
        answers = [
            await get_json(stack.session, f"{fresh.url}/v1/decisions/{r['id']}") for r in sent
        ]

    assert [(s, b["record_id"], b["status"]) for s, b in answers] == [
        (200, r["id"], want)
        for r, want in zip(sent, ["approved", "rejected", "dead_letter"], strict=True)
    ]


def _forgery(topic: str, record_id: str, how: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A decision nobody decided, as someone who can write the topic would forge it."""
    value = orjson.dumps({
        "record_id": record_id, "status": "approved", "decided_at": "2030-01-01T00:00:00Z",
        "decided_by_stage": "score", "reasons": [], "failed_rules": {}, "results": {},
        "data": {"id": record_id}, "audit": [], "cost": {"total": 0.0},
    })  # fmt: skip
    if how == "unsigned":
        return value, []
    if how == "another_key":
        other = EnvelopeAuth({"test": b"f0" * 32}, "test")
        return value, [(AUTH_HEADER, other.tag(topic, value))]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["unsigned", "another_key", "signed_for_another_topic"])
async def test_a_forged_decision_on_the_decisions_topic_is_not_served_and_is_counted(
    stack: Stack, how: str
) -> None:
    from aiokafka import AIOKafkaProducer

    record_id = new_id("forged")
    topic = stack.topics.for_output("decisions")
    if how == "signed_for_another_topic":
        value, _ = _forgery(topic, record_id, "unsigned")
        auth = envelope_auth(stack.pipeline)
        assert auth is not None
        headers = [(AUTH_HEADER, auth.tag(stack.topics.for_output("rejected"), value))]
    else:
        value, headers = _forgery(topic, record_id, how)
    refused = await api_metric(stack.session, stack.url, REFUSED, topic=topic)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=record_id.encode(), headers=headers)
    finally:
        await producer.stop()

    async def counted() -> bool:
        now = await api_metric(stack.session, stack.url, REFUSED, topic=topic)
        return now == refused + 1

    await until(counted, 30)
    status, body = await get_json(stack.session, f"{stack.url}/v1/decisions/{record_id}")

    assert status == 404, body
