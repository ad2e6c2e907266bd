"""Dead-letter replay end to end: records dead-lettered while a service failed are decided
once it recovers and the replay runs; a replay reads what was there when it started, ends
while letters keep arriving, and skips malformed letters by name."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from broker_fixtures import ensure_topics
from harness import by_id, offline_decisions, read_outcomes, samples

from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.integrity import KEY_ENV, EnvelopeAuth
from stream_engine.runtime.tools import replay as replay_module
from stream_engine.runtime.tools.replay import ReplayFilter, replay


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream_engine", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_dead_letters_of_a_failed_service_are_decided_after_it_recovers_and_replay_runs(
    make_pipeline, kafka, running, client_for, broker
):
    failing = make_pipeline(
        services__kyc__params__fail_rate=1.0,
        services__kyc__retry={"attempts": 1},
        services__kyc__circuit_breaker={"failure_threshold": 10_000, "reset_timeout_s": 1},
    )
    decided = await offline_decisions(make_pipeline(), samples())
    reaching = [r for r in samples() if decided[r["application_id"]]["decided_by_stage"]
                not in ("preprocessing", "data_quality")][:20]  # fmt: skip
    worker = await running(failing, kafka)
    client = await client_for(failing)
    await client.publish_many(reaching)
    first = by_id(await read_outcomes(kafka, pipeline_topics(failing), len(reaching)))
    await worker.stop()
    ids = {rid for rid, o in first.items() if o.kind == "dlq"}

    recovered = make_pipeline(pipeline=failing.plan.name)
    await running(recovered, kafka)
    config = str(recovered.effective.path)
    dry = await asyncio.to_thread(
        cli, "dlq", "replay", config, "--broker", broker, "--reason", "rule_error", "--dry-run"
    )
    other = await asyncio.to_thread(
        cli, "dlq", "replay", config, "--broker", broker, "--reason", "timeout"
    )
    done = await asyncio.to_thread(
        cli, "dlq", "replay", config, "--broker", broker, "--stage", "compliance"
    )
    outcomes = await read_outcomes(kafka, pipeline_topics(recovered), len(reaching) + len(ids))

    assert len(ids) >= 10, "most applications reaching compliance wait on KYC"
    assert {first[rid].headers["dlq.reason"] for rid in ids} == {"rule_error"}
    assert {first[rid].headers["dlq.rule"] for rid in ids} == {"kyc_identity_verification"}
    assert dry.returncode == 0, dry.stderr
    assert f"would replay {len(ids)}" in dry.stderr.decode()
    assert "replayed 0" in other.stderr.decode()
    assert done.returncode == 0, done.stderr
    assert f"replayed {len(ids)}" in done.stderr.decode()
    after = [o for o in outcomes if o.kind != "dlq" and o.record_id in ids]
    assert sorted(o.record_id for o in after) == sorted(ids), "each replayed record decided once"
    for outcome in after:
        want = decided[outcome.record_id]
        assert (outcome.status, outcome.stage) == (want["status"], want["decided_by_stage"])
        assert outcome.body["attempt"] == 2


# -- letters written straight to the dead-letter topic -------------------------------------------

STAGE = "compliance"


def letter_headers(at: datetime | None = None, **changes: bytes | None) -> list[tuple[str, Any]]:
    """Headers as a worker writes them, failed at ``at`` (default now); ``changes`` replace
    ``dlq.<name>`` values (None: a header without a value)."""
    when = (at or datetime.now(UTC)).isoformat(timespec="milliseconds")
    fields = {"stage": STAGE.encode(), "reason": b"rule_error", "attempt": b"1",
              "failed_at": when.encode(), **changes}  # fmt: skip
    return [("dlq." + name, value) for name, value in fields.items()]


async def write_letters(
    kafka, topic: str, letters: list[list[tuple[str, Any]]], signed: bool = True
) -> None:
    """Write dead letters in one go (so the broker keeps them in few record batches), tagged
    with the suite's envelope key as a worker tags them - or, ``signed=False``, as a forger
    without the key would write them."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, linger_ms=50)
    keys = EnvelopeAuth.from_text(os.environ[KEY_ENV])
    await producer.start()
    try:
        futures = []
        for i, headers in enumerate(letters):
            value = b'{"application_id": "A-%d"}' % i
            tagged = keys.seal(topic, value, headers, bind=True) if signed else headers
            futures.append(
                await producer.send(topic, value, key=b"A-%d" % i, headers=tagged, partition=0)
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def messages_on(kafka, topic: str, timeout_s: float = 10.0) -> list:
    """Every message on a one-partition topic, read until its end."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    found: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            if not batch and found:
                break
            found += [m for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    return found


async def test_a_replay_ends_while_letters_keep_arriving_and_replays_only_those_there_at_its_start(
    make_pipeline, kafka
):
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    await write_letters(kafka, topics.dlq, [letter_headers() for _ in range(30)])
    arriving = asyncio.Event()

    async def keep_writing() -> None:
        # A worker whose clock runs 30 s behind (or a replay host 30 s ahead).
        behind = datetime.now(UTC) - timedelta(seconds=30)
        while True:
            await write_letters(kafka, topics.dlq, [letter_headers(behind)])
            arriving.set()

    writer = asyncio.ensure_future(keep_writing())
    try:
        await asyncio.wait_for(arriving.wait(), 30)
        summary = await asyncio.wait_for(replay(topics, kafka, ReplayFilter()), 60)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    assert summary.replayed >= 30, "every letter there at the start is replayed"
    assert summary.replayed == summary.scanned
    replayed = await messages_on(kafka, topics.stage_inputs[STAGE])
    assert len(replayed) == summary.replayed
    left = len(await messages_on(kafka, topics.dlq)) - summary.scanned
    assert left > 0, "letters written during the replay were left for the next one"


async def test_letters_stamped_after_the_replay_started_are_replayed_when_they_were_there_first(
    make_pipeline, kafka
):
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    ahead = datetime.now(UTC) + timedelta(hours=1)  # written by a worker whose clock runs ahead
    await write_letters(kafka, topics.dlq, [letter_headers(ahead) for _ in range(5)])

    summary = await asyncio.wait_for(replay(topics, kafka, ReplayFilter(), dry_run=True), 60)

    assert summary.by_stage_reason == {(STAGE, "rule_error"): 5}
    assert not summary.skipped


async def test_every_letter_there_at_the_start_is_read_though_the_last_batch_holds_many(
    make_pipeline, kafka
):
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    await write_letters(kafka, topics.dlq, [letter_headers() for _ in range(50)])

    summary = await asyncio.wait_for(replay(topics, kafka, ReplayFilter(), dry_run=True), 60)

    assert summary.scanned == 50
    assert summary.by_stage_reason == {(STAGE, "rule_error"): 50}


async def test_malformed_letters_are_skipped_and_named_and_since_still_chooses_the_rest(
    make_pipeline, kafka, broker
):
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    now = datetime.now(UTC)
    letters = [
        letter_headers(now),  # 0: replayed
        letter_headers(now - timedelta(days=2)),  # 1: older than --since
        letter_headers(failed_at=b"2026-11-25T10:00:00"),  # 2: no UTC offset
        letter_headers(now, stage=b"compl\xe9"),  # 3: not UTF-8
        letter_headers(now, attempt=b"x"),  # 4
        letter_headers(now, reason=None),  # 5
        [h for h in letter_headers(now) if h[0] != "dlq.stage"],  # 6
        [*letter_headers(now), ("dlq.stage", b"business_rules")],  # 7
    ]
    await write_letters(kafka, topics.dlq, letters)
    since = (now - timedelta(days=1)).isoformat()

    result = await asyncio.to_thread(
        cli, "dlq", "replay", str(pipeline.effective.path), "--broker", broker, "--since", since
    )

    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "Traceback" not in err
    assert "replayed 1;" in err
    assert "filtered out 1" in err
    assert "malformed headers 6" in err
    for offset, why in [
        (2, "dlq.failed_at is not an ISO time with a UTC offset ('2026-11-25T10:00:00')"),
        (3, "dlq.stage is not UTF-8 (b'compl\\xe9')"),
        (4, "dlq.attempt is not a whole number ('x')"),
        (5, "dlq.reason has no value"),
        (6, "no dlq.stage"),
        (7, "dlq.stage appears more than once"),
    ]:
        assert f"skipped partition 0 offset {offset}: {why}" in err
    replayed = await messages_on(kafka, topics.stage_inputs[STAGE])
    assert [m.key for m in replayed] == [b"A-0"]


async def test_a_partition_that_stops_short_of_its_end_is_given_up_and_reported(
    make_pipeline, kafka, monkeypatch
):
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    await write_letters(kafka, topics.dlq, [letter_headers() for _ in range(3)])
    true_ends = replay_module.start_ends

    async def beyond(*args: Any) -> dict:
        return {tp: end + 5 if tp.partition == 0 else end
                for tp, end in (await true_ends(*args)).items()}  # fmt: skip

    monkeypatch.setattr(replay_module, "start_ends", beyond)

    summary = await asyncio.wait_for(
        replay(topics, kafka, ReplayFilter(), dry_run=True, stall_s=1.0), 30
    )

    assert summary.scanned == 3
    assert summary.unfinished == {0: (3, 8)}


async def test_letters_written_in_transactions_are_read_to_their_end_by_a_committed_reader(
    broker_kind, make_pipeline, kafka
):
    if broker_kind != "kafka":
        pytest.skip("transactions need Apache Kafka")
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, transactional_id=f"{topics.dlq}-writer"
    )
    await producer.start()
    try:
        for i in range(3):  # each transaction ends in a commit marker, which takes an offset
            async with producer.transaction():
                await producer.send(topics.dlq, b"{}", key=b"A-%d" % i,
                                    headers=letter_headers(), partition=0)  # fmt: skip
    finally:
        await producer.stop()
    committed = dataclasses.replace(kafka, isolation_level="read_committed")

    summary = await asyncio.wait_for(
        replay(topics, committed, ReplayFilter(), dry_run=True, stall_s=5.0), 30
    )

    assert summary.scanned == 3
    assert not summary.unfinished


async def test_a_forged_letter_is_never_replayed_and_is_named(make_pipeline, kafka, broker):
    """The review's forgery: a letter written straight to the dead-letter topic claiming
    ``dlq.stage: business_rules``, which replay used to send on - to be approved."""
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    forged = letter_headers(stage=b"business_rules")
    await write_letters(kafka, topics.dlq, [forged], signed=False)
    await write_letters(kafka, topics.dlq, [letter_headers()])

    result = await asyncio.to_thread(cli, "dlq", "replay", str(pipeline.effective.path),
                                     "--broker", broker)  # fmt: skip

    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "skipped partition 0 offset 0: no se.auth header" in err
    assert "replayed 1;" in err
    assert await messages_on(kafka, topics.stage_inputs["business_rules"], timeout_s=3) == []
    [sent] = await messages_on(kafka, topics.stage_inputs[STAGE])
    assert sent.key == b"A-0"
