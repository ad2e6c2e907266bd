"""``eval`` runs what a worker runs: the input checks of the first stage (size, schema,
limits), the envelope written, sealed and read between stages, and partial runs that refuse
to mislead. Each test names a difference the offline tools used to have with Kafka."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from stream_engine.cli import main

PIPELINE = """\
pipeline: cards
input:
  schema:
    type: object
    properties:
      amount: {type: number}
runtime:
  max_message_bytes: 2000
stages:
  enrich:
    rules:
      usd:
        class: DerivedField
        params: {field: amount_usd, expr: "double(data.amount) * 10.0"}
  limits:
    rules:
      limit:
        class: CrossFieldCheck
        params: {expr: "data.amount_usd < 10000.0", message: over the limit}
        cross_stage_dependencies: [usd]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cards.yaml"
    path.write_text(PIPELINE)
    return path


def evaluate(config: Path, *lines: str | dict, options: tuple[str, ...] = ()) -> Result:
    text = "".join((x if isinstance(x, str) else orjson.dumps(x).decode()) + "\n" for x in lines)
    result = CliRunner().invoke(main, ["eval", str(config), *options], input=text)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def answers(result: Result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_an_amount_sent_as_text_is_dead_lettered_schema_invalid_as_on_kafka(config):
    [answer] = answers(evaluate(config, {"amount": "120.00"}))
    assert answer["status"] == "dead_letter"
    assert answer["dead_letter"]["reason"] == "schema_invalid"
    assert answer["decided_by_stage"] == "enrich"


def test_a_record_over_max_message_bytes_is_too_large_as_on_kafka(config):
    [answer] = answers(evaluate(config, {"amount": 1, "pad": "x" * 3000}))
    assert answer["dead_letter"]["reason"] == "too_large"


def test_a_number_json_cannot_carry_in_the_input_is_a_decode_error(config):
    [answer] = answers(evaluate(config, '{"amount": 1e999}'))
    assert answer["dead_letter"]["reason"] == "decode_error"


def test_a_derived_infinity_is_an_error_of_its_rule_never_an_approval(config):
    [answer] = answers(evaluate(config, {"amount": 1e308}))
    assert answer["status"] == "dead_letter"
    assert answer["results"]["usd"]["outcome"] == "ERROR"
    assert "JSON can carry" in answer["results"]["usd"]["message"]


def test_a_record_without_an_id_gets_the_id_a_worker_gives_it(config):
    from stream_engine.runtime.stage.codec import stable_id

    line = orjson.dumps({"amount": 12})
    [answer] = answers(evaluate(config, line.decode()))
    assert answer["record_id"] == stable_id(line)
    assert answer["status"] == "approved"


def test_between_stages_the_record_is_what_the_envelope_carries(config):
    [answer] = answers(evaluate(config, {"amount": 12}))
    assert answer["data"]["amount_usd"] == 120.0
    assert [entry["stage"] for entry in answer["audit"]] == ["enrich", "limits"]
    assert answer["source"]["offset"] == 1  # offsets are line numbers


def test_every_line_gets_one_answer_in_input_order_even_when_bad(config):
    result = evaluate(config, {"amount": 1}, "not json", "[1]", {"amount": 99999})
    got = answers(result)
    assert [a["status"] for a in got] == ["approved", "dead_letter", "dead_letter", "rejected"]
    assert got[1]["record_id"] == "line-2"


def test_several_stages_run_in_pipeline_order_whatever_order_they_are_given(config):
    [answer] = answers(
        evaluate(config, {"amount": 99999}, options=("--stage", "limits", "--stage", "enrich"))
    )
    assert answer["stage"] == "limits"
    assert answer["route"] == "reject"
    assert set(answer["results"]) == {"usd", "limit"}


def test_a_stage_alone_is_refused_when_its_cross_stage_dependency_would_not_run(config):
    result = evaluate(config, {"amount": 12}, options=("--stage", "limits"))
    assert result.exit_code == 1
    assert "rule 'limit' of stage 'limits' needs the result of 'usd'" in result.stderr
    assert "Traceback" not in result.output


def test_a_stage_alone_uses_the_earlier_results_an_envelope_carries(config):
    [first] = answers(evaluate(config, {"amount": 12}, options=("--stage", "enrich")))
    assert first["route"] == "forward"
    envelope = {
        "record_id": first["record_id"],
        "data": first["data"],
        "results": first["results"],
    }
    [answer] = answers(evaluate(config, envelope, options=("--stage", "limits")))
    assert answer["results"]["usd"]["outcome"] == "PASS"
    assert answer["results"]["limit"]["outcome"] == "PASS"
    assert answer["route"] == "forward"


def test_an_unknown_stage_is_named_with_the_known_ones(config):
    result = evaluate(config, {"amount": 1}, options=("--stage", "limitz"))
    assert result.exit_code == 1
    assert "unknown stage 'limitz' (stages: enrich, limits)" in result.stderr


def test_stages_chosen_with_a_gap_hand_the_record_on_past_the_stages_left_out(tmp_path: Path):
    three = PIPELINE.replace(
        "  limits:\n",
        "  middle:\n    rules:\n"
        "      seen: {class: RequiredFields, params: {fields: [amount]}}\n"
        "  limits:\n",
    )
    path = tmp_path / "three.yaml"
    path.write_text(three)
    [answer] = answers(
        evaluate(path, {"amount": 99999}, options=("--stage", "enrich", "--stage", "limits"))
    )
    assert answer["stage"] == "limits"
    assert answer["route"] == "reject"
    assert set(answer["results"]) == {"usd", "limit"}


def test_a_stage_alone_masks_pii_once_whether_it_forwards_or_decides(tmp_path: Path):
    path = tmp_path / "masked.yaml"
    path.write_text(
        "pipeline: cards\npii_fields: [card]\npii: {mask_decisions: true, mode: hash}\n"
        "stages:\n"
        "  one: {rules: {r: {class: RequiredFields, params: {fields: [card]}}}}\n"
        "  two: {rules: {s: {class: RequiredFields, params: {fields: [card]}}}}\n"
    )
    card = {"card": "4111111111111111"}
    [whole] = answers(evaluate(path, card))
    [first] = answers(evaluate(path, card, options=("--stage", "one")))
    [last] = answers(evaluate(path, card, options=("--stage", "two")))
    assert whole["data"]["card"].startswith("sha256:")
    assert first["data"]["card"] == last["data"]["card"] == whole["data"]["card"]
