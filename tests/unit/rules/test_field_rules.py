"""Field checks: RequiredFields, Regex, NumericRange, AcceptedValues, StringLength."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules.fields import (
    AcceptedValues,
    NumericRange,
    Regex,
    RequiredFields,
    StringLength,
)


def run(rule: Any, data: dict[str, Any]) -> Verdict:
    verdict: Verdict = rule.evaluate(RuleContext(record_id="r1", data=data, results={}))
    return verdict


# --- RequiredFields ------------------------------------------------------------------------


def test_required_fields_pass_when_every_field_has_a_value():
    rule = RequiredFields.from_params({"fields": ["a", "b"]})
    verdict = run(rule, {"a": "x", "b": 0, "extra": None})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details is None


def test_required_fields_details_list_the_missing_fields_in_configured_order():
    rule = RequiredFields.from_params({"fields": ["email", "phone", "ssn", "name"]})
    verdict = run(rule, {"name": "Ada", "email": None})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.details is not None
    assert verdict.details["missing_fields"] == ["email", "phone", "ssn"]
    assert verdict.message == "missing required field(s): email, phone, ssn"


def test_required_fields_describe_each_missing_field_with_a_default_description():
    rule = RequiredFields.from_params(
        {"fields": ["email", "phone"], "field_descriptions": {"email": "We need an e-mail"}}
    )
    verdict = run(rule, {})
    assert verdict.details is not None
    assert verdict.details["field_descriptions"] == {
        "email": "We need an e-mail",
        "phone": "Field 'phone' is required",
    }


def test_descriptions_are_given_only_for_fields_that_are_missing():
    rule = RequiredFields.from_params(
        {"fields": ["email", "phone"], "field_descriptions": {"email": "e", "phone": "p"}}
    )
    verdict = run(rule, {"email": "ada@example.com"})
    assert verdict.details is not None
    assert verdict.details["field_descriptions"] == {"phone": "p"}


@pytest.mark.parametrize("blank", ["", " ", "\t\n "])
def test_blank_string_counts_as_missing(blank: str):
    rule = RequiredFields.from_params({"fields": ["name"]})
    verdict = run(rule, {"name": blank})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.details is not None
    assert verdict.details["missing_fields"] == ["name"]


def test_null_counts_as_missing():
    rule = RequiredFields.from_params({"fields": ["name"]})
    assert run(rule, {"name": None}).outcome is Outcome.FAIL


@pytest.mark.parametrize("value", [0, 0.0, False, [], {}])
def test_falsy_non_string_values_are_present(value: Any):
    rule = RequiredFields.from_params({"fields": ["x"]})
    assert run(rule, {"x": value}).outcome is Outcome.PASS


def test_required_fields_accept_seed_spelling_required_fields():
    rule = RequiredFields.from_params({"required_fields": ["a"]})
    assert run(rule, {}).outcome is Outcome.FAIL


def test_required_fields_need_at_least_one_field():
    with pytest.raises(ValidationError):
        RequiredFields.from_params({"fields": []})


# --- Regex ---------------------------------------------------------------------------------


def test_regex_passes_a_full_match_and_fails_a_partial_one_by_default():
    rule = Regex.from_params({"field": "zip", "pattern": r"\d{5}"})
    assert run(rule, {"zip": "12345"}).outcome is Outcome.PASS
    verdict = run(rule, {"zip": "12345-6789"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == r"zip does not match \d{5}"


def test_regex_searches_anywhere_when_full_match_is_off():
    rule = Regex.from_params({"field": "note", "pattern": r"\d{3}", "full_match": False})
    assert run(rule, {"note": "call 555 now"}).outcome is Outcome.PASS
    assert run(rule, {"note": "no digits"}).outcome is Outcome.FAIL


def test_regex_ignore_case():
    strict = Regex.from_params({"field": "code", "pattern": "[A-Z]{2}"})
    lenient = Regex.from_params({"field": "code", "pattern": "[A-Z]{2}", "ignore_case": True})
    assert run(strict, {"code": "ny"}).outcome is Outcome.FAIL
    assert run(lenient, {"code": "ny"}).outcome is Outcome.PASS


def test_regex_matches_a_number_as_its_text():
    rule = Regex.from_params({"field": "zip", "pattern": r"\d{5}"})
    assert run(rule, {"zip": 12345}).outcome is Outcome.PASS


@pytest.mark.parametrize("value", [["12345"], {"zip": "12345"}])
def test_regex_fails_a_list_or_object(value: Any):
    rule = Regex.from_params({"field": "zip", "pattern": r".*"})
    verdict = run(rule, {"zip": value})
    assert verdict.outcome is Outcome.FAIL
    assert "must be text" in verdict.message


def test_regex_uses_the_custom_message_and_never_the_value():
    rule = Regex.from_params({"field": "ssn", "pattern": r"\d{9}", "message": "bad ssn"})
    verdict = run(rule, {"ssn": "secret-123"})
    assert verdict.message == "bad ssn"
    assert "secret-123" not in verdict.message


@pytest.mark.parametrize(
    ("missing", "outcome"),
    [("skip", Outcome.SKIP), ("fail", Outcome.FAIL), ("pass", Outcome.PASS)],
)
def test_regex_missing_policy_decides_a_blank_value(missing: str, outcome: Outcome):
    rule = Regex.from_params({"field": "zip", "pattern": r"\d{5}", "missing": missing})
    assert run(rule, {"zip": "  "}).outcome is outcome
    assert run(rule, {}).outcome is outcome


def test_regex_selects_the_pattern_by_another_field():
    rule = Regex.from_params(
        {
            "field": "postcode",
            "select_by": "country",
            "patterns": {"US": r"\d{5}", "GB": r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}"},
        }
    )
    assert run(rule, {"country": "US", "postcode": "10001"}).outcome is Outcome.PASS
    assert run(rule, {"country": "GB", "postcode": "SW1A 1AA"}).outcome is Outcome.PASS
    verdict = run(rule, {"country": "US", "postcode": "SW1A 1AA"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "postcode does not match the pattern for its country"


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [("pass", Outcome.PASS), ("fail", Outcome.FAIL), ("skip", Outcome.SKIP)],
)
def test_regex_unknown_selector_policy(policy: str, outcome: Outcome):
    rule = Regex.from_params(
        {
            "field": "postcode",
            "select_by": "country",
            "patterns": {"US": r"\d{5}"},
            "unknown_selector": policy,
        }
    )
    assert run(rule, {"country": "FR", "postcode": "75001"}).outcome is outcome
    assert run(rule, {"postcode": "75001"}).outcome is outcome


def test_regex_selector_values_are_compared_as_text():
    rule = Regex.from_params(
        {"field": "code", "select_by": "version", "patterns": {"2": r"v2-\d+"}}
    )
    assert run(rule, {"version": 2, "code": "v2-17"}).outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"field": "x", "pattern": "("}, "invalid regular expression"),
        ({"field": "x", "select_by": "y", "patterns": {"a": "["}}, "invalid regular expression"),
        ({"field": "x"}, "give either pattern"),
        ({"field": "x", "pattern": "a", "select_by": "y", "patterns": {"a": "b"}}, "either"),
        ({"field": "x", "select_by": "y"}, "select_by needs patterns"),
    ],
    ids=["bad-pattern", "bad-selected-pattern", "neither", "both", "selector-without-patterns"],
)
def test_regex_rejects_bad_params(params: dict[str, Any], error: str):
    with pytest.raises(ValidationError, match=error):
        Regex.from_params(params)


# --- NumericRange --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [18, 18.0, 65, 40.5])
def test_numeric_range_is_inclusive_by_default(value: float):
    rule = NumericRange.from_params({"field": "age", "min": 18, "max": 65})
    assert run(rule, {"age": value}).outcome is Outcome.PASS


def test_numeric_range_fails_below_min_and_above_max_naming_the_bound():
    rule = NumericRange.from_params({"field": "age", "min": 18, "max": 65})
    low = run(rule, {"age": 17.9})
    high = run(rule, {"age": 66})
    assert (low.outcome, low.message, low.details) == (
        Outcome.FAIL,
        "age must be at least 18",
        {"minimum": 18.0},
    )
    assert (high.outcome, high.message, high.details) == (
        Outcome.FAIL,
        "age must be at most 65",
        {"maximum": 65.0},
    )


def test_exclusive_bounds_reject_the_bound_itself():
    rule = NumericRange.from_params(
        {"field": "x", "min": 0, "max": 1, "exclusive_min": True, "exclusive_max": True}
    )
    at_min = run(rule, {"x": 0})
    at_max = run(rule, {"x": 1})
    assert at_min.outcome is Outcome.FAIL
    assert at_min.message == "x must be above 0"
    assert at_max.outcome is Outcome.FAIL
    assert at_max.message == "x must be below 1"
    assert run(rule, {"x": 0.5}).outcome is Outcome.PASS


def test_a_single_bound_is_enough():
    at_least = NumericRange.from_params({"field": "x", "minimum": 10})
    at_most = NumericRange.from_params({"field": "x", "maximum": 10})
    assert run(at_least, {"x": 1e12}).outcome is Outcome.PASS
    assert run(at_least, {"x": 9}).outcome is Outcome.FAIL
    assert run(at_most, {"x": -1e12}).outcome is Outcome.PASS
    assert run(at_most, {"x": 11}).outcome is Outcome.FAIL


@pytest.mark.parametrize("text", ["42", " 42.5 ", "1,000", "-3", "1e2"])
def test_numeric_text_is_read_as_a_number(text: str):
    rule = NumericRange.from_params({"field": "x", "min": -10, "max": 1000})
    assert run(rule, {"x": text}).outcome is Outcome.PASS


def test_numeric_text_out_of_range_fails():
    rule = NumericRange.from_params({"field": "x", "max": 999})
    assert run(rule, {"x": "1,000"}).outcome is Outcome.FAIL


def test_numeric_text_fails_when_allow_text_is_off():
    rule = NumericRange.from_params({"field": "x", "min": 0, "allow_text": False})
    verdict = run(rule, {"x": "42"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "x must be a number, got text"
    assert run(rule, {"x": 42}).outcome is Outcome.PASS


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_not_numbers(value: bool):
    rule = NumericRange.from_params({"field": "x", "min": 0, "max": 1})
    verdict = run(rule, {"x": value})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "x is not a number"


@pytest.mark.parametrize("value", ["abc", "nan", "inf", float("nan"), float("inf"), [1], {"v": 1}])
def test_non_numbers_and_non_finite_numbers_fail(value: Any):
    rule = NumericRange.from_params({"field": "x", "min": -1e308, "max": 1e308})
    verdict = run(rule, {"x": value})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "x is not a number"


@pytest.mark.parametrize(
    ("missing", "outcome"),
    [("skip", Outcome.SKIP), ("fail", Outcome.FAIL), ("pass", Outcome.PASS)],
)
def test_numeric_range_missing_policy(missing: str, outcome: Outcome):
    rule = NumericRange.from_params({"field": "x", "min": 0, "missing": missing})
    assert run(rule, {}).outcome is outcome
    assert run(rule, {"x": " "}).outcome is outcome


def test_numeric_range_rejects_min_greater_than_max():
    with pytest.raises(ValidationError, match=r"min \(10\) is greater than max \(1\)"):
        NumericRange.from_params({"field": "x", "min": 10, "max": 1})


def test_numeric_range_needs_a_bound():
    with pytest.raises(ValidationError, match="give min, max or both"):
        NumericRange.from_params({"field": "x"})


def test_numeric_range_accepts_equal_bounds():
    rule = NumericRange.from_params({"field": "x", "min": 5, "max": 5})
    assert run(rule, {"x": 5}).outcome is Outcome.PASS
    assert run(rule, {"x": 5.01}).outcome is Outcome.FAIL


# --- AcceptedValues ------------------------------------------------------------------------


def test_accepted_values_pass_a_listed_value_and_fail_another():
    rule = AcceptedValues.from_params({"field": "state", "values": ["NY", "CA"]})
    assert run(rule, {"state": "NY"}).outcome is Outcome.PASS
    verdict = run(rule, {"state": "TX"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "state is not an accepted value"
    assert verdict.details == {"accepted": 2}


def test_accepted_values_are_case_sensitive_by_default():
    rule = AcceptedValues.from_params({"field": "state", "values": ["NY"]})
    assert run(rule, {"state": "ny"}).outcome is Outcome.FAIL


@pytest.mark.parametrize("value", ["ny", "Ny", "NY", "nY"])
def test_accepted_values_can_ignore_case(value: str):
    rule = AcceptedValues.from_params(
        {"field": "state", "values": ["Ny", "ca"], "case_sensitive": False}
    )
    assert run(rule, {"state": value}).outcome is Outcome.PASS


def test_case_insensitive_matching_still_rejects_other_values():
    rule = AcceptedValues.from_params({"field": "state", "values": ["NY"], "case_sensitive": False})
    assert run(rule, {"state": "NJ"}).outcome is Outcome.FAIL


def test_accepted_values_compare_non_text_values_exactly():
    rule = AcceptedValues.from_params({"field": "tier", "values": [1, 2, 3]})
    assert run(rule, {"tier": 2}).outcome is Outcome.PASS
    assert run(rule, {"tier": "2"}).outcome is Outcome.FAIL


def test_accepted_values_can_list_unhashable_values():
    rule = AcceptedValues.from_params({"field": "tags", "values": [["a", "b"], {"k": 1}]})
    assert run(rule, {"tags": ["a", "b"]}).outcome is Outcome.PASS
    assert run(rule, {"tags": {"k": 1}}).outcome is Outcome.PASS
    assert run(rule, {"tags": ["b", "a"]}).outcome is Outcome.FAIL


def test_accepted_values_fail_a_missing_value_by_default():
    rule = AcceptedValues.from_params({"field": "state", "values": ["NY"]})
    assert run(rule, {}).outcome is Outcome.FAIL
    lenient = AcceptedValues.from_params({"field": "state", "values": ["NY"], "missing": "skip"})
    assert run(lenient, {"state": ""}).outcome is Outcome.SKIP


def test_accepted_values_accept_seed_spelling_allowed_states():
    rule = AcceptedValues.from_params({"field_name": "state", "allowed_states": ["NY"]})
    assert run(rule, {"state": "NY"}).outcome is Outcome.PASS


def test_accepted_values_need_at_least_one_value():
    with pytest.raises(ValidationError):
        AcceptedValues.from_params({"field": "state", "values": []})


# --- StringLength --------------------------------------------------------------------------


def test_string_length_passes_within_bounds_and_reports_the_length():
    rule = StringLength.from_params({"field": "name", "min_length": 2, "max_length": 5})
    verdict = run(rule, {"name": "Ada"})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"length": 3}


def test_string_length_bounds_are_inclusive():
    rule = StringLength.from_params({"field": "name", "min_length": 2, "max_length": 3})
    assert run(rule, {"name": "Al"}).outcome is Outcome.PASS
    assert run(rule, {"name": "Ada"}).outcome is Outcome.PASS


def test_string_length_fails_too_short_and_too_long():
    rule = StringLength.from_params({"field": "name", "min_length": 2, "max_length": 3})
    short = run(rule, {"name": "A"})
    long = run(rule, {"name": "Adam"})
    assert (short.outcome, short.details) == (Outcome.FAIL, {"length": 1})
    assert short.message == "name is shorter than 2 characters"
    assert (long.outcome, long.details) == (Outcome.FAIL, {"length": 4})
    assert long.message == "name is longer than 3 characters"


def test_string_length_strips_whitespace_unless_told_not_to():
    stripping = StringLength.from_params({"field": "name", "max_length": 3})
    raw = StringLength.from_params({"field": "name", "max_length": 3, "strip": False})
    assert run(stripping, {"name": "  Ada  "}).outcome is Outcome.PASS
    assert run(raw, {"name": "  Ada  "}).outcome is Outcome.FAIL


def test_string_length_counts_characters_not_bytes():
    rule = StringLength.from_params({"field": "name", "max_length": 4})
    assert run(rule, {"name": "Zoë™"}).outcome is Outcome.PASS


def test_string_length_fails_a_non_string():
    rule = StringLength.from_params({"field": "name", "min_length": 1})
    verdict = run(rule, {"name": 12345})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "name must be text, got int"


def test_string_length_skips_a_missing_value_by_default():
    rule = StringLength.from_params({"field": "name", "min_length": 1})
    assert run(rule, {}).outcome is Outcome.SKIP
    assert run(rule, {"name": "   "}).outcome is Outcome.SKIP


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"field": "x"}, "give min_length, max_length or both"),
        ({"field": "x", "min_length": 5, "max_length": 2}, "min_length is greater"),
        ({"field": "x", "min_length": -1}, "greater than or equal to 0"),
    ],
)
def test_string_length_rejects_bad_params(params: dict[str, Any], error: str):
    with pytest.raises(ValidationError, match=error):
        StringLength.from_params(params)
