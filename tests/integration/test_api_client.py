"""``HttpClient`` (async) and ``SyncHttpClient`` against a real API server in front of the
pipeline's stages on the shared broker: decisions, batches, the 202-then-poll flow, publish
only, a missing decision, and refusals as ``ApiError`` with their problem details. The sync
client runs in a thread (the server shares the test's event loop)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from api_server_setup import API_KEY, APPROVED, DECIDED_MS, READ_KEY, REJECTED, fresh, serving

from stream_engine import ApiError, HttpClient, SyncHttpClient
from stream_engine.api.server import ApiServer
from stream_engine.http_client import ApiConnectionError

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ApiServer]:
    async with serving(tmp_path_factory.mktemp("api_client"), broker) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(api: ApiServer) -> AsyncIterator[HttpClient]:
    async with HttpClient(api.url, api_key=API_KEY) as http:
        yield http


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_decide_returns_the_decision_of_one_record(client):
    decision = await client.decide(fresh(APPROVED), timeout_ms=DECIDED_MS)
    assert decision["status"] == "approved"
    assert decision["decided_by_stage"] == "post_processing"


async def test_decide_on_a_list_returns_every_decision_in_order(client):
    records = [fresh(REJECTED), fresh(APPROVED)]
    answer = await client.decide(records, timeout_ms=DECIDED_MS)
    assert [d["record_id"] for d in answer["decisions"]] == [r["application_id"] for r in records]
    assert [d["status"] for d in answer["decisions"]] == ["rejected", "approved"]


async def test_a_decide_past_its_timeout_is_pending_and_waiting_polls_the_decision(client):
    record = fresh(APPROVED)
    pending = await client.decide(record, timeout_ms=1)
    assert pending == {
        "status": "pending",
        "record_id": record["application_id"],
        "href": f"/v1/decisions/{record['application_id']}",
    }
    decision = await client.wait(pending["record_id"], timeout_s=30)
    assert (decision["record_id"], decision["status"]) == (record["application_id"], "approved")


async def test_submit_returns_the_links_and_the_decisions_can_be_read_later(client):
    one, many = fresh(REJECTED), [fresh(REJECTED), fresh(APPROVED)]
    link = await client.submit(one)
    links = await client.submit(many)
    assert link["record_id"] == one["application_id"]
    assert [x["record_id"] for x in links] == [r["application_id"] for r in many]
    decided = [await client.wait(r["application_id"], timeout_s=30) for r in (one, *many)]
    assert [d["status"] for d in decided] == ["rejected", "rejected", "approved"]


async def test_the_decision_of_an_unknown_record_is_none(client):
    assert await client.decision("API-never-sent/with a slash") is None


async def test_a_refused_record_raises_an_api_error_with_the_problem_details(client):
    with pytest.raises(ApiError) as refused:
        await client.decide(fresh(APPROVED) | {"annual_income": -5})
    error = refused.value
    assert (error.status, error.kind) == (422, "schema-invalid")
    assert error.type == "https://stream-engine.dev/problems/schema-invalid"
    assert error.title == "A record fails the input schema"
    assert "annual_income" in error.detail


async def test_a_refused_batch_names_each_bad_record_in_errors(client):
    with pytest.raises(ApiError) as refused:
        await client.submit([fresh(APPROVED), {"name": "No Id"}, fresh(REJECTED)])
    assert refused.value.status == 422
    assert [(e["pointer"], e["kind"]) for e in refused.value.errors] == [
        ("/records/1", "missing-key-field")
    ]


async def test_a_key_without_the_scope_raises_a_403_api_error(api):
    async with HttpClient(api.url, api_key=READ_KEY) as reader:
        with pytest.raises(ApiError) as refused:
            await reader.submit(fresh(APPROVED))
        assert (refused.value.status, refused.value.kind) == (403, "forbidden")
        assert await reader.decision("API-never-sent") is None


async def test_a_wrong_base_url_is_an_api_error_not_a_missing_decision(api):
    async with HttpClient(api.url + "/nowhere", api_key=API_KEY) as lost:
        with pytest.raises(ApiError) as refused:
            await lost.decision("API-1")
    assert refused.value.status == 404


async def test_ready_is_true_when_the_api_serves_and_an_absent_server_is_a_connection_error(
    client,
):
    assert await client.ready() is True
    async with HttpClient(f"http://127.0.0.1:{closed_port()}", timeout_s=5) as absent:
        with pytest.raises(ApiConnectionError):
            await absent.ready()


def sync_session(url: str) -> dict[str, object]:
    """Everything the sync client does, on one kept-alive connection."""
    seen: dict[str, object] = {}
    with SyncHttpClient(url, api_key=API_KEY) as api:
        seen["ready"] = api.ready()
        sock = api._connection.sock if api._connection else None
        record = fresh(APPROVED)
        seen["decided"] = api.decide(record, timeout_ms=DECIDED_MS)["status"]
        seen["pending"] = api.decide(fresh(APPROVED), timeout_ms=1)["status"]
        link = api.submit(fresh(REJECTED))
        seen["waited"] = api.wait(link["record_id"], timeout_s=30)["status"]
        seen["missing"] = api.decision("API-never-sent")
        seen["one_connection"] = api._connection is not None and api._connection.sock is sock
        try:
            api.decide({"name": "No Id"})
        except ApiError as exc:
            seen["refused"] = (exc.status, exc.kind)
    return seen


async def test_the_sync_client_does_the_same_on_one_kept_alive_connection(api):
    seen = await asyncio.to_thread(sync_session, api.url)
    assert seen == {
        "ready": True,
        "decided": "approved",
        "pending": "pending",
        "waited": "rejected",
        "missing": None,
        "one_connection": True,
        "refused": (422, "missing-key-field"),
    }
