"""Stateful rules through Kafka: a stage keyed by a field receives its records keyed by it,
keeps its counts in a compacted changelog partitioned like its topic, and a worker that takes
a partition over - from another worker, or from a changelog of 100,000 keys - carries on with
the full state. Run with ``-s`` for the restore figure."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import orjson
import pytest
from broker_fixtures import ensure_topics
from harness import read_outcomes
from state_helpers import (
    RULE,
    STAGE,
    StateWorker,
    count_rule,  # noqa: F401 - the fixture
    counted,
    counts,
    ranks,
    read_topic,
    records,
    stateful_pipeline,
    until,
    write_changelog,
)

from stream_engine.errors import BrokerError
from stream_engine.runtime.cluster.topics import (
    create_topics,
    describe_topics,
    pipeline_topics,
    topic_specs,
)
from stream_engine.runtime.stage.integrity import envelope_auth
from stream_engine.runtime.state.changelogs import ensure_changelogs
from stream_engine.runtime.state.restore import RestoreStats
from stream_engine.runtime.worker import StageWorker

#: Keys of the changelog a rebalance should find still restoring.
RESTORE_KEYS = 400_000

pytestmark = pytest.mark.usefixtures("count_rule")


async def test_a_stage_keyed_by_account_counts_each_accounts_records_through_kafka(
    broker, kafka, tmp_path, running, client_for
):
    pipeline = stateful_pipeline(tmp_path, broker, input_partitions=1)
    topics = pipeline_topics(pipeline)
    published = records(accounts=20, per_account=10)
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many(published)
    outcomes = await read_outcomes(kafka, topics, len(published), 90)

    expected = ranks(published)
    assert {rid: set(c) for rid, c in counts(outcomes).items()} == {
        rid: {n} for rid, n in expected.items()
    }
    assert all(o.key == o.record_id for o in outcomes), "decisions are keyed by record id"
    account_of = {r["id"]: r["account"] for r in published}
    staged = await read_topic(kafka, topics.stage_inputs[STAGE], len(published))
    partition_of = {}
    for message in staged:
        record_id = orjson.loads(message.value)["record_id"]
        assert message.key.decode() == account_of[record_id], "stage 2 is keyed by account"
        partition_of.setdefault(message.key, message.partition)
    ((changelog, _),) = topics.changelogs(STAGE)
    logged = await read_topic(kafka, changelog, 20)
    latest = {m.key: (m.partition, orjson.loads(m.value)["v"]["n"]) for m in logged if m.value}
    assert latest == {key: (partition_of[key], 10) for key in partition_of}, (
        "each account's state is in the changelog partition of its records' partition"
    )


async def test_a_partition_moved_to_a_second_worker_carries_its_counts(
    broker, kafka, tmp_path, running, client_for
):
    pipeline = stateful_pipeline(tmp_path, broker)
    topics = pipeline_topics(pipeline)
    first_batch = records(accounts=12, per_account=5, prefix="a")
    first = await running(pipeline, kafka)
    client = await client_for(pipeline)
    await client.publish_many(first_batch)
    await read_outcomes(kafka, topics, len(first_batch), 90, quiet_s=0)

    second = await running(pipeline, kafka)
    await _until(lambda: second.ready() and len(list(_owned(second))) > 0, 60)
    await first.stop()
    await _until(lambda: second.ready() and len(list(_owned(second))) == 8, 60)
    following = records(accounts=12, per_account=1, prefix="b")
    await client.publish_many(following)
    outcomes = await read_outcomes(kafka, topics, len(first_batch) + len(following), 90)

    after = {rid: c for rid, c in counts(outcomes).items() if rid.startswith("b-")}
    assert after == {r["id"]: [6] for r in following}
    workers = {o.body["audit"][-1]["worker"] for o in outcomes if o.record_id.startswith("b-")}
    assert workers == {second.worker}


async def test_a_worker_restores_100000_keys_from_their_changelog_before_it_counts(
    broker, kafka, tmp_path, client_for
):
    pipeline = stateful_pipeline(tmp_path, broker)
    topics = pipeline_topics(pipeline)
    ((changelog, _),) = topics.changelogs(STAGE)
    await ensure_topics(pipeline, kafka)
    keys = 100_000
    entries = ((f"acct-{i}", counted(5, [f"old/0/{i}"])) for i in range(keys))
    written = await write_changelog(kafka, changelog, entries, envelope_auth(pipeline))
    assert written == keys

    worker = StageWorker(pipeline, kafka)
    (agent,) = [a for a in worker.agents if a.restorer is not None]
    events: list[tuple[float, bool, RestoreStats]] = []
    agent.restorer.hooks.append(
        lambda stats: events.append((time.monotonic(), stats.finished, stats))
    )
    started = time.monotonic()
    await worker.start()
    try:
        await _until(lambda: worker.ready(), 300)
        ready_s = time.monotonic() - started
        entries_metric = sum(
            v for (_, _, r), v in worker.metrics.values["state_entries"].items() if r == RULE
        )
        lag = sum(worker.metrics.values["state_restore_lag"].values())
        done = [(at, stats) for at, finished, stats in events if finished]
        began = min(at for at, finished, _ in events if not finished)
        wall = max(at for at, _ in done) - began
        slowest = max(max(stats.seconds.values()) for _, stats in done)
        print(
            f"\nrestore: {keys} keys on {len(done)} partitions in {wall:.2f}s "
            f"({keys / wall:,.0f} entries/s; slowest partition {slowest:.2f}s, its consumer's "
            f"start included); worker ready {ready_s:.1f}s after start (group join included)"
        )
        assert entries_metric == keys
        assert lag == keys

        sample = [{"id": f"new-{i}", "account": f"acct-{i}"} for i in range(0, keys, keys // 50)]
        client = await client_for(pipeline)
        await client.publish_many(sample)
        outcomes = await read_outcomes(kafka, topics, len(sample), 90)
        assert counts(outcomes) == {r["id"]: [6] for r in sample}
    finally:
        await worker.stop()


async def test_a_worker_creates_missing_changelogs_and_refuses_one_with_too_few_partitions(
    broker, kafka, tmp_path
):
    pipeline = stateful_pipeline(tmp_path, broker, partitions=3)
    topics = pipeline_topics(pipeline)
    ((changelog, _),) = topics.changelogs(STAGE)
    without_changelog = [s for s in topic_specs(pipeline) if s.name != changelog]
    await create_topics(without_changelog, kafka)

    await ensure_changelogs(pipeline, STAGE, kafka)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (await describe_topics([changelog], kafka))[changelog] is None:
        assert loop.time() < deadline, f"{changelog} not created"
        await asyncio.sleep(0.1)
    assert (await describe_topics([changelog], kafka))[changelog] == 3

    other = stateful_pipeline(tmp_path, broker, partitions=3)
    ((short, _),) = pipeline_topics(other).changelogs(STAGE)
    specs = [
        dataclasses.replace(s, partitions=2) if s.name == short else s for s in topic_specs(other)
    ]
    await create_topics(specs, kafka)
    worker = StageWorker(other, kafka)
    try:
        with pytest.raises(BrokerError) as refused:
            await worker.start()
    finally:
        await worker.stop()
    assert f"{short} has 2" in str(refused.value)
    assert "has 3 partitions" in str(refused.value)


def _owned(worker):
    return [tp for agent in worker.agents for tp in agent.assignment()]


async def _until(predicate, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"not within {timeout_s}s"
        await asyncio.sleep(0.05)


async def test_a_third_worker_joining_mid_restore_leaves_every_partition_restored_once(
    broker, kafka, tmp_path, client_for
):
    """A worker starts on a big changelog; while it restores, a second and a third join:
    partitions move mid-restore, yet every key ends restored on exactly one worker and the
    records published meanwhile are counted on the full state, none lost or counted twice."""
    pipeline = stateful_pipeline(tmp_path, broker, input_partitions=1, partitions=6)
    topics = pipeline_topics(pipeline)
    ((changelog, _),) = topics.changelogs(STAGE)
    await ensure_topics(pipeline, kafka)
    keys = RESTORE_KEYS
    entries = ((f"acct-{i}", counted(5, [f"old/0/{i}"])) for i in range(keys))
    await write_changelog(kafka, changelog, entries, envelope_auth(pipeline))
    path = pipeline.effective.path
    first, others = tmp_path / "gate-first", tmp_path / "gate-others"
    workers = [
        StateWorker(path, broker, tmp_path / f"worker-{name}.log", gate)
        for name, gate in (("a", first), ("b", others), ("c", others))
    ]
    try:
        first.touch()
        await asyncio.to_thread(
            until, workers[0].restoring, 60, "the first worker restoring (/ready 503)", 0.02
        )
        others.touch()
        published = [
            {"id": f"new-{round_}-{i}", "account": f"acct-{i}"}
            for round_ in range(3)
            for i in range(0, keys, keys // 60)
        ]
        client = await client_for(pipeline)
        await client.publish_many(published)
        outcomes = await read_outcomes(kafka, topics, len(published), 120)

        def held() -> list[float]:
            return [w.metric("stream_engine_state_entries") for w in workers]

        await asyncio.to_thread(
            until,
            lambda: not any(w.restoring() for w in workers) and sum(held()) == keys,
            60,
            "every key restored, on exactly one worker",
        )
        entries_held = held()
        logs = [w.log.read_text() for w in workers]
    finally:
        for worker in workers:
            worker.kill()

    print(
        f"\nrebalance mid-restore: {keys} keys, entries per worker {entries_held}, "
        f"restores abandoned {sum(log.count('revoked while restoring') for log in logs)}"
    )
    assert any("revoked while restoring" in log for log in logs), "a rebalance hit a restore"
    assert all(entries_held), "the three workers share the partitions"
    expected = ranks(published, start=5)
    assert {rid: set(c) for rid, c in counts(outcomes).items()} == {
        rid: {n} for rid, n in expected.items()
    }
