"""Every answer of a real API server - in front of the pipeline's stages on the shared broker -
is what its OpenAPI document promises: each status is documented for its operation, with that
content type, the headers it requires, and a body valid under the schema the document gives
(its ``components`` resolved as a registry). Bodies the tests send as valid are checked against
the request schema too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from api_server_setup import (
    API_KEY,
    APPROVED,
    DECIDED_MS,
    MAX_BODY_BYTES,
    MAX_RECORDS,
    READ_KEY,
    REJECTED,
    fresh,
    serving,
)
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from stream_engine.api.problems import TYPE_BASE
from stream_engine.api.server import ApiServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = "urn:stream-engine:openapi"
DECIDE, RECORDS, DECISION = "/v1/decide", "/v1/records", "/v1/decisions/{record_id}"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@dataclass
class Answer:
    """One response as the tests saw it."""

    status: int
    content_type: str
    headers: Any
    body: Any


class Contract:
    """Checks requests and responses against one OpenAPI document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource: Resource[Any] = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(BASE, resource)

    def _errors(self, pointer: list[str], instance: Any) -> list[str]:
        ref = f"{BASE}#/" + "/".join(_escape(part) for part in pointer)
        validator = Draft202012Validator({"$ref": ref}, registry=self.registry)
        errors = validator.iter_errors(instance)
        return [f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors]

    def request(self, route: str, body: Any) -> None:
        """A body the test sends expecting it accepted matches the operation's request body."""
        pointer = ["paths", route, "post", "requestBody", "content", "application/json", "schema"]
        errors = self._errors(pointer, body)
        assert not errors, f"request to {route} outside its schema: {errors}"

    def response(self, route: str, method: str, answer: Answer) -> None:
        """The status, content type, required headers and body are the ones documented."""
        responses = self.doc["paths"][route][method]["responses"]
        code = str(answer.status)
        assert code in responses, f"{method.upper()} {route}: {code} is not documented"
        documented = responses[code]
        assert answer.content_type in documented["content"], (route, code, answer.content_type)
        for name, header in documented.get("headers", {}).items():
            if header.get("required"):
                assert name in answer.headers, f"{route} {code}: no {name} header"
        pointer = ["paths", route, method, "responses", code, "content", answer.content_type]
        errors = self._errors([*pointer, "schema"], answer.body)
        assert not errors, f"{method.upper()} {route} {code} outside its schema: {errors}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ApiServer]:
    async with serving(tmp_path_factory.mktemp("api_contract"), broker) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def contract(api: ApiServer, http: aiohttp.ClientSession) -> Contract:
    """The document the server itself serves (valid OpenAPI 3.1)."""
    async with http.get(api.url + "/v1/openapi.json") as response:
        assert response.status == 200
        doc = await response.json()
    validate(doc)
    return Contract(doc)


async def send(
    api: ApiServer,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    key: str | None = API_KEY,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request; the body parsed as JSON when the answer says it is JSON."""
    sent = dict(headers or {})
    if key is not None:
        sent["X-API-Key"] = key
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    async with http.request(method, api.url + path, data=data, headers=sent) as response:
        content = await response.read()
        kind = response.content_type
        parsed = orjson.loads(content) if kind.endswith("json") else content.decode()
        return Answer(response.status, kind, response.headers, parsed)


async def decided(
    api: ApiServer, http: aiohttp.ClientSession, contract: Contract, body: Any
) -> Answer:
    """A decide call that waits long enough to be decided, both sides checked."""
    contract.request(DECIDE, body)
    answer = await send(api, http, "POST", f"{DECIDE}?timeout_ms={DECIDED_MS}", body)
    contract.response(DECIDE, "post", answer)
    return answer


async def poll(
    api: ApiServer, http: aiohttp.ClientSession, contract: Contract, href: str
) -> Answer:
    """GET a decision until it is there (each answer, 404s included, checked)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    while True:
        answer = await send(api, http, "GET", href)
        contract.response(DECISION, "get", answer)
        if answer.status == 200:
            return answer
        assert loop.time() < deadline, f"no decision at {href} within 30s"
        await asyncio.sleep(0.05)


async def test_the_served_document_is_valid_openapi_and_matches_its_own_operation(
    api, http, contract
):
    answer = await send(api, http, "GET", "/v1/openapi.json", key=None)
    contract.response("/v1/openapi.json", "get", answer)
    assert answer.body == contract.doc


async def test_an_approved_decision_is_a_200_decision(api, http, contract):
    answer = await decided(api, http, contract, fresh(APPROVED))
    assert (answer.status, answer.body["status"]) == (200, "approved")


async def test_a_rejected_decision_is_a_200_decision(api, http, contract):
    answer = await decided(api, http, contract, fresh(REJECTED))
    assert (answer.status, answer.body["status"]) == (200, "rejected")
    assert answer.body["failed_rules"] == {"data_quality": ["required_personal_info"]}


async def test_a_batch_decided_in_time_is_a_200_with_every_decision(api, http, contract):
    records = [fresh(APPROVED), fresh(REJECTED)]
    answer = await decided(api, http, contract, {"records": records})
    assert answer.status == 200
    assert [d["status"] for d in answer.body["decisions"]] == ["approved", "rejected"]
    assert answer.body["pending"] == []


async def test_a_decide_past_its_timeout_is_a_202_pending_then_the_decision_is_polled(
    api, http, contract
):
    record = fresh(APPROVED)
    contract.request(DECIDE, record)
    answer = await send(api, http, "POST", f"{DECIDE}?timeout_ms=1", record)
    contract.response(DECIDE, "post", answer)
    assert (answer.status, answer.body["status"]) == (202, "pending")
    assert answer.headers["Location"] == answer.body["href"]
    polled = await poll(api, http, contract, answer.body["href"])
    assert polled.body["record_id"] == record["application_id"]
    assert polled.body["status"] == "approved"


async def test_a_batch_past_its_timeout_is_a_202_with_links_for_the_undecided(api, http, contract):
    records = [fresh(APPROVED), fresh(APPROVED)]
    contract.request(DECIDE, {"records": records})
    answer = await send(api, http, "POST", f"{DECIDE}?timeout_ms=1", {"records": records})
    contract.response(DECIDE, "post", answer)
    assert answer.status == 202
    assert [link["record_id"] for link in answer.body["pending"]] == [
        r["application_id"] for r in records
    ]


async def test_records_submitted_without_waiting_are_a_202_with_their_links(api, http, contract):
    one, batch = fresh(REJECTED), {"records": [fresh(REJECTED), fresh(APPROVED)]}
    for body in (one, batch):
        contract.request(RECORDS, body)
        answer = await send(api, http, "POST", RECORDS, body)
        contract.response(RECORDS, "post", answer)
        assert answer.status == 202
    polled = await poll(api, http, contract, answer.body["accepted"][0]["href"])
    assert polled.body["status"] == "rejected"


async def test_a_record_id_without_a_decision_is_a_404_problem(api, http, contract):
    answer = await send(api, http, "GET", "/v1/decisions/API-never-sent")
    contract.response(DECISION, "get", answer)
    assert (answer.status, answer.body["type"]) == (404, TYPE_BASE + "not-found")


def _big() -> dict[str, Any]:
    return fresh(APPROVED) | {"notes": "x" * MAX_BODY_BYTES}


REFUSALS = [
    pytest.param(DECIDE, b"{not json", {}, API_KEY, 400, "invalid-json", id="invalid-json"),
    pytest.param(DECIDE, b"[1, 2]", {}, API_KEY, 400, "not-an-object", id="not-an-object"),
    pytest.param(
        DECIDE + "?timeout_ms=0", orjson.dumps(fresh(APPROVED)), {}, API_KEY, 400,
        "invalid-parameter", id="invalid-parameter",
    ),
    pytest.param(
        DECIDE, orjson.dumps(fresh(APPROVED)), {"Record-Id": "has space"}, API_KEY, 400,
        "invalid-record-id", id="invalid-record-id",
    ),
    pytest.param(
        DECIDE, orjson.dumps({"records": [fresh(REJECTED)] * (MAX_RECORDS + 1)}), {}, API_KEY,
        413, "too-many-records", id="too-many-records",
    ),
    pytest.param(DECIDE, orjson.dumps(_big()), {}, API_KEY, 413, "too-large", id="too-large"),
    pytest.param(RECORDS, orjson.dumps(_big()), {}, API_KEY, 413, "too-large", id="submit-large"),
    pytest.param(
        DECIDE, orjson.dumps({"name": "No Id"}), {}, API_KEY, 422, "missing-key-field",
        id="missing-key-field",
    ),
    pytest.param(
        RECORDS, orjson.dumps(fresh(APPROVED) | {"annual_income": -1}), {}, API_KEY, 422,
        "schema-invalid", id="schema-invalid",
    ),
    pytest.param(DECIDE, orjson.dumps(fresh(APPROVED)), {}, None, 401, "unauthorized", id="no-key"),
    pytest.param(
        DECIDE, orjson.dumps(fresh(APPROVED)), {}, READ_KEY, 403, "forbidden", id="read-only-key"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("target", "raw", "headers", "key", "status", "kind"), REFUSALS)
async def test_a_refused_request_is_the_documented_problem(
    api, http, contract, target, raw, headers, key, status, kind
):
    answer = await send(api, http, "POST", target, raw=raw, key=key, headers=headers)
    contract.response(target.split("?")[0], "post", answer)
    assert (answer.status, answer.body["type"]) == (status, TYPE_BASE + kind)


async def test_a_batch_with_one_bad_record_is_a_422_naming_it(api, http, contract):
    body = {"records": [fresh(APPROVED), {"name": "No Id"}]}
    answer = await send(api, http, "POST", DECIDE, body)
    contract.response(DECIDE, "post", answer)
    assert answer.status == 422
    assert [(e["pointer"], e["kind"]) for e in answer.body["errors"]] == [
        ("/records/1", "missing-key-field")
    ]


async def test_health_and_ready_answer_as_documented(api, http, contract):
    for route, status in (("/health", "ok"), ("/ready", "ready")):
        answer = await send(api, http, "GET", route, key=None)
        contract.response(route, "get", answer)
        assert (answer.status, answer.body["status"]) == (200, status)


async def test_the_metrics_answer_as_documented(api, http, contract):
    answer = await send(api, http, "GET", "/metrics", key=None)
    contract.response("/metrics", "get", answer)
    assert "stream_engine_api" in answer.body
