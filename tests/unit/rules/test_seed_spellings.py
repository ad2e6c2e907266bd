"""Seed 000's spellings, accepted wherever the README says so: ``field_name`` for a rule's
field, ``required_fields``, and ``parallel_execution``, ``timeout_seconds`` and
``execution_settings`` in the pipeline file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rule_helpers import check, make

from stream_engine.errors import ConfigErrors
from stream_engine.pipeline import load_pipeline
from stream_engine.rules import RULES

#: The other params each class needs besides its field.
NEEDS: dict[str, dict[str, Any]] = {
    "AcceptedValues": {"values": ["a"]},
    "DerivedField": {"expr": "1"},
    "DeterministicId": {"hash_fields": ["email"]},
    "DistinctCount": {"key": "card", "window": "1h", "max_distinct": 3},
    "MinimumAge": {"minimum_age": 18},
    "NumericRange": {"min": 0},
    "Regex": {"pattern": "a"},
    "StringLength": {"max_length": 3},
}
SINGLE_FIELD = [name for name in RULES.names() if "field" in RULES.get(name).Params.model_fields]


def test_the_rules_with_one_field_are_the_ones_seed_000_names_with_field_name():
    assert {"EmailFormat", "NormalizePhone", "PhoneFormat", "NameParsing"} <= set(SINGLE_FIELD)


@pytest.mark.parametrize("name", SINGLE_FIELD)
def test_every_rule_with_a_field_accepts_seed_000s_field_name(name):
    rule = make(name, field_name="target", **NEEDS.get(name, {}))

    assert rule.params.field == "target"


def test_trim_whitespace_accepts_seed_000s_one_field_name():
    rule = make("TrimWhitespace", field_name="name")

    verdict, data = check(rule, {"name": "  Jane Doe  "})

    assert rule.params.fields == ["name"]
    assert data["name"] == "Jane Doe"
    assert verdict.outcome.value == "PASS"


def test_trim_whitespace_still_takes_a_list_of_fields():
    assert make("TrimWhitespace", fields=["a", "b"]).params.fields == ["a", "b"]
    assert make("TrimWhitespace", field_names=["a"]).params.fields == ["a"]


def test_required_fields_accepts_seed_000s_required_fields_and_one_field_name():
    assert make("RequiredFields", required_fields=["a", "b"]).params.fields == ["a", "b"]
    assert make("RequiredFields", field_name="a").params.fields == ["a"]


SEED_PIPELINE = """\
pipeline: seedy
version: "1"
input: {key_field: id}
execution_settings: {stop_on_stage_failure: false}
services:
  kyc: {class: SimulatedService, timeout_seconds: 4, params: {fields: {verified: "true"}}}
stages:
  preprocessing:
    parallel_execution: true
    timeout_seconds: 10
    rules:
      trim_name: {class: TrimWhitespace, params: {field_name: name}, timeout_seconds: 2}
      normalize_phone:
        class: NormalizePhone
        params: {field_name: phone, country_code: US, format: E164}
  data_quality:
    rules:
      required_fields: {class: RequiredFields, params: {required_fields: [name, phone]}}
      kyc_check:
        class: ServiceCheck
        params: {service: "service:KYCService:kyc", pass_when: response.verified}
        timeout_seconds: 3
"""


def test_a_pipeline_in_seed_000s_spellings_loads_with_their_meanings(tmp_path: Path):
    path = tmp_path / "seed.yaml"
    path.write_text(SEED_PIPELINE)

    pipeline = load_pipeline(path)

    plan = pipeline.plan
    assert plan.stop_on_stage_failure is False
    preprocessing = plan.stage("preprocessing")
    assert preprocessing.parallel is True
    assert preprocessing.timeout_s == 10
    trim = next(r for r in preprocessing.rules if r.rule_id == "trim_name")
    assert trim.rule.params.fields == ["name"]
    assert trim.timeout_s == 2
    kyc = next(r for r in plan.stage("data_quality").rules if r.rule_id == "kyc_check")
    assert kyc.timeout_s == 3
    assert pipeline.config.services["kyc"].timeout_s == 4


def test_a_key_given_in_both_spellings_says_so_rather_than_unknown_key(tmp_path: Path):
    path = tmp_path / "seed.yaml"
    path.write_text(
        SEED_PIPELINE.replace("    timeout_seconds: 10\n", "    timeout_s: 10\n")
        + "environments:\n  development:\n    stages: {preprocessing: {timeout_seconds: 5}}\n"
    )

    with pytest.raises(ConfigErrors) as raised:
        load_pipeline(path, "development")

    assert [str(e).split(" (line")[0] for e in raised.value.errors] == [
        "stages.preprocessing.timeout_seconds: another spelling of 'timeout_s', which is given "
        "too (an environment overlay in the other spelling?): keep one"
    ]
