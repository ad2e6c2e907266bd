"""Nothing a user sends stops an agent: each kind of bad input, and each kind of rule failure
after retries, is dead-lettered with its reason and the original bytes, and the valid record
published right after it is still decided."""

from __future__ import annotations

from collections import Counter

import orjson
from harness import by_id, offline_decisions, read_outcomes, samples

from stream_engine.runtime.cluster.topics import pipeline_topics

INPUT_SCHEMA = {
    "type": "object",
    "required": ["application_id", "email"],
    "properties": {"annual_income": {"type": "number"}},
}


async def test_each_kind_of_bad_input_is_dead_lettered_and_the_next_record_still_flows(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline(input__schema=INPUT_SCHEMA, runtime__max_message_bytes=2048)
    decided = await offline_decisions(make_pipeline(), samples())
    good = [r for r in samples() if decided[r["application_id"]]["status"] == "approved"][:5]
    bad: dict[str, bytes] = {
        "BAD-BYTES": b"\xff\xfe\x00garbage",
        "BAD-ARRAY": b'[{"application_id": "BAD-ARRAY"}]',
        "BAD-SCHEMA": orjson.dumps({"application_id": "BAD-SCHEMA", "annual_income": "lots"}),
        "BAD-LARGE": orjson.dumps({"application_id": "BAD-LARGE", "notes": "x" * 4096}),
        "BAD-TRUNCATED": b'{"application_id": "BAD-TRUNCATED", "email": ',
    }
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    for (record_id, value), record in zip(bad.items(), good, strict=True):
        await client.publish(value, key=record_id)
        await client.publish(record)
    outcomes = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), len(bad) + len(good)))

    reasons = {rid: outcomes[rid].headers["dlq.reason"] for rid in bad}
    assert reasons == {
        "BAD-BYTES": "decode_error",
        "BAD-ARRAY": "decode_error",
        "BAD-SCHEMA": "schema_invalid",
        "BAD-LARGE": "too_large",
        "BAD-TRUNCATED": "decode_error",
    }
    letters = await _dlq_values(kafka, pipeline)
    for record_id, value in bad.items():
        assert letters[record_id] == value, "a dead letter keeps the original bytes"
        headers = outcomes[record_id].headers
        assert headers["dlq.original.topic"] == pipeline_topics(pipeline).input
        assert headers["dlq.stage"] == pipeline.plan.active_stages[0].name
        assert headers["dlq.pipeline"] == pipeline.plan.name
        assert headers["dlq.attempt"] == "1"
    for record in good:
        assert outcomes[record["application_id"]].status == "approved"


async def _dlq_values(kafka, pipeline) -> dict[str, bytes]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        pipeline_topics(pipeline).dlq,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return {m.key.decode(): m.value for messages in batch.values() for m in messages}
    finally:
        await consumer.stop()


async def test_a_failing_service_dead_letters_with_rule_error_then_circuit_open(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline(
        services__kyc__params__fail_rate=1.0,
        services__kyc__retry={"attempts": 1},
        services__kyc__circuit_breaker={"failure_threshold": 3, "reset_timeout_s": 600},
        runtime__batch_size=1,
    )
    records = (await reaching_compliance(make_pipeline))[:8]
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many(records)
    outcomes = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), len(records)))

    letters = [outcomes[r["application_id"]] for r in records]
    assert all(o.kind == "dlq" for o in letters)
    reasons = Counter(o.headers["dlq.reason"] for o in letters)
    assert reasons == {"rule_error": 3, "circuit_open": 5}
    for letter in letters:
        assert letter.headers["dlq.stage"] == "compliance"
        assert letter.headers["dlq.rule"] == "kyc_identity_verification"
    failed = next(o for o in letters if o.headers["dlq.reason"] == "rule_error")
    assert "simulated failure" in failed.headers["dlq.exception.message"]


async def test_a_service_slower_than_its_timeout_dead_letters_with_timeout(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline(
        services__kyc__params__latency_ms=2000,
        services__kyc__timeout_s=0.05,
        services__kyc__retry={"attempts": 1},
    )
    record = (await reaching_compliance(make_pipeline))[0]
    follower = next(r for r in samples() if r["application_id"] != record["application_id"])
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many([record, follower])
    outcomes = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), 2))

    letter = outcomes[record["application_id"]]
    assert (letter.kind, letter.headers["dlq.reason"]) == ("dlq", "timeout")
    assert letter.headers["dlq.rule"] == "kyc_identity_verification"
    assert outcomes[follower["application_id"]].record_id == follower["application_id"]


async def reaching_compliance(make_pipeline) -> list[dict]:
    """Sample applications that pass data_quality, decided in-process on the unchanged
    pipeline (so their next stop is compliance, where KYC is called)."""
    decided = await offline_decisions(make_pipeline(), samples())
    early = ("preprocessing", "data_quality")
    return [r for r in samples() if decided[r["application_id"]]["decided_by_stage"] not in early]
