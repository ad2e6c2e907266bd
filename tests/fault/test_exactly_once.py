"""Exactly-once on Apache Kafka: with ``processing_guarantee: exactly_once`` a worker killed
three times mid-run, or workers joining and leaving mid-run, leave every record id exactly
once on the output topics (as read_committed consumers see them). Run with ``-s`` for the
figures."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from harness import read_outcomes
from test_crashes import kill_at, one_worker_publishing, tally

from stream_engine.runtime.cluster.topics import pipeline_topics


@pytest.fixture
def transactional(broker_kind, driver):
    if broker_kind != "kafka":
        pytest.skip("transactions need Apache Kafka (--broker-kind=kafka)")
    if driver != "batch":
        pytest.skip("exactly_once is a mode of the batch driver")


async def test_exactly_once_keeps_each_record_once_through_three_sigkills(
    transactional, make_pipeline, kafka, client_for, worker_process
):
    pipeline = make_pipeline(runtime__batch_size=200, runtime__processing_guarantee="exactly_once")
    topics = pipeline_topics(pipeline)
    worker, records, started = await one_worker_publishing(
        pipeline, 10_000, kafka, client_for, worker_process
    )
    kills = await kill_at((1_500, 4_000, 7_000), worker, worker_process, pipeline, kafka, True)
    outcomes = await read_outcomes(kafka, topics, len(records), 600, quiet_s=3, committed=True)
    lost, duplicates = tally(outcomes, records)

    print(
        f"\nexactly-once: {len(records)} records, {kills} SIGKILLs, lost {lost}, "
        f"duplicates {duplicates}, {time.monotonic() - started:.0f}s"
    )
    assert lost == 0
    assert duplicates == 0


async def test_exactly_once_keeps_each_record_once_while_workers_join_and_leave(
    transactional, make_pipeline, kafka, client_for, worker_process
):
    """Live rebalances under load: partitions move between running workers with batches in
    flight (two join, then two leave with SIGTERM), rather than after a crash."""
    pipeline = make_pipeline(runtime__batch_size=200, runtime__processing_guarantee="exactly_once")
    topics = pipeline_topics(pipeline)
    first, records, started = await one_worker_publishing(
        pipeline, 10_000, kafka, client_for, worker_process
    )

    async def reached(count: int) -> None:
        await read_outcomes(kafka, topics, count, 300, quiet_s=0, committed=True)

    await reached(1_500)
    second = worker_process(pipeline.effective.path)
    await reached(3_500)
    third = worker_process(pipeline.effective.path)
    await reached(5_500)
    first.signal(signal.SIGTERM)
    await reached(7_500)
    second.signal(signal.SIGTERM)
    outcomes = await read_outcomes(kafka, topics, len(records), 600, quiet_s=3, committed=True)
    codes = [await asyncio.to_thread(w.wait, 60) for w in (first, second)]
    third.kill()
    lost, duplicates = tally(outcomes, records)
    workers = {entry["worker"] for outcome in outcomes for entry in outcome.body.get("audit", [])}

    print(
        f"\nexactly-once, 2 joins and 2 leaves: {len(records)} records, lost {lost}, "
        f"duplicates {duplicates}, {len(workers)} workers did stages, "
        f"{time.monotonic() - started:.0f}s"
    )
    assert codes == [0, 0], first.log.read_text()[-2000:] + second.log.read_text()[-2000:]
    assert len(workers) == 3, "the partitions moved between all three workers"
    assert lost == 0
    assert duplicates == 0
