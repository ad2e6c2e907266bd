"""Known SSNs and dates of birth go through a running worker: none appears in its log lines,
its metrics, the audit entries, the dead-letter headers, or - with mask_decisions - the
decisions."""

from __future__ import annotations

import asyncio
import re
import urllib.request

from broker_fixtures import ensure_topics
from harness import read_outcomes, samples

from stream_engine.runtime.cluster.topics import pipeline_topics


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def test_known_ssns_and_birth_dates_never_leave_a_worker_unmasked(
    make_pipeline, kafka, client_for, worker_process
):
    pipeline = make_pipeline(
        pii={"mode": "mask", "mask_decisions": True},
        services__kyc__params__fail_rate=0.5,
        services__kyc__retry={"attempts": 1},
        services__kyc__circuit_breaker={"failure_threshold": 10_000, "reset_timeout_s": 1},
    )
    records = [r for r in samples() if r.get("ssn") and r.get("date_of_birth")][:60]
    secrets = {r["ssn"] for r in records} | {r["date_of_birth"] for r in records}
    await ensure_topics(pipeline, kafka)
    worker = worker_process(pipeline.effective.path, "--verbose")
    await asyncio.to_thread(worker.wait_ready)
    url = re.search(r"metrics: (http://\S+)", worker.log.read_text()).group(1)
    client = await client_for(pipeline)

    await client.publish_many(records)
    outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records))
    metrics = await asyncio.to_thread(scrape, url)
    log = worker.log.read_text()

    assert any(o.kind == "dlq" for o in outcomes), "some records are dead-lettered"
    assert any(o.kind == "decisions" for o in outcomes)
    leaks = []
    for outcome in outcomes:
        text = str(outcome.body) + str(outcome.headers)
        leaks += [(outcome.record_id, s) for s in secrets if s in text]
    assert leaks == [], "decisions, audit entries and dead-letter headers are masked"
    assert [s for s in secrets if s in metrics] == []
    assert [s for s in secrets if s in log] == []
    masked = next(o for o in outcomes if o.kind == "decisions").body["data"]["ssn"]
    assert masked.startswith("*")
