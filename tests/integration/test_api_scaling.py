"""Two API processes serving one pipeline: ``stream-engine serve`` twice and one
``stream-engine run`` worker, as a deployment runs them. Every decide call gets its own record's
decision from the process it called, though both processes read every output partition, and
each process counts exactly the calls it was sent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
from api_helpers import (
    APPROVED,
    DEAD_LETTER,
    REJECTED,
    ApiProcess,
    api_metric,
    get_json,
    tiny_pipeline,
    wait_ready,
)
from broker_fixtures import ensure_topics

#: Decide calls fired at each process at once.
CALLS = 20
KINDS = [(APPROVED, "approved"), (REJECTED, "rejected"), (DEAD_LETTER, "dead_letter")]


async def test_two_api_processes_each_answer_their_own_decide_calls_with_their_own_decisions(
    broker, kafka, tmp_path, worker_process
):
    pipeline = tiny_pipeline(tmp_path, broker, runtime__batch_size=50)
    config = pipeline.effective.path
    await ensure_topics(pipeline, kafka)
    worker = worker_process(config)
    apis = [ApiProcess.serve(config, broker, log=tmp_path / f"api{i}.log") for i in range(2)]
    try:
        urls = await asyncio.gather(*(asyncio.to_thread(a.wait_listening) for a in apis))
        await asyncio.to_thread(worker.wait_ready)
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(wait_ready(session, url) for url in urls))
            sent = {url: [_record(url, i) for i in range(CALLS)] for url in urls}
            answers = await asyncio.gather(
                *(_decide(session, url, one) for url in urls for one, _ in sent[url])
            )
            counts = [
                await api_metric(session, url, "stream_engine_api_requests_total",
                                 route="/v1/decide", code="200")
                for url in urls
            ]  # fmt: skip
            published = [
                await api_metric(session, url, "stream_engine_api_records_published_total",
                                 route="/v1/decide")
                for url in urls
            ]  # fmt: skip
            left, right = urls
            crossed = [
                await get_json(session, f"{right}/v1/decisions/{one['id']}")
                for one, _ in sent[left][:3]
            ]
    finally:
        for api in apis:
            api.kill()

    expected = [(one["id"], status) for url in urls for one, status in sent[url]]
    assert [(s, b["record_id"], b["status"]) for s, b in answers] == [
        (200, record_id, status) for record_id, status in expected
    ], "each call answered 200 with the decision of the record it sent"
    traces = [b["trace"] for _, b in answers]
    assert len(set(traces)) == len(traces), "no two calls answered with one submission"
    assert counts == [CALLS, CALLS]
    assert published == [CALLS, CALLS]
    assert [(s, b["record_id"]) for s, b in crossed] == [
        (200, one["id"]) for one, _ in sent[left][:3]
    ], "either process answers GET for a decision the other waited for"


def _record(url: str, index: int) -> tuple[dict[str, Any], str]:
    kind, status = KINDS[index % len(KINDS)]
    return {"id": f"scale-{uuid.uuid4().hex[:8]}-{index}", **kind}, status


async def _decide(
    session: aiohttp.ClientSession, url: str, record: dict[str, Any]
) -> tuple[int, Any]:
    async with session.post(f"{url}/v1/decide?timeout_ms=20000", json=record) as response:
        return response.status, await response.json(content_type=None)
