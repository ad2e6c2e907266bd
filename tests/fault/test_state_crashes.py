"""Counts survive crashes: a worker SIGKILLed mid-stream, twice, and started again gives every
record exactly the count an uninterrupted run gives it - redelivered records are not counted
again (the rule remembers what it counted, and its state comes back from the changelog), and
none is lost. At-least-once on both brokers (a redelivered record's decision may be written
twice, with the same count); exactly-once on Apache Kafka (each decision once). Run with
``-s`` for the figures."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from broker_fixtures import ensure_topics
from harness import read_outcomes
from state_helpers import (
    StateWorker,
    count_rule,  # noqa: F401 - the fixture
    counts,
    ranks,
    records,
    stateful_pipeline,
)

from stream_engine.runtime.cluster.topics import pipeline_topics

#: Records in all (published over about 10 s), and the decisions read before each SIGKILL.
TOTAL, KILLS_AT = 800, (200, 450)

pytestmark = pytest.mark.usefixtures("count_rule")


async def _publish_paced(client, published, per_round: int = 25, every_s: float = 0.3) -> None:
    """Publish while the workers run (and die), a round at a time."""
    for start in range(0, len(published), per_round):
        await client.publish_many(published[start : start + per_round])
        await asyncio.sleep(every_s)


async def _killed_twice(pipeline, broker, kafka, client_for, tmp_path, committed: bool):
    """Run the counting pipeline through two SIGKILLs; returns (records, outcomes, seconds)."""
    topics = pipeline_topics(pipeline)
    await ensure_topics(pipeline, kafka)
    path = pipeline.effective.path
    workers = [StateWorker(path, broker, tmp_path / "worker-0.log")]
    published = records(accounts=25, per_account=TOTAL // 25)
    started = time.monotonic()
    try:
        await asyncio.to_thread(workers[0].wait_ready)
        client = await client_for(pipeline)
        publishing = asyncio.ensure_future(_publish_paced(client, published))
        for threshold in KILLS_AT:
            await read_outcomes(kafka, topics, threshold, 120, quiet_s=0, committed=committed)
            workers[-1].kill()
            workers.append(StateWorker(path, broker, tmp_path / f"worker-{len(workers)}.log"))
        await publishing
        outcomes = await read_outcomes(
            kafka, topics, len(published), 180, quiet_s=2, committed=committed
        )
    finally:
        for worker in workers:
            worker.kill()
    return published, outcomes, time.monotonic() - started


def _judge(published, outcomes, label: str, seconds: float) -> tuple[dict, int, int]:
    """(counts that differ from an uninterrupted run's, lost, duplicates), printed; fails
    unless the decisions came from more than one worker (a kill was mid-stream)."""
    expected = ranks(published)
    got = counts(outcomes)
    wrong = {rid: c for rid, c in got.items() if set(c) != {expected.get(rid)}}
    lost = len(set(expected) - set(got))
    duplicates = sum(Counter(o.record_id for o in outcomes).values()) - len(got)
    deciders = Counter(o.body["audit"][-1]["worker"] for o in outcomes)
    print(
        f"\n{label}: {len(published)} records, {len(KILLS_AT)} SIGKILLs, wrong counts "
        f"{len(wrong)}, lost {lost}, duplicate decisions {duplicates}, decisions per worker "
        f"{sorted(deciders.values(), reverse=True)}, {seconds:.0f}s"
    )
    assert len(deciders) >= 2, "the stream went on after a kill, on the next worker"
    return wrong, lost, duplicates


async def test_counts_after_two_sigkills_are_those_of_an_uninterrupted_run_at_least_once(
    broker, kafka, tmp_path, client_for
):
    pipeline = stateful_pipeline(tmp_path, broker, input_partitions=1, batch_size=20)
    published, outcomes, seconds = await _killed_twice(
        pipeline, broker, kafka, client_for, tmp_path, committed=False
    )
    wrong, lost, _ = _judge(published, outcomes, "stateful, at-least-once", seconds)
    assert lost == 0
    assert wrong == {}, "every copy of a decision carries its uninterrupted-run count"


async def test_counts_after_two_sigkills_are_exactly_once_and_right_with_transactions(
    broker_kind, broker, kafka, tmp_path, client_for
):
    if broker_kind != "kafka":
        pytest.skip("transactions need Apache Kafka (--broker-kind=kafka)")
    pipeline = stateful_pipeline(
        tmp_path, broker, input_partitions=1, guarantee="exactly_once", batch_size=20
    )
    published, outcomes, seconds = await _killed_twice(
        pipeline, broker, kafka, client_for, tmp_path, committed=True
    )
    wrong, lost, duplicates = _judge(published, outcomes, "stateful, exactly-once", seconds)
    assert lost == 0
    assert duplicates == 0
    assert wrong == {}
