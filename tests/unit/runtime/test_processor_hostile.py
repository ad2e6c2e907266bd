"""Hostile records fail alone: whatever breaks for one record - its shape, a value JSON cannot
carry, an engine error it provokes - makes that record a dead letter with its reason, and the
records of the same batch are decided exactly once, as if it had not been there."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from runtime_helpers import application, auth, load_small, message, onboarding

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.core.result import Verdict, passed
from stream_engine.core.rule import RuleContext
from stream_engine.rules import RULES, ConfiguredRule, RuleParams
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.processor import BatchReport, StageProcessor

DLQ = "customer_onboarding.dlq"


def processor(pipeline: CompiledPipeline, stage: str) -> StageProcessor:
    topics = pipeline_topics(pipeline)
    return StageProcessor(pipeline, pipeline.plan.stage(stage), topics, "w-1", auth())


def reasons(report: BatchReport) -> dict[bytes | None, bytes]:
    return {
        out.key: dict(out.headers)["dlq.reason"]
        for out in report.outgoing
        if out.topic.endswith(".dlq")
    }


def forwarded(report: BatchReport) -> list[bytes | None]:
    return [out.key for out in report.outgoing if not out.topic.endswith(".dlq")]


def deep(levels: int) -> bytes:
    """A 600-byte record ``levels`` deep - past orjson's writer (254) but within its reader."""
    return b'{"application_id": "DEEP", "x": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


@pytest.mark.parametrize("levels", [33, 253, 300, 1023])
async def test_a_deeply_nested_record_is_dead_lettered_and_its_batch_mates_are_decided(levels):
    pipeline = onboarding()
    batch = [
        message(application(application_id="A-1")),
        message(deep(levels), key=b"DEEP", offset=1),
        message(application(application_id="A-2"), offset=2),
    ]
    report = await processor(pipeline, "preprocessing").process(batch)
    assert reasons(report) == {b"DEEP": b"limit_exceeded"}
    assert forwarded(report) == [b"A-1", b"A-2"]


async def test_a_record_nested_to_the_limit_travels_on():
    pipeline = onboarding()
    record = application(extra={"a": [[[[{"b": [[[[1]]]]}]]]]})
    report = await processor(pipeline, "preprocessing").process([message(record)])
    assert forwarded(report) == [b"APP-1"]


def deriving(directory: Any, expr: str) -> CompiledPipeline:
    rule = {"class": "DerivedField", "params": {"field": "raw", "expr": expr}, "when": "data.odd"}
    return load_small(directory, stages={"derive": {"rules": {"raw": rule}}})


@pytest.mark.parametrize("expr", ["b'abc'", "1e308 * 10.0", "-(1e308 * 10.0)"])
async def test_a_derived_value_json_cannot_carry_dead_letters_its_record_alone(tmp_path, expr):
    batch = [
        message({"id": "ODD", "odd": True}, topic="demo.input"),
        message({"id": "PLAIN", "odd": False}, topic="demo.input", offset=1),
    ]
    report = await processor(deriving(tmp_path, expr), "derive").process(batch)
    assert reasons(report) == {b"ODD": b"rule_error"}
    assert forwarded(report) == [b"PLAIN"]


async def test_a_derived_duration_travels_as_the_text_cel_writes_for_it(tmp_path):
    batch = [message({"id": "ODD", "odd": True}, topic="demo.input")]
    report = await processor(deriving(tmp_path, "duration('90s')"), "derive").process(batch)
    [out] = report.outgoing
    assert orjson.loads(out.value)["data"]["raw"] == "90s"


class SetParams(RuleParams):
    pass


class PutsASetInDetails(ConfiguredRule[SetParams]):
    """A careless custom rule: its details hold a Python set, which JSON cannot carry."""

    Params = SetParams

    def evaluate(self, ctx: RuleContext) -> Verdict:
        if ctx.data.get("careless"):
            return passed("ok", seen={1, 2})
        return passed("ok")


@pytest.fixture
def careless(monkeypatch: pytest.MonkeyPatch) -> None:
    RULES.names()
    monkeypatch.setitem(RULES._classes, "PutsASetInDetails", PutsASetInDetails)


async def test_results_that_cannot_be_encoded_are_an_encode_error_dead_letter(tmp_path, careless):
    stages = {"checks": {"rules": {"careless": {"class": "PutsASetInDetails"}}}}
    small = load_small(tmp_path, stages=stages)
    batch = [
        message({"id": "R-1"}, topic="demo.input"),
        message({"id": "R-2", "careless": True}, topic="demo.input", offset=1),
        message({"id": "R-3"}, topic="demo.input", offset=2),
    ]
    report = await processor(small, "checks").process(batch)
    assert reasons(report) == {b"R-2": b"encode_error"}
    [letter] = [dict(o.headers) for o in report.outgoing if o.topic == "demo.dlq"]
    assert b"cannot be written as JSON" in letter["dlq.exception.message"]
    assert forwarded(report) == [b"R-1", b"R-3"]


async def test_a_record_that_provokes_an_engine_error_is_tried_alone_then_dead_lettered(
    monkeypatch,
):
    pipeline = onboarding()
    stage = processor(pipeline, "preprocessing")
    encode = stage.codec.envelope
    calls: dict[str, int] = {}

    def envelope(state: Any) -> bytes:
        calls[state.record_id] = calls.get(state.record_id, 0) + 1
        if state.record_id == "POISON":
            raise RuntimeError("engine bug")
        return encode(state)

    monkeypatch.setattr(stage.codec, "envelope", envelope)
    batch = [
        message(application(application_id="A-1")),
        message(application(application_id="POISON"), offset=1),
        message(application(application_id="A-2"), offset=2),
    ]
    report = await stage.process(batch)
    assert reasons(report) == {b"POISON": b"internal_error"}
    assert calls == {"A-1": 1, "POISON": 3, "A-2": 1}
    assert report.poison == 1
    [letter] = [dict(o.headers) for o in report.outgoing if o.topic == DLQ]
    assert letter["dlq.exception.message"].startswith(
        b"internal error on each of 3 attempts: RuntimeError: engine bug"
    )
    assert forwarded(report) == [b"A-1", b"A-2"]
    assert len(report.outcomes) == 3


async def test_an_engine_error_that_goes_away_on_a_retry_leaves_the_record_decided(monkeypatch):
    pipeline = onboarding()
    stage = processor(pipeline, "preprocessing")
    encode = stage.codec.envelope
    failures = iter([RuntimeError("once")])

    def envelope(state: Any) -> bytes:
        error = next(failures, None)
        if error is not None:
            raise error
        return encode(state)

    monkeypatch.setattr(stage.codec, "envelope", envelope)
    report = await stage.process([message(application())])
    assert forwarded(report) == [b"APP-1"]
    assert report.poison == 0
    [out] = report.outgoing
    assert [a["stage"] for a in orjson.loads(out.value)["audit"]] == ["preprocessing"]


async def test_a_failing_condition_costs_its_batch_mates_nothing(tmp_path):
    """The review's case: ``int(data.n)`` on a 5,000-digit n used to fail the batch, which was
    run again record by record - charging the innocent record twice, past its budget."""
    stages = {
        "checks": {
            "rules": {
                "priced": {
                    "class": "RequiredFields",
                    "params": {"fields": ["id"]},
                    "when": "int(data.n) > 5",
                    "cost": 0.6,
                    "on_error": "dead_letter",
                }
            }
        },
        "scoring": {"rules": {"score": {"class": "RequiredFields", "params": {"fields": ["id"]}}}},
    }
    small = load_small(tmp_path, stages=stages, execution={"budget": 1.0})
    batch = [
        message({"id": "BAD", "n": "9" * 5000}, topic="demo.input"),
        message({"id": "GOOD", "n": "7"}, topic="demo.input", offset=1),
    ]
    report = await processor(small, "checks").process(batch)
    assert reasons(report) == {b"BAD": b"rule_error"}
    [out] = [o for o in report.outgoing if o.key == b"GOOD"]
    envelope = orjson.loads(out.value)
    assert envelope["cost"]["total"] == 0.6
    assert [a["stage"] for a in envelope["audit"]] == ["checks"]


@pytest.mark.parametrize(
    ("stamp", "says"),
    [(1, "more than 604800s old"), (10**15, "ahead of the worker's clock"), (0, "no producer")],
)
async def test_a_producer_timestamp_far_from_now_is_not_believed_for_latency(stamp, says):
    pipeline = onboarding()
    first = processor(pipeline, "preprocessing")
    before = time.time()
    report = await first.process([message(application(), timestamp_ms=stamp)])
    [out] = report.outgoing
    source = orjson.loads(out.value)["source"]
    assert source["timestamp"] == stamp
    assert says in source["note"]
    assert before * 1000 - 1 <= source["received"] <= time.time() * 1000 + 1
    later = processor(pipeline, "data_quality")
    state = later.decode(message(out.value, key=out.key, headers=out.headers, topic=out.topic))
    assert not isinstance(state, type(None))
    assert abs(state.received_at - source["received"] / 1000) < 0.002


async def test_a_producer_timestamp_within_the_window_counts_for_latency():
    pipeline = onboarding()
    stamp = int(time.time() * 1000) - 5_000
    report = await processor(pipeline, "preprocessing").process(
        [message(application(), timestamp_ms=stamp)]
    )
    source = orjson.loads(report.outgoing[0].value)["source"]
    assert source["timestamp"] == stamp
    assert "note" not in source
    assert "received" not in source


async def test_a_record_with_a_key_written_twice_is_a_decode_error_dead_letter():
    raw = b'{"application_id": "TWICE", "annual_income": 1, "annual_income": 999999}'
    report = await processor(onboarding(), "preprocessing").process([message(raw, key=b"TWICE")])
    assert reasons(report) == {b"TWICE": b"decode_error"}


async def test_a_huge_integer_is_a_decode_error_not_a_silent_float():
    raw = b'{"application_id": "BIG", "annual_income": 1' + b"0" * 30 + b"}"
    report = await processor(onboarding(), "preprocessing").process([message(raw, key=b"BIG")])
    assert reasons(report) == {b"BIG": b"decode_error"}


async def test_an_attempt_header_of_endless_digits_is_ignored_not_parsed():
    headers = [("dlq.attempt", b"9" * 100_000)]
    report = await processor(onboarding(), "preprocessing").process(
        [message(application(), headers=headers)]
    )
    [out] = report.outgoing
    assert "attempt" not in orjson.loads(out.value)
