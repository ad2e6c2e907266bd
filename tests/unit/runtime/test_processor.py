"""A stage processor on hand-built batches of the example pipeline: what it produces where, with
which key - and that a bad message in a batch never stops the good ones around it."""

from __future__ import annotations

import orjson
import pytest
from runtime_helpers import (
    INPUT_TOPIC,
    TRACEPARENT,
    application,
    auth,
    load_small,
    message,
    onboarding,
    schema_errors,
    signed,
)

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.core.outcome import DeadLetterReason
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.codec import Incoming
from stream_engine.runtime.stage.processor import BatchReport, Outgoing, StageProcessor

DATA_QUALITY_TOPIC = "customer_onboarding.stage.data_quality"
DLQ = "customer_onboarding.dlq"


@pytest.fixture
def pipeline() -> CompiledPipeline:
    return onboarding()


def processor(pipeline: CompiledPipeline, stage: str) -> StageProcessor:
    return StageProcessor(pipeline, pipeline.plan.stage(stage), pipeline_topics(pipeline), "w-1")


def to(report: BatchReport, topic: str) -> list[Outgoing]:
    return [out for out in report.outgoing if out.topic == topic]


def hop(out: Outgoing, offset: int = 0) -> Incoming:
    """What the next stage consumes of a message this stage produced."""
    return message(out.value, key=out.key, offset=offset, headers=out.headers, topic=out.topic)


async def test_first_stage_forwards_a_good_record_to_the_next_stage_keyed_by_record_id(pipeline):
    report = await processor(pipeline, "preprocessing").process([message(application())])
    [out] = report.outgoing
    assert out.topic == DATA_QUALITY_TOPIC
    assert out.key == b"APP-1"
    assert [name for name, _ in out.headers] == ["se.auth"]
    assert auth().verify(DATA_QUALITY_TOPIC, out.value, out.headers) is None
    envelope = orjson.loads(out.value)
    assert envelope["record_id"] == "APP-1"
    assert envelope["data"]["email"] == "john.smith@example.com"
    assert envelope["data"]["phone"] == "+12125550147"
    assert {r["stage"] for r in envelope["results"].values()} == {"preprocessing"}
    assert [a["stage"] for a in envelope["audit"]] == ["preprocessing"]
    assert envelope["source"]["topic"] == INPUT_TOPIC
    assert schema_errors("envelope", out.value) == []
    assert report.decisions == report.dead_letters == []


async def test_record_without_an_id_field_is_keyed_by_its_kafka_key(pipeline):
    batch = [message(application(application_id=None), key=b"KAFKA-7")]
    [out] = (await processor(pipeline, "preprocessing").process(batch)).outgoing
    assert out.key == b"KAFKA-7"
    assert orjson.loads(out.value)["record_id"] == "KAFKA-7"


async def test_bad_record_goes_to_the_dlq_with_its_bytes_and_the_records_after_it_still_run(
    pipeline,
):
    bad = b'["not", "an", "object"]'
    batch = [
        message(application(application_id="APP-1"), offset=10),
        message(bad, key=b"APP-2", offset=11, headers=[("traceparent", TRACEPARENT)]),
        message(application(application_id="APP-3"), offset=12),
    ]
    report = await processor(pipeline, "preprocessing").process(batch)

    [dead] = to(report, DLQ)
    assert dead.key == b"APP-2"
    assert dead.value == bad
    headers = dict(dead.headers)
    assert headers["dlq.reason"] == b"decode_error"
    assert headers["dlq.original.offset"] == b"11"
    assert headers["dlq.stage"] == b"preprocessing"
    assert headers["dlq.record_id"] == b"APP-2"
    assert headers["traceparent"] == TRACEPARENT
    assert [d.reason for d in report.dead_letters] == [DeadLetterReason.DECODE_ERROR]

    forwarded = to(report, DATA_QUALITY_TOPIC)
    assert [out.key for out in forwarded] == [b"APP-1", b"APP-3"]
    assert [orjson.loads(out.value)["source"]["offset"] for out in forwarded] == [10, 12]
    assert len(report.outcomes) == 2


async def test_undecodable_message_without_a_key_is_dead_lettered_without_a_key(pipeline):
    report = await processor(pipeline, "preprocessing").process([message(b"\xff\xfe garbage")])
    [dead] = report.outgoing
    assert (dead.topic, dead.key, dead.value) == (DLQ, None, b"\xff\xfe garbage")
    assert dict(dead.headers)["dlq.record_id"] == b""


async def test_tombstone_is_dead_lettered_with_an_empty_value(pipeline):
    report = await processor(pipeline, "preprocessing").process([message(None, key=b"APP-9")])
    [dead] = report.outgoing
    assert (dead.topic, dead.key, dead.value) == (DLQ, b"APP-9", b"")
    assert dict(dead.headers)["dlq.exception.message"] == b"empty message"


async def test_schema_invalid_record_is_dead_lettered_keyed_by_its_id_field(tmp_path):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    small = load_small(tmp_path, input={"key_field": "id", "schema": schema})
    batch = [message({"id": "R-1", "name": 7}, topic="demo.input")]
    report = await processor(small, "checks").process(batch)
    [dead] = report.outgoing
    assert (dead.topic, dead.key) == ("demo.dlq", b"R-1")
    assert dead.value == batch[0].value
    assert dict(dead.headers)["dlq.reason"] == b"schema_invalid"
    assert dict(dead.headers)["dlq.exception.message"] == b"name: fails 'type' string"


async def test_forwarded_envelope_is_consumed_by_the_next_stage_as_the_same_record(pipeline):
    first = await processor(pipeline, "preprocessing").process(
        [message(application(), headers=[("traceparent", TRACEPARENT)])]
    )
    [forwarded] = first.outgoing
    second = await processor(pipeline, "data_quality").process([hop(forwarded)])
    [out] = second.outgoing
    assert (out.topic, out.key) == ("customer_onboarding.stage.compliance", b"APP-1")
    envelope = orjson.loads(out.value)
    assert envelope["data"] == orjson.loads(forwarded.value)["data"]
    assert {r["stage"] for r in envelope["results"].values()} == {"preprocessing", "data_quality"}
    assert [a["stage"] for a in envelope["audit"]] == ["preprocessing", "data_quality"]
    assert envelope["trace"] == TRACEPARENT.decode()


async def test_earlier_results_are_passed_on_exactly_as_they_came_even_with_odd_fields(pipeline):
    first = await processor(pipeline, "preprocessing").process([message(application())])
    envelope = orjson.loads(first.outgoing[0].value)
    trimmed = envelope["results"]["trim_whitespace"]
    trimmed.update(duration_ms="slow", attempts="many", extra_by_a_newer_version=[1, 2])
    body = orjson.dumps(envelope)
    report = await processor(pipeline, "data_quality").process(
        [signed(body, DATA_QUALITY_TOPIC, key=b"APP-1")]
    )
    [out] = report.outgoing
    assert out.topic == "customer_onboarding.stage.compliance"
    assert orjson.loads(out.value)["results"]["trim_whitespace"] == trimmed


async def test_incomplete_application_is_rejected_at_data_quality_onto_the_rejected_topic(
    pipeline,
):
    first = await processor(pipeline, "preprocessing").process(
        [message(application(ssn=None), headers=[("traceparent", TRACEPARENT)])]
    )
    report = await processor(pipeline, "data_quality").process([hop(first.outgoing[0])])
    [out] = report.outgoing
    assert (out.topic, out.key) == ("customer_onboarding.rejected", b"APP-1")
    decision = orjson.loads(out.value)
    assert decision["status"] == "rejected"
    assert decision["decided_by_stage"] == "data_quality"
    assert decision["failed_rules"] == {"data_quality": ["required_personal_info"]}
    assert decision["trace"] == TRACEPARENT.decode()
    assert schema_errors("decision", out.value) == []
    assert [d.record_id for d in report.decisions] == ["APP-1"]


async def test_complete_application_travels_every_stage_to_an_approved_decision(pipeline):
    topics = pipeline_topics(pipeline)
    stage_of = {topic: stage for stage, topic in topics.stage_inputs.items()}
    processors = {stage: processor(pipeline, stage) for stage in topics.stage_inputs}
    pending = [message(application())]
    visited, finals = [], []
    while pending:
        incoming = pending.pop()
        visited.append(stage_of[incoming.topic])
        report = await processors[stage_of[incoming.topic]].process([incoming])
        for out in report.outgoing:
            if out.topic in stage_of:
                pending.append(hop(out))
            else:
                finals.append(out)
    assert visited == list(topics.stage_inputs)
    [final] = finals
    assert (final.topic, final.key) == ("customer_onboarding.decisions", b"APP-1")
    decision = orjson.loads(final.value)
    assert decision["status"] == "approved"
    assert decision["decided_by_stage"] == "post_processing"
    assert schema_errors("decision", final.value) == []


async def test_malformed_envelope_on_a_stage_topic_is_dead_lettered_and_the_batch_goes_on(
    pipeline,
):
    first = await processor(pipeline, "preprocessing").process([message(application())])
    good = hop(first.outgoing[0], offset=2)
    broken = orjson.loads(first.outgoing[0].value)
    broken["results"] = []
    bad = signed(broken, DATA_QUALITY_TOPIC, key=b"APP-0", offset=1)
    report = await processor(pipeline, "data_quality").process([bad, good])
    [dead] = to(report, DLQ)
    assert (dead.key, dead.value) == (b"APP-0", bad.value)
    assert dict(dead.headers)["dlq.exception.message"].startswith(b"not a valid envelope: ")
    assert [out.key for out in to(report, "customer_onboarding.stage.compliance")] == [b"APP-1"]


def test_each_stage_processor_knows_where_it_forwards(pipeline):
    topics = pipeline_topics(pipeline)
    stages = list(topics.stage_inputs)
    for stage, following in zip(stages, [*stages[1:], None], strict=True):
        built = processor(pipeline, stage)
        assert built.first is (stage == "preprocessing")
        assert built.next_topic == (topics.stage_inputs[following] if following else None)


async def test_a_later_stages_dead_letter_carries_the_records_traceparent(tmp_path):
    small = load_small(tmp_path)
    first = await processor(small, "checks").process(
        [message({"id": "R-1", "name": 7}, topic="demo.input",
                 headers=[("traceparent", TRACEPARENT)])]
    )  # fmt: skip
    [forwarded] = first.outgoing
    assert [name for name, _ in forwarded.headers] == ["se.auth"]
    report = await processor(small, "scoring").process([hop(forwarded)])
    [dead] = report.outgoing
    headers = dict(dead.headers)
    assert (dead.topic, headers["dlq.reason"]) == ("demo.dlq", b"rule_error")
    assert headers["traceparent"] == TRACEPARENT
