"""Workers come and go without losing records: a graceful stop commits what it finished, a
killed worker's uncommitted batches are consumed again after a restart, and processes running
the same stage split its partitions."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

from broker_fixtures import ensure_topics
from harness import by_id, numbered, read_outcomes

from stream_engine.runtime.agents import StageWorker
from stream_engine.runtime.processor import StageProcessor
from stream_engine.runtime.topics import pipeline_topics


async def wait_for_outcomes(kafka, pipeline, at_least: int, timeout_s: float = 60.0) -> None:
    """Return as soon as ``at_least`` outcomes are on the output topics."""
    await read_outcomes(kafka, pipeline_topics(pipeline), at_least, timeout_s, quiet_s=0)


async def test_sigterm_finishes_in_flight_work_and_exits_zero_and_a_new_worker_finishes_the_rest(
    make_pipeline, kafka, client_for, worker_process
):
    pipeline = make_pipeline(runtime__batch_size=50)
    records = numbered(10_000)
    await ensure_topics(pipeline, kafka)
    first = worker_process(pipeline.effective.path)
    await asyncio.to_thread(first.wait_ready)
    client = await client_for(pipeline)

    await client.publish_many(records)
    await wait_for_outcomes(kafka, pipeline, 100)
    first.signal(signal.SIGTERM)
    code = await asyncio.to_thread(first.wait, 60)
    done_by_first = len(await read_outcomes(kafka, pipeline_topics(pipeline), 0))
    second = worker_process(pipeline.effective.path)
    outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records), 120)
    second.kill()

    assert code == 0, first.log.read_text()
    assert done_by_first < len(records), "the stop came mid-stream"
    assert "stopped" in first.log.read_text()
    ids = Counter(o.record_id for o in outcomes)
    assert set(ids) == {r["application_id"] for r in records}
    assert sum(ids.values()) - len(ids) == 0, "a graceful stop commits all it produced"


async def test_a_worker_killed_mid_stream_loses_nothing_after_a_restart(
    make_pipeline, kafka, client_for, worker_process
):
    batch_size = 50
    pipeline = make_pipeline(runtime__batch_size=batch_size)
    records = numbered(10_000)
    await ensure_topics(pipeline, kafka)
    first = worker_process(pipeline.effective.path)
    await asyncio.to_thread(first.wait_ready)
    client = await client_for(pipeline)

    await client.publish_many(records)
    await wait_for_outcomes(kafka, pipeline, 200)
    first.kill()
    done_by_first = len(await read_outcomes(kafka, pipeline_topics(pipeline), 0))
    worker_process(pipeline.effective.path)
    outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records), 120)

    assert done_by_first < len(records), "the kill came mid-stream"
    ids = Counter(o.record_id for o in outcomes)
    assert set(ids) == {r["application_id"] for r in records}, "no record lost"
    duplicates = sum(ids.values()) - len(ids)
    stages = len(pipeline.plan.active_stages)
    partitions = 4
    # At most the uncommitted batches in flight at the kill, per stage and partition.
    assert duplicates <= batch_size * stages * partitions * 2


async def test_two_workers_of_one_stage_split_its_partitions(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline()
    records = numbered(400)
    others = [s.name for s in pipeline.plan.active_stages if s.name != "data_quality"]
    await running(pipeline, kafka, others)
    left = await running(pipeline, kafka, ["data_quality"])
    right = await running(pipeline, kafka, ["data_quality"])
    await _until_assigned(left, right)
    client = await client_for(pipeline)

    await client.publish_many(records)
    outcomes = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), len(records)))

    assert set(outcomes) == {r["application_id"] for r in records}
    mine, theirs = _assigned(left), _assigned(right)
    assert mine
    assert theirs
    assert not mine & theirs
    assert left.processed > 0
    assert right.processed > 0
    assert left.processed + right.processed >= sum(
        1 for o in outcomes.values() if o.stage != "preprocessing"
    )


def _assigned(worker) -> set:
    return {partition for agent in worker.agents for _, partition in agent.assignment()}


async def _until_assigned(*workers, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        sets = [_assigned(w) for w in workers]
        if all(sets) and sum(len(s) for s in sets) == 4:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"partitions not split within {timeout_s}s: {sets}")


async def test_an_internal_error_stops_the_worker_and_the_next_worker_decides_its_batch(
    make_pipeline, kafka, client_for, monkeypatch
):
    pipeline = make_pipeline(runtime__batch_size=50)
    records = numbered(300)
    await ensure_topics(pipeline, kafka)
    handle = StageProcessor.process

    async def broken(self: StageProcessor, batch: list) -> object:
        if self.stage.name == "compliance":
            raise RuntimeError("a bug in the engine")
        return await handle(self, batch)

    monkeypatch.setattr(StageProcessor, "process", broken)
    first = StageWorker(pipeline, kafka)
    await first.start()
    try:
        client = await client_for(pipeline)
        await client.publish_many(records)
        failure = await asyncio.wait_for(first.until_stopped(asyncio.Event()), 60)
    finally:
        await first.stop()
    monkeypatch.undo()  # the fix is deployed
    second = StageWorker(pipeline, kafka)
    await second.start()
    try:
        outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records), 120)
    finally:
        await second.stop()

    assert isinstance(failure, RuntimeError)
    assert str(failure) == "a bug in the engine"
    ids = Counter(o.record_id for o in outcomes)
    assert set(ids) == {r["application_id"] for r in records}, "no record lost"
    assert sum(ids.values()) == len(ids), "the failed batch was not committed, nor produced"
