"""The ``pii:`` section: how ``pii_fields`` are protected. Mistakes are located like every other
configuration error; weak choices load with a warning."""

from __future__ import annotations

import re

import pytest
from config_helpers import base_config, errors_of, load

from stream_engine.core.executor import Executor
from stream_engine.core.state import RecordState

LOCATED = re.compile(r"^[\w.\[\]-]+: .+ \(line \d+\)$")
KEY = "a-long-random-secret"


def test_pii_fields_alone_mask_without_touching_decisions(tmp_path):
    plan = load(tmp_path, base_config(pii_fields=["ssn", "date_of_birth"])).plan
    assert plan.pii_fields == ("ssn", "date_of_birth")
    assert (plan.pii.mode, plan.pii.hash_key, plan.pii.mask_decisions) == ("mask", None, False)


def test_a_hash_key_comes_from_the_environment_and_is_kept_out_of_reprs(tmp_path):
    config = base_config(
        pii_fields=["ssn"],
        pii={"mode": "hash", "hash_key": "${PII_KEY}", "mask_decisions": True},
    )
    compiled = load(tmp_path, config, environ={"PII_KEY": KEY})
    assert compiled.plan.pii.hash_key == KEY.encode()
    assert compiled.plan.pii.mask_decisions is True
    assert KEY not in repr(compiled.plan) + repr(compiled.config)
    assert compiled.warnings == []


def test_pii_mistakes_are_each_located(tmp_path):
    config = base_config(
        pii_fields=["ssn", "", "ssn"],
        pii={"mode": "redact", "hash_key": "${PII_KEY}", "mask_decision": True},
    )
    errors = errors_of(tmp_path, config, environ={"PII_KEY": ""})
    assert all(LOCATED.match(e) for e in errors), errors
    located = {e.split(":")[0]: e for e in errors}
    assert set(located) == {
        "pii_fields[1]",
        "pii_fields[2]",
        "pii.mode",
        "pii.hash_key",
        "pii.mask_decision",
    }
    assert "'ssn' is listed twice" in located["pii_fields[2]"]
    assert "'mask' or 'hash'" in located["pii.mode"]
    assert "must not be empty" in located["pii.hash_key"]
    assert "did you mean 'mask_decisions'" in located["pii.mask_decision"]


def test_hashing_without_a_key_warns_that_it_can_be_reversed(tmp_path):
    compiled = load(tmp_path, base_config(pii_fields=["ssn"], pii={"mode": "hash"}))
    [warning] = compiled.warnings
    assert warning.startswith("pii.mode: hash without pii.hash_key is plain SHA-256")


def test_a_record_id_taken_from_a_pii_field_is_a_warning(tmp_path):
    config = base_config(pii_fields=["ssn"], input={"key_field": "ssn"})
    [warning] = load(tmp_path, config).warnings
    assert warning.startswith("input.key_field: 'ssn' is a PII field")


def test_a_pii_section_without_pii_fields_warns_that_nothing_is_protected(tmp_path):
    [warning] = load(tmp_path, base_config(pii={"mask_decisions": True})).warnings
    assert warning == "pii: no pii_fields are listed, so nothing is protected"


def hashing(key: str, **pii: object) -> dict[str, object]:
    return base_config(pii_fields=["ssn"], pii={"mode": "hash", "hash_key": key, **pii})


def test_a_short_hash_key_is_a_warning_that_says_why(tmp_path):
    [warning] = load(tmp_path, hashing("${PII_KEY}"), environ={"PII_KEY": "k"}).warnings
    assert warning.startswith("pii.hash_key: 1 byte(s) is short: anyone who knows one value")
    assert "at least 16 random bytes" in warning
    assert load(tmp_path, hashing("${PII_KEY}"), environ={"PII_KEY": "k" * 16}).warnings == []


@pytest.mark.parametrize("written", [KEY, "${PII_KEY:-" + KEY + "}", "prefix-${PII_KEY}"])
def test_a_hash_key_written_in_the_file_is_a_warning(tmp_path, written):
    [warning] = load(tmp_path, hashing(written), environ={"PII_KEY": KEY}).warnings
    assert warning.startswith("pii.hash_key: written in the file")
    assert KEY not in warning


def test_date_fields_must_be_pii_fields_and_pii_paths_need_every_part(tmp_path):
    config = base_config(
        pii_fields=["ssn", "applicant..ssn", ".dob", "applicant.dob"],
        pii={"date_fields": ["applicant.dob", "born"]},
    )
    errors = errors_of(tmp_path, config)
    assert all(LOCATED.match(e) for e in errors), errors
    located = {e.split(":")[0]: e for e in errors}
    assert set(located) == {"pii_fields[1]", "pii_fields[2]", "pii.date_fields[1]"}
    assert "'applicant..ssn' has an empty part" in located["pii_fields[1]"]
    assert "'born' is not listed in pii_fields" in located["pii.date_fields[1]"]


def test_the_pii_options_reach_the_plan(tmp_path):
    config = base_config(
        pii_fields=["applicant.dob"],
        pii={"dates": "year", "date_fields": ["applicant.dob"], "reveal_derived": True},
    )
    plan = load(tmp_path, config).plan
    assert plan.pii_fields == ("applicant.dob",)
    assert (plan.pii.dates, plan.pii.date_fields, plan.pii.reveal_derived) == (
        "year",
        ("applicant.dob",),
        True,
    )


async def test_a_nested_pii_field_in_the_file_protects_the_nested_value(tmp_path):
    config = base_config(pii_fields=["applicant.ssn"], pii={"mask_decisions": True})
    plan = load(tmp_path, config).plan
    record = {"name": "Jane", "applicant": {"ssn": "123-45-6789"}}
    decision = await Executor(plan).run_record(RecordState("r1", record))
    assert decision.to_dict()["data"]["applicant"] == {"ssn": "*******6789"}


def test_a_rule_that_copies_an_age_from_a_pii_date_is_warned_at_its_param(tmp_path):
    config = base_config(pii_fields=["dob"])
    config["stages"]["data_quality"]["rules"]["age"] = {
        "class": "MinimumAge",
        "params": {"field": "dob", "minimum_age": 18, "age_field": "age"},
    }
    [warning] = load(tmp_path, config).warnings
    assert warning.startswith(
        "stages.data_quality.rules.age.params.age_field: 'age' holds the age derived from PII "
        "field 'dob'"
    )
    config["pii"] = {"reveal_derived": True}
    assert load(tmp_path, config).warnings == []


async def test_minimum_age_loaded_with_a_pii_date_of_birth_does_not_report_the_age(tmp_path):
    config = base_config(pii_fields=["dob"])
    config["stages"] = {
        "checks": {
            "rules": {"age": {"class": "MinimumAge", "params": {"field": "dob", "minimum_age": 18}}}
        }
    }
    plan = load(tmp_path, config).plan
    decision = await Executor(plan).run_record(RecordState("r1", {"dob": "1985-06-14"}))
    result = decision.state.results["age"]
    assert (result.message, result.details) == ("applicant is at least 18", None)
