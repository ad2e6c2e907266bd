"""The API's intake: request bodies become records through the first stage's own decoder, and
every refusal is a problem of its own kind, with nothing accepted from a refused batch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream_engine.api.intake import Intake, decision_href, is_batch
from stream_engine.api.problems import ApiProblem, ProblemKind
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.stage.codec import Codec

CONFIG = {
    "pipeline": "intake_test",
    "input": {
        "key_field": "id",
        "schema": {
            "type": "object",
            "properties": {"amount": {"type": "number"}},
            "required": ["amount"],
        },
        "limits": {"max_depth": 4},
    },
    "runtime": {"max_message_bytes": 2048},
    "stages": {"only": {"rules": {"present": {"class": "RequiredFields",
                                              "params": {"fields": ["amount"]}}}}},
}  # fmt: skip


def intake(config: dict[str, Any] | None = None, max_records: int = 3) -> Intake:
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "pipeline.yaml"
        path.write_text(yaml.safe_dump(config or CONFIG))
        pipeline = load_pipeline(path)
    return Intake(Codec.for_pipeline(pipeline), "intake_test.input", "only", max_records)


def refusal(body: bytes, config: dict[str, Any] | None = None) -> ApiProblem:
    with pytest.raises(ApiProblem) as caught:
        intake(config).read(body)
    return caught.value


def test_a_record_is_accepted_with_its_key_field_as_id_and_key() -> None:
    body = b'{"id": "A-1", "amount": 5}'
    [submission], batch = intake().read(body)
    assert not batch
    assert (submission.record_id, submission.key, submission.value) == ("A-1", b"A-1", body)


def test_each_record_gets_a_w3c_traceparent_of_its_own() -> None:
    records = {"records": [{"id": "A-1", "amount": 1}, {"id": "A-2", "amount": 2}]}
    submissions, batch = intake().read(orjson.dumps(records))
    assert batch
    traces = [s.trace for s in submissions]
    assert len(set(traces)) == 2
    assert all(t.startswith("00-") and len(t) == 55 and t.endswith("-01") for t in traces)


def test_a_callers_traceparent_keeps_its_trace_id() -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    [submission], _ = intake().read(b'{"id": "A-1", "amount": 5}', traceparent=caller)
    assert submission.trace.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert submission.trace != caller


@pytest.mark.parametrize(
    ("body", "kind", "status"),
    [
        (b"{not json", ProblemKind.INVALID_JSON, 400),
        (b"[1, 2]", ProblemKind.NOT_AN_OBJECT, 400),
        (b'"text"', ProblemKind.NOT_AN_OBJECT, 400),
        (b'{"id": "A-1"}', ProblemKind.SCHEMA_INVALID, 422),
        (b'{"amount": 5}', ProblemKind.MISSING_KEY_FIELD, 422),
        (b'{"id": "", "amount": 5}', ProblemKind.MISSING_KEY_FIELD, 422),
        (b'{"id": "A-1", "amount": 5, "x": {"a": {"b": {"c": {"d": 1}}}}}',
         ProblemKind.LIMIT_EXCEEDED, 422),
        (b'{"id": "A-1", "amount": 5, "pad": "' + b"x" * 3000 + b'"}', ProblemKind.TOO_LARGE, 413),
    ],
)  # fmt: skip
def test_a_bad_record_is_refused_with_its_own_kind_and_status(
    body: bytes, kind: ProblemKind, status: int
) -> None:
    problem = refusal(body)
    assert (problem.kind, problem.status) == (kind, status)
    assert problem.body()["type"].endswith(kind.value)


def test_a_batch_with_one_bad_record_is_refused_whole_naming_each_bad_record() -> None:
    records = {"records": [{"id": "A-1", "amount": 1}, {"id": "A-2"}, 7]}
    problem = refusal(orjson.dumps(records))
    errors = (problem.extra or {})["errors"]
    assert [e["pointer"] for e in errors] == ["/records/1", "/records/2"]
    assert [e["kind"] for e in errors] == ["schema-invalid", "not-an-object"]
    assert "nothing was published" in problem.detail


def test_a_batch_over_the_record_limit_is_refused_413() -> None:
    records = {"records": [{"id": f"A-{i}", "amount": i} for i in range(4)]}
    problem = refusal(orjson.dumps(records))
    assert (problem.kind, problem.status) == (ProblemKind.TOO_MANY_RECORDS, 413)


def test_an_empty_batch_is_refused() -> None:
    assert refusal(b'{"records": []}').status == 400


def test_without_a_key_field_the_id_is_generated_or_taken_from_record_id() -> None:
    config = {**CONFIG, "input": {}}
    generated = intake(config).read(b'{"amount": 1}')[0][0]
    assert generated.record_id.startswith("rec-")
    assert generated.key == generated.record_id.encode()
    given = intake(config).read(b'{"amount": 1}', record_id="order-77")[0][0]
    assert (given.record_id, given.key) == ("order-77", b"order-77")


def test_an_unusable_record_id_header_is_refused() -> None:
    config = {**CONFIG, "input": {}}
    with pytest.raises(ApiProblem) as caught:
        intake(config).read(b'{"amount": 1}', record_id="has space")
    assert caught.value.kind is ProblemKind.INVALID_RECORD_ID


def test_only_an_object_with_just_a_records_list_is_a_batch() -> None:
    assert is_batch({"records": []})
    assert not is_batch({"records": [], "id": "x"})
    assert not is_batch({"records": "x"})


def test_a_decision_link_quotes_the_record_id() -> None:
    assert decision_href("a/b c") == "/v1/decisions/a%2Fb%20c"
