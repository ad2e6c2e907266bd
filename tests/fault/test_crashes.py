"""The fault suite on Apache Kafka: workers killed mid-run and a broker outage lose nothing.

Each test prints its figures (records, kills or outage, lost, duplicates) - run with ``-s`` to
see them; the README's reliability section quotes them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from broker_fixtures import ensure_topics
from harness import numbered, read_outcomes

from stream_engine.runtime.cluster.topics import pipeline_topics

BATCH = 200


@pytest.fixture
def apache_kafka(broker_kind, broker_server):
    if broker_kind != "kafka":
        pytest.skip("the fault suite runs on Apache Kafka (--broker-kind=kafka)")
    return broker_server


def tally(outcomes, records) -> tuple[int, int]:
    """(lost, duplicates) of ``records`` among ``outcomes``."""
    ids = Counter(o.record_id for o in outcomes)
    wanted = {r["application_id"] for r in records}
    lost = len(wanted - set(ids))
    return lost, sum(ids.values()) - len(ids)


async def one_worker_publishing(pipeline, count, kafka, client_for, worker_process):
    """Topics made, one worker started and ready, then ``count`` numbered records published:
    returns the worker, the records and when publishing began (time.monotonic)."""
    records = numbered(count)
    await ensure_topics(pipeline, kafka)
    worker = worker_process(pipeline.effective.path)
    await asyncio.to_thread(worker.wait_ready)
    client = await client_for(pipeline)
    started = time.monotonic()
    await client.publish_many(records)
    return worker, records, started


async def kill_at(thresholds, worker, worker_process, pipeline, kafka, committed=False) -> int:
    """SIGKILL the worker each time the outputs reach the next threshold, and start a new one
    on the same config; returns the number of kills."""
    topics = pipeline_topics(pipeline)
    for threshold in thresholds:
        await read_outcomes(kafka, topics, threshold, 300, quiet_s=0, committed=committed)
        worker.kill()
        worker = worker_process(pipeline.effective.path)
    return len(thresholds)


async def test_a_worker_killed_three_times_during_20000_records_loses_nothing(
    apache_kafka, make_pipeline, kafka, client_for, worker_process
):
    pipeline = make_pipeline(runtime__batch_size=BATCH)
    topics = pipeline_topics(pipeline)
    worker, records, started = await one_worker_publishing(
        pipeline, 20_000, kafka, client_for, worker_process
    )
    kills = await kill_at((3_000, 8_000, 13_000), worker, worker_process, pipeline, kafka)
    outcomes = await read_outcomes(kafka, topics, len(records), 600)
    lost, duplicates = tally(outcomes, records)

    print(
        f"\nreliability: {len(records)} records, {kills} SIGKILLs, lost {lost}, "
        f"duplicates {duplicates}, {time.monotonic() - started:.0f}s"
    )
    assert lost == 0
    stages, partitions = len(pipeline.plan.active_stages), 4
    assert duplicates <= kills * BATCH * stages * partitions, "bounded by the batches in flight"


async def test_a_20_second_broker_outage_mid_run_loses_nothing(
    apache_kafka, make_pipeline, kafka, client_for, worker_process
):
    pipeline = make_pipeline(runtime__batch_size=BATCH)
    topics = pipeline_topics(pipeline)
    worker, records, _ = await one_worker_publishing(
        pipeline, 5_000, kafka, client_for, worker_process
    )
    await read_outcomes(kafka, topics, 1_000, 300, quiet_s=0)
    await asyncio.to_thread(apache_kafka.stop)
    await asyncio.sleep(20)  # the outage itself is the scenario
    await asyncio.to_thread(apache_kafka.start)
    outcomes = await read_outcomes(kafka, topics, len(records), 600)
    lost, duplicates = tally(outcomes, records)

    print(f"\nreliability: {len(records)} records, broker down 20s, lost {lost}, "
          f"duplicates {duplicates}")  # fmt: skip
    assert lost == 0
    assert worker.process.poll() is None, "the worker recovered by itself"
