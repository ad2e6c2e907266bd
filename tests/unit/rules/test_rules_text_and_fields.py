"""Text clean-up and field checks: TrimWhitespace, NormalizeEmail, RequiredFields, Regex,
NumericRange, AcceptedValues, StringLength."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError
from rule_helpers import check, make

from stream_engine.core.outcome import Outcome

PASS, FAIL, SKIP = Outcome.PASS, Outcome.FAIL, Outcome.SKIP


def test_trim_strips_every_listed_field_and_leaves_others_alone():
    rule = make("TrimWhitespace", fields=["name", "city"])
    verdict, data = check(rule, {"name": "  Ann  Lee ", "city": "\tChicago\n", "note": " x "})
    assert data == {"name": "Ann  Lee", "city": "Chicago", "note": " x "}
    assert verdict.outcome is PASS
    assert verdict.details == {"trimmed": ["name", "city"]}


def test_trim_can_collapse_inner_spaces_and_change_case():
    rule = make("TrimWhitespace", fields=["name"], collapse_spaces=True, uppercase=["state"])
    _, data = check(rule, {"name": " Ann   Marie\tLee ", "state": " ny"})
    assert data == {"name": "Ann Marie Lee", "state": "NY"}


def test_trim_ignores_values_that_are_not_text():
    verdict, data = check(make("TrimWhitespace", fields=["age"]), {"age": 42})
    assert data == {"age": 42}
    assert verdict.message == "nothing to trim"


def test_normalize_email_lowercases_and_can_drop_dots_and_tags():
    _, data = check(make("NormalizeEmail", field="email"), {"email": " John.Smith@Example.COM "})
    assert data["email"] == "john.smith@example.com"
    rule = make("NormalizeEmail", field_name="email", remove_dots=True, remove_plus_tag=True)
    _, data = check(rule, {"email": "John.Smith+news@gmail.com"})
    assert data["email"] == "johnsmith@gmail.com"


def test_normalize_email_skips_a_missing_address():
    verdict, _ = check(make("NormalizeEmail", field="email"), {})
    assert verdict.outcome is SKIP


def test_required_fields_lists_what_is_missing_with_descriptions():
    rule = make(
        "RequiredFields",
        required_fields=["first_name", "email", "phone"],
        field_descriptions={"email": "Valid email address"},
    )
    verdict, _ = check(rule, {"first_name": "Ann", "email": "   ", "phone": None})
    assert verdict.outcome is FAIL
    assert verdict.message == "missing required field(s): email, phone"
    assert verdict.details == {
        "missing_fields": ["email", "phone"],
        "field_descriptions": {
            "email": "Valid email address",
            "phone": "Field 'phone' is required",
        },
    }


def test_required_fields_pass_when_all_are_present_even_falsy_numbers():
    verdict, _ = check(make("RequiredFields", fields=["a", "b"]), {"a": 0, "b": False})
    assert verdict.outcome is PASS


@pytest.mark.parametrize(
    ("value", "outcome"),
    [("123-45-6789", PASS), ("123456789", PASS), ("12-345-6789", FAIL), (123456789, PASS)],
)
def test_regex_matches_the_whole_value_by_default(value, outcome):
    rule = make("Regex", field="ssn", pattern=r"\d{3}-?\d{2}-?\d{4}")
    assert check(rule, {"ssn": value})[0].outcome is outcome


def test_regex_can_pick_its_pattern_by_another_field():
    rule = make(
        "Regex",
        field="zip",
        select_by="state",
        patterns={"CA": "^9[0-6]", "NY": "^1[0-4]"},
        full_match=False,
    )
    assert check(rule, {"zip": "94105", "state": "CA"})[0].outcome is PASS
    verdict, _ = check(rule, {"zip": "94105", "state": "NY"})
    assert verdict.outcome is FAIL
    assert verdict.message == "zip does not match the pattern for its state"
    assert check(rule, {"zip": "94105", "state": "ZZ"})[0].outcome is PASS


def test_regex_refuses_an_invalid_pattern_and_needs_exactly_one_way():
    with pytest.raises(ValidationError, match="invalid regular expression"):
        make("Regex", field="x", pattern="(")
    with pytest.raises(ValidationError, match="either pattern, or select_by"):
        make("Regex", field="x")


@pytest.mark.parametrize("pattern", ["(?=a)a", "(?<!a)b", r"(a)\1", "(?P<x>a)(?P=x)"])
def test_regex_refuses_lookarounds_and_backreferences_which_re2_cannot_match(pattern):
    with pytest.raises(ValidationError, match=r"invalid regular expression \(RE2 syntax\)"):
        make("Regex", field="x", pattern=pattern)
    with pytest.raises(ValidationError, match="RE2 syntax"):
        make("Regex", field="x", select_by="s", patterns={"a": "a", "b": pattern})


def test_regex_matches_in_linear_time_where_python_re_backtracks():
    rule = make("Regex", field="name", pattern="^([a-zA-Z]+ ?)+$")
    start = time.perf_counter()
    verdict, _ = check(rule, {"name": "a" * 27 + "!"})
    assert verdict.outcome is FAIL
    assert time.perf_counter() - start < 0.05


def test_regex_keeps_ignore_case_and_search_mode():
    assert (
        check(make("Regex", field="c", pattern="us", ignore_case=True), {"c": "US"})[0].outcome
        is PASS
    )
    assert check(make("Regex", field="c", pattern="us"), {"c": "US"})[0].outcome is FAIL
    assert (
        check(make("Regex", field="c", pattern="s", full_match=False), {"c": "us"})[0].outcome
        is PASS
    )
    assert check(make("Regex", field="c", pattern="s"), {"c": "us"})[0].outcome is FAIL


def test_regex_classes_are_ascii_in_re2():
    assert (
        check(make("Regex", field="zip", pattern=r"\d{5}"), {"zip": "\u0661" * 5})[0].outcome
        is FAIL
    )


def test_regex_skips_a_missing_field_unless_told_otherwise():
    assert check(make("Regex", field="x", pattern="a"), {})[0].outcome is SKIP
    assert check(make("Regex", field="x", pattern="a", missing="fail"), {})[0].outcome is FAIL


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        (18, PASS),
        (65, PASS),
        (17.99, FAIL),
        (66, FAIL),
        ("42", PASS),
        ("1,000", FAIL),
        ("abc", FAIL),
        (True, FAIL),
    ],
)
def test_numeric_range_accepts_numbers_and_numeric_text_within_bounds(value, outcome):
    rule = make("NumericRange", field="age", min=18, max=65)
    assert check(rule, {"age": value})[0].outcome is outcome


def test_numeric_range_bounds_can_be_exclusive_and_must_make_sense():
    rule = make("NumericRange", field="ratio", max=0.43, exclusive_max=True)
    assert check(rule, {"ratio": 0.43})[0].outcome is FAIL
    assert check(rule, {"ratio": 0.42})[0].outcome is PASS
    with pytest.raises(ValidationError, match="greater than max"):
        make("NumericRange", field="x", min=5, max=1)
    with pytest.raises(ValidationError, match="give min, max or both"):
        make("NumericRange", field="x")


def test_accepted_values_can_ignore_case():
    strict = make("AcceptedValues", field="state", allowed_states=["CA", "NY"])
    assert check(strict, {"state": "CA"})[0].outcome is PASS
    assert check(strict, {"state": "ca"})[0].outcome is FAIL
    loose = make("AcceptedValues", field="state", values=["CA", "NY"], case_sensitive=False)
    assert check(loose, {"state": "ca"})[0].outcome is PASS
    assert check(loose, {})[0].outcome is FAIL


@pytest.mark.parametrize(
    ("value", "outcome"), [("abcd", PASS), ("ab", FAIL), ("abcdefghijk", FAIL), (1234, FAIL)]
)
def test_string_length_checks_the_trimmed_length(value, outcome):
    rule = make("StringLength", field="code", min_length=3, max_length=10)
    assert check(rule, {"code": value})[0].outcome is outcome
