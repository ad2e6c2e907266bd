"""The codec: input records become record states (or dead letters with the right reason), the
envelope survives the hop between stages unchanged, decisions and envelopes conform to the
committed schemas, and dead letters explain themselves in headers."""

from __future__ import annotations

import time
from datetime import datetime

import orjson
import pytest
from runtime_helpers import (
    INPUT_TOPIC,
    TIMESTAMP_MS,
    TRACEPARENT,
    application,
    message,
    onboarding,
    schema_errors,
)

from stream_engine.core.decision import Decision
from stream_engine.core.outcome import DeadLetterReason, Outcome, Route, Status
from stream_engine.core.result import RuleResult
from stream_engine.core.state import AuditEntry, DeadLetter, RecordState
from stream_engine.errors import ConfigError
from stream_engine.runtime.stage.codec import Codec, Rejected

#: The dead-letter headers ARCHITECTURE.md lists: original topic / partition / offset /
#: timestamp, stage, rule, reason, exception class and message, attempt count.
DOCUMENTED_HEADERS = [
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
    "dlq.stage",
    "dlq.rule",
    "dlq.reason",
    "dlq.exception.class",
    "dlq.exception.message",
    "dlq.attempt",
]
#: What the codec adds so a dead letter can be traced and replayed without its envelope.
ADDED_HEADERS = ["dlq.record_id", "dlq.pipeline", "dlq.config_hash", "dlq.failed_at"]

SCHEMA = {
    "type": "object",
    "required": ["application_id", "email"],
    "properties": {
        "application_id": {"type": "string"},
        "email": {"type": "string"},
        "annual_income": {"type": "number", "minimum": 0},
    },
}


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(onboarding().plan)


def decode_input(codec: Codec, *args, **kwargs) -> RecordState | Rejected:
    return codec.decode(message(*args, **kwargs), "preprocessing", first=True)


def rejected(outcome: RecordState | Rejected) -> Rejected:
    assert isinstance(outcome, Rejected), f"expected a dead letter, got {outcome!r}"
    return outcome


def accepted(outcome: RecordState | Rejected) -> RecordState:
    assert isinstance(outcome, RecordState), f"expected a record, got {outcome!r}"
    return outcome


def travelled_state(codec: Codec) -> RecordState:
    """A record as the preprocessing stage leaves it: results, audit, cost, source, trace."""
    state = accepted(decode_input(codec, application(), headers=[("traceparent", TRACEPARENT)]))
    state.data["phone"] = "+12125550147"
    state.results = {
        "normalize_phone": RuleResult(
            stage="preprocessing",
            outcome=Outcome.PASS,
            message="normalised",
            details={"from": "(212) 555-0147"},
            duration_ms=0.412,
            attempts=1,
        ),
        "normalize_address": RuleResult(
            stage="preprocessing",
            outcome=Outcome.ERROR,
            message="timed out",
            duration_ms=2000.0,
            attempts=3,
            cost=0.05,
            error_kind="timeout",
        ),
        "risk": RuleResult(
            stage="preprocessing",
            outcome=Outcome.FAIL,
            message="high risk",
            details={"score": 0.9},
            duration_ms=1.5,
            attempts=1,
            action=Route.REVIEW,
        ),
    }
    state.cost_total = 0.05
    state.cost_by_rule = {"normalize_address": 0.05}
    state.audit = [AuditEntry("preprocessing", 1_700_000_000.123, 12.5, Route.FORWARD, "w-1")]
    return state


# -- input records --------------------------------------------------------------------------


def test_record_id_comes_from_the_configured_key_field_rather_than_the_kafka_key(codec):
    state = accepted(decode_input(codec, application(application_id="APP-7"), key=b"KAFKA-KEY"))
    assert state.record_id == "APP-7"


@pytest.mark.parametrize("key_value", [None, ""], ids=["missing", "empty"])
def test_record_id_falls_back_to_the_kafka_key_when_the_key_field_has_no_value(codec, key_value):
    record = application(application_id=None)
    if key_value is not None:
        record["application_id"] = key_value
    state = accepted(decode_input(codec, record, key=b"KAFKA-KEY"))
    assert state.record_id == "KAFKA-KEY"


def test_a_record_without_id_field_value_or_kafka_key_is_known_by_a_hash_of_its_bytes(codec):
    first = accepted(decode_input(codec, application(application_id=None)))
    again = accepted(decode_input(codec, application(application_id=None), offset=9))
    other = accepted(decode_input(codec, application(application_id=None, name="Ann Lee")))
    assert first.record_id == again.record_id, "a redelivery keeps its id"
    assert first.record_id.startswith("rec-")
    assert len(first.record_id) == 36
    assert other.record_id != first.record_id


def test_a_numeric_key_field_value_becomes_a_string_record_id(codec):
    assert accepted(decode_input(codec, application(application_id=42))).record_id == "42"


def test_input_record_carries_its_tenant_source_trace_and_arrival_time(codec):
    state = accepted(
        decode_input(
            codec, application(), offset=17, partition=3, headers=[("traceparent", TRACEPARENT)]
        )
    )
    assert state.data == application()
    assert state.tenant == "retail"
    assert state.extras["source"] == {
        "topic": INPUT_TOPIC,
        "partition": 3,
        "offset": 17,
        "timestamp": TIMESTAMP_MS,
    }
    assert state.extras["trace"] == TRACEPARENT.decode()
    assert state.received_at == TIMESTAMP_MS / 1000
    assert state.results == {}


def test_input_without_a_timestamp_is_received_now(codec):
    before = time.time()
    state = accepted(decode_input(codec, application(), timestamp_ms=-1))
    assert before <= state.received_at <= time.time()


def test_replayed_input_keeps_its_attempt_number_from_the_dlq_attempt_header(codec):
    state = accepted(decode_input(codec, application(), headers=[("dlq.attempt", b"3")]))
    assert state.extras["attempt"] == 3


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"null", "NoneType")],
)
def test_json_that_is_not_an_object_is_dead_lettered_as_not_an_object(codec, value, kind):
    outcome = rejected(decode_input(codec, value, key=b"K-1"))
    assert outcome.letter.reason is DeadLetterReason.DECODE_ERROR
    assert outcome.letter.message == f"not a JSON object but {kind}"
    assert outcome.letter.stage == "preprocessing"
    assert outcome.record_id == "K-1"


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe{}", b'{"name": "Jos\xe9"}', b'{"application_id": "APP-1"', b"not json"],
    ids=["binary", "latin-1", "truncated", "text"],
)
def test_undecodable_bytes_are_dead_lettered_as_decode_error(codec, value):
    outcome = rejected(decode_input(codec, value))
    assert outcome.letter.reason is DeadLetterReason.DECODE_ERROR
    assert outcome.letter.message.startswith("not valid JSON: ")
    assert outcome.record_id is None


@pytest.mark.parametrize("value", [None, b""], ids=["tombstone", "empty"])
def test_an_empty_message_is_dead_lettered_as_decode_error(codec, value):
    outcome = rejected(decode_input(codec, value, key=b"K-1"))
    assert outcome.letter.reason is DeadLetterReason.DECODE_ERROR
    assert outcome.letter.message == "empty message"
    assert outcome.record_id == "K-1"


def test_value_over_the_size_limit_is_dead_lettered_as_too_large_before_it_is_parsed():
    small = Codec(onboarding().plan, max_message_bytes=1024)
    outcome = rejected(decode_input(small, b"[" * 1025, key=b"K-9"))
    assert outcome.letter.reason is DeadLetterReason.TOO_LARGE
    assert outcome.letter.message == "message of 1025 bytes is over the limit of 1024"
    assert outcome.record_id == "K-9"


def test_size_limit_applies_to_input_only_not_to_envelopes_between_stages():
    small = Codec(onboarding().plan, max_message_bytes=1024)
    state = travelled_state(small)
    state.data["notes"] = "x" * 2048
    encoded = small.envelope(state)
    assert len(encoded) > 1024
    later = accepted(small.decode(message(encoded), "data_quality", first=False))
    assert later.data["notes"] == "x" * 2048


def test_value_exactly_at_the_size_limit_is_accepted():
    small = Codec(onboarding().plan, max_message_bytes=1024)
    record = {"application_id": "APP-1", "pad": ""}
    record["pad"] = "x" * (1024 - len(orjson.dumps(record)))
    assert len(orjson.dumps(record)) == 1024
    assert accepted(decode_input(small, record)).record_id == "APP-1"


def test_input_failing_the_input_schema_is_dead_lettered_as_schema_invalid_with_its_id():
    checked = Codec(onboarding().plan, input_schema=SCHEMA)
    outcome = rejected(decode_input(checked, application(annual_income=-5)))
    assert outcome.letter.reason is DeadLetterReason.SCHEMA_INVALID
    assert outcome.letter.message == "annual_income: fails 'minimum' 0"
    assert outcome.letter.error_class == "ValidationError"
    assert outcome.record_id == "APP-1"


def test_input_missing_a_required_field_names_the_record_as_the_failing_place():
    checked = Codec(onboarding().plan, input_schema=SCHEMA)
    outcome = rejected(decode_input(checked, application(email=None)))
    assert outcome.letter.reason is DeadLetterReason.SCHEMA_INVALID
    assert outcome.letter.message == '(record): fails \'required\' ["application_id","email"]'


def test_input_matching_the_input_schema_becomes_a_record():
    checked = Codec(onboarding().plan, input_schema=SCHEMA)
    assert accepted(decode_input(checked, application())).record_id == "APP-1"


def test_an_input_schema_that_is_not_a_json_schema_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^input\.schema: not a valid JSON Schema: "):
        Codec(onboarding().plan, input_schema={"type": "no-such-type"})


# -- the envelope ---------------------------------------------------------------------------


def test_envelope_decoded_at_a_later_stage_gives_back_the_same_record(codec):
    state = travelled_state(codec)
    encoded = codec.envelope(state)
    later = accepted(codec.decode(message(encoded, key=b"APP-1"), "data_quality", first=False))
    assert later.record_id == state.record_id
    assert later.data == state.data
    assert {k: r.to_dict() for k, r in later.results.items()} == {
        k: r.to_dict() for k, r in state.results.items()
    }
    assert [a.to_dict() for a in later.audit] == [a.to_dict() for a in state.audit]
    assert (later.cost_total, later.cost_by_rule) == (0.05, {"normalize_address": 0.05})
    assert later.tenant == "retail"
    assert later.extras == state.extras
    assert later.received_at == TIMESTAMP_MS / 1000
    assert codec.envelope(later) == encoded


def test_envelope_names_the_configuration_that_produced_it(codec):
    body = orjson.loads(codec.envelope(travelled_state(codec)))
    plan = codec.plan
    assert (body["pipeline"], body["config_version"], body["config_hash"]) == (
        "customer_onboarding",
        "2.1.0",
        plan.config_hash,
    )
    assert body["trace"] == TRACEPARENT.decode()


def test_envelope_conforms_to_the_committed_envelope_schema(codec):
    assert schema_errors("envelope", codec.envelope(travelled_state(codec))) == []


def test_envelope_of_a_replayed_record_keeps_its_attempt_and_conforms_to_the_schema(codec):
    state = accepted(decode_input(codec, application(), headers=[("dlq.attempt", b"2")]))
    encoded = codec.envelope(state)
    assert orjson.loads(encoded)["attempt"] == 2
    assert schema_errors("envelope", encoded) == []
    later = accepted(codec.decode(message(encoded), "data_quality", first=False))
    assert later.extras["attempt"] == 2


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"record_id": None}, id="no-record-id"),
        pytest.param({"data": [1, 2]}, id="data-not-an-object"),
        pytest.param({"results": []}, id="results-not-an-object"),
        pytest.param({"results": {"r": "PASS"}}, id="result-not-an-object"),
        pytest.param({"results": {"r": {"outcome": "MAYBE"}}}, id="unknown-outcome"),
        pytest.param({"cost": "free"}, id="cost-not-an-object"),
        pytest.param({"audit": [1]}, id="audit-entry-not-an-object"),
        pytest.param(
            {"audit": [{"stage": "s", "started_at": 1, "duration_ms": 1, "route": "forward"}]},
            id="audit-time-not-iso",
        ),
        pytest.param({"source": "elsewhere"}, id="source-not-an-object"),
        pytest.param({"attempt": "twice"}, id="attempt-not-a-number"),
    ],
)
def test_malformed_envelope_at_a_later_stage_is_dead_lettered_not_raised(codec, change):
    body = orjson.loads(codec.envelope(travelled_state(codec)))
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    outcome = rejected(codec.decode(message(body, key=b"APP-1"), "data_quality", first=False))
    assert outcome.letter.reason is DeadLetterReason.DECODE_ERROR
    assert outcome.letter.message.startswith("not a valid envelope: ")
    assert outcome.record_id == "APP-1"


def test_an_envelope_with_an_empty_record_id_is_dead_lettered_as_decode_error(codec):
    body = orjson.loads(codec.envelope(travelled_state(codec)))
    body["record_id"] = ""
    outcome = rejected(codec.decode(message(body, key=b"APP-1"), "data_quality", first=False))
    assert outcome.letter.reason is DeadLetterReason.DECODE_ERROR
    assert outcome.letter.message == "not a valid envelope: record_id is empty"


def test_plain_input_on_a_stage_topic_is_dead_lettered_as_not_a_valid_envelope(codec):
    outcome = rejected(codec.decode(message(application()), "data_quality", first=False))
    assert outcome.letter.message == "not a valid envelope: record_id is missing"


@pytest.mark.parametrize(
    ("record_id", "kind"),
    [(None, "null"), (42, "number"), (True, "boolean"), (["APP-1"], "array"), ({}, "object")],
    ids=["null", "number", "boolean", "array", "object"],
)
def test_an_envelope_whose_record_id_is_not_a_string_is_dead_lettered_as_decode_error(
    codec, record_id, kind
):
    body = orjson.loads(codec.envelope(travelled_state(codec)))
    body["record_id"] = record_id
    outcome = rejected(codec.decode(message(body, key=b"APP-1"), "data_quality", first=False))
    assert outcome.letter.reason is DeadLetterReason.DECODE_ERROR
    assert outcome.letter.message == f"not a valid envelope: record_id must be a string, not {kind}"
    assert outcome.record_id == "APP-1"


# -- decisions ------------------------------------------------------------------------------


def decision_of(codec: Codec, status: Status, **kwargs) -> Decision:
    plan = codec.plan
    return Decision(
        state=travelled_state(codec),
        status=status,
        decided_by_stage="compliance",
        reasons=["kyc_identity_verification: identity could not be verified"],
        failed_rules={"compliance": ["kyc_identity_verification"]},
        decided_at=TIMESTAMP_MS / 1000 + 0.25,
        pipeline=plan.name,
        config_version=plan.version,
        config_hash=plan.config_hash,
        **kwargs,
    )


@pytest.mark.parametrize("status", list(Status))
def test_decision_conforms_to_the_committed_decision_schema(codec, status):
    assert schema_errors("decision", codec.decision(decision_of(codec, status))) == []


def test_decision_with_a_dead_letter_and_a_budget_conforms_to_the_decision_schema(codec):
    letter = DeadLetter(
        DeadLetterReason.BUDGET_EXCEEDED, "compliance", "over budget", "kyc", "Budget", 1
    )
    decision = decision_of(codec, Status.DEAD_LETTER, dead_letter=letter, budget=1.0)
    body = orjson.loads(codec.decision(decision))
    assert body["dead_letter"]["reason"] == "budget_exceeded"
    assert body["cost"]["budget"] == 1.0
    assert schema_errors("decision", body) == []


def test_decision_carries_the_input_source_trace_and_latency(codec):
    body = orjson.loads(codec.decision(decision_of(codec, Status.REJECTED)))
    assert body["record_id"] == "APP-1"
    assert body["status"] == "rejected"
    assert body["source"]["offset"] == 0
    assert body["trace"] == TRACEPARENT.decode()
    assert body["latency_ms"] == 250.0
    assert body["tenant"] == "retail"


def test_decision_data_can_be_replaced_by_a_masked_copy(codec):
    decision = decision_of(codec, Status.APPROVED)
    body = orjson.loads(codec.decision(decision, {"ssn": "***"}))
    assert body["data"] == {"ssn": "***"}


# -- dead-letter headers --------------------------------------------------------------------


def dead_letter_headers(codec: Codec, **kwargs) -> list[tuple[str, bytes]]:
    letter = DeadLetter(
        DeadLetterReason.RULE_ERROR,
        "compliance",
        "kyc said 503",
        rule="kyc_identity_verification",
        error_class="ServiceError",
        attempts=3,
    )
    incoming = message(b"{}", key=b"APP-1", offset=41, partition=2, **kwargs)
    return codec.dead_letter_headers(letter, incoming, "APP-1", attempt=2)


def test_dead_letter_headers_are_the_documented_names_plus_record_pipeline_hash_and_time(codec):
    names = [name for name, _ in dead_letter_headers(codec)]
    assert names == DOCUMENTED_HEADERS + ADDED_HEADERS


def test_dead_letter_headers_carry_the_original_position_and_why(codec):
    before = time.time()
    headers = dict(dead_letter_headers(codec))
    assert {k: v.decode() for k, v in headers.items() if k != "dlq.failed_at"} == {
        "dlq.original.topic": INPUT_TOPIC,
        "dlq.original.partition": "2",
        "dlq.original.offset": "41",
        "dlq.original.timestamp": str(TIMESTAMP_MS),
        "dlq.stage": "compliance",
        "dlq.rule": "kyc_identity_verification",
        "dlq.reason": "rule_error",
        "dlq.exception.class": "ServiceError",
        "dlq.exception.message": "kyc said 503",
        "dlq.attempt": "2",
        "dlq.record_id": "APP-1",
        "dlq.pipeline": "customer_onboarding",
        "dlq.config_hash": codec.plan.config_hash,
    }
    failed_at = datetime.fromisoformat(headers["dlq.failed_at"].decode()).timestamp()
    assert before - 0.001 <= failed_at <= time.time()


def test_dead_letter_headers_pass_the_traceparent_through(codec):
    headers = dead_letter_headers(codec, headers=[("traceparent", TRACEPARENT)])
    assert headers[-1] == ("traceparent", TRACEPARENT)
    assert "traceparent" not in dict(dead_letter_headers(codec))


def test_dead_letter_of_an_unknown_record_has_an_empty_record_id_header(codec):
    letter = DeadLetter(DeadLetterReason.DECODE_ERROR, "preprocessing", "empty message")
    headers = dict(codec.dead_letter_headers(letter, message(None), None, 1))
    assert headers["dlq.record_id"] == b""
    assert headers["dlq.rule"] == b""


def test_dead_letter_exception_message_header_is_cut_at_1000_characters(codec):
    letter = DeadLetter(DeadLetterReason.INTERNAL_ERROR, "compliance", "é" * 5000)
    headers = dict(codec.dead_letter_headers(letter, message(b"{}"), "APP-1", 1))
    assert headers["dlq.exception.message"].decode() == "é" * 1000


def test_a_repeated_header_is_read_as_its_last_value():
    incoming = message(b"{}", headers=[("traceparent", b"first"), ("traceparent", b"last")])
    assert incoming.header("traceparent") == b"last"
    assert incoming.header("missing") is None
