"""TrimWhitespace and NormalizeEmail: preprocessing rules that clean text fields in place."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules.text import NormalizeEmail, TrimWhitespace


def run(rule: Any, data: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results={})
    verdict = rule.evaluate(ctx)
    return verdict, ctx.data


# --- TrimWhitespace ------------------------------------------------------------------------


def test_trim_strips_leading_and_trailing_whitespace_of_every_listed_field():
    rule = TrimWhitespace.from_params({"fields": ["first_name", "city"]})
    verdict, data = run(rule, {"first_name": "  Ada \t", "city": "\nLondon  ", "note": "  x  "})
    assert verdict.outcome is Outcome.PASS
    assert data == {"first_name": "Ada", "city": "London", "note": "  x  "}


def test_trim_details_name_exactly_the_fields_it_changed():
    rule = TrimWhitespace.from_params({"fields": ["a", "b", "c"]})
    verdict, _ = run(rule, {"a": " x ", "b": "clean", "c": "y  "})
    assert verdict.details == {"trimmed": ["a", "c"]}
    assert "a" in verdict.message
    assert "c" in verdict.message


def test_trim_passes_without_details_when_nothing_needed_trimming():
    rule = TrimWhitespace.from_params({"fields": ["a"]})
    verdict, data = run(rule, {"a": "clean"})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "nothing to trim"
    assert verdict.details is None
    assert data == {"a": "clean"}


def test_trim_leaves_non_string_and_absent_fields_untouched():
    rule = TrimWhitespace.from_params({"fields": ["n", "flag", "absent", "none"]})
    verdict, data = run(rule, {"n": 42, "flag": True, "none": None})
    assert verdict.outcome is Outcome.PASS
    assert data == {"n": 42, "flag": True, "none": None}
    assert "absent" not in data


def test_inner_whitespace_is_kept_unless_collapse_spaces_is_set():
    keep = TrimWhitespace.from_params({"fields": ["address"]})
    collapse = TrimWhitespace.from_params({"fields": ["address"], "collapse_spaces": True})
    _, kept = run(keep, {"address": " 1   Main \t St "})
    _, collapsed = run(collapse, {"address": " 1   Main \t St "})
    assert kept["address"] == "1   Main \t St"
    assert collapsed["address"] == "1 Main St"


def test_uppercase_and_lowercase_fields_are_trimmed_and_recased():
    rule = TrimWhitespace.from_params(
        {"fields": ["name"], "uppercase": ["state"], "lowercase": ["email"]}
    )
    verdict, data = run(rule, {"name": " Ada ", "state": " ny ", "email": " A@B.COM "})
    assert data == {"name": "Ada", "state": "NY", "email": "a@b.com"}
    assert set(verdict.details["trimmed"]) == {"name", "state", "email"}


def test_trim_provides_every_field_it_may_write_once():
    rule = TrimWhitespace.from_params({"fields": ["a", "state"], "uppercase": ["state", "zip"]})
    assert rule.provides() == ("a", "state", "zip")


def test_trim_accepts_seed_spelling_field_names():
    rule = TrimWhitespace.from_params({"field_names": ["a"]})
    _, data = run(rule, {"a": " x "})
    assert data["a"] == "x"


@pytest.mark.parametrize(
    "params",
    [{"fields": []}, {}, {"fields": ["a"], "unknown": 1}],
    ids=["empty-fields", "no-fields", "unknown-key"],
)
def test_trim_rejects_bad_params(params: dict[str, Any]):
    with pytest.raises(ValidationError):
        TrimWhitespace.from_params(params)


# --- NormalizeEmail ------------------------------------------------------------------------


def test_normalize_email_lowercases_and_strips_the_address():
    rule = NormalizeEmail.from_params({"field": "email"})
    verdict, data = run(rule, {"email": "  Ada.Lovelace@Example.COM "})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "normalized"
    assert data["email"] == "ada.lovelace@example.com"


def test_normalize_email_reports_an_address_that_was_already_normal():
    rule = NormalizeEmail.from_params({"field": "email"})
    verdict, data = run(rule, {"email": "ada@example.com"})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "already normalized"
    assert data["email"] == "ada@example.com"


def test_normalize_email_keeps_case_when_lowercase_is_off():
    rule = NormalizeEmail.from_params({"field": "email", "lowercase": False})
    _, data = run(rule, {"email": " Ada@Example.com "})
    assert data["email"] == "Ada@Example.com"


def test_remove_plus_tag_drops_the_tag_from_the_local_part_only():
    rule = NormalizeEmail.from_params({"field": "email", "remove_plus_tag": True})
    _, data = run(rule, {"email": "ada+news+x@ex+ample.com"})
    assert data["email"] == "ada@ex+ample.com"


def test_remove_dots_drops_dots_from_the_local_part_but_not_the_domain():
    rule = NormalizeEmail.from_params({"field": "email", "remove_dots": True})
    _, data = run(rule, {"email": "a.d.a@mail.example.com"})
    assert data["email"] == "ada@mail.example.com"


def test_dots_and_plus_tag_can_both_be_removed():
    rule = NormalizeEmail.from_params(
        {"field": "email", "remove_dots": True, "remove_plus_tag": True}
    )
    _, data = run(rule, {"email": "A.Da+promo.x@Example.com"})
    assert data["email"] == "ada@example.com"


def test_dots_and_plus_tag_are_kept_by_default():
    rule = NormalizeEmail.from_params({"field": "email"})
    _, data = run(rule, {"email": "a.da+tag@example.com"})
    assert data["email"] == "a.da+tag@example.com"


def test_an_address_without_at_sign_is_only_lowercased_and_stripped():
    rule = NormalizeEmail.from_params({"field": "email", "remove_dots": True})
    _, data = run(rule, {"email": " Not.An.Email "})
    assert data["email"] == "not.an.email"


@pytest.mark.parametrize("value", [None, "", "   ", 17, ["a@b.c"]])
def test_normalize_email_skips_when_there_is_no_text_to_normalize(value: Any):
    rule = NormalizeEmail.from_params({"field": "email"})
    verdict, data = run(rule, {"email": value})
    assert verdict.outcome is Outcome.SKIP
    assert data["email"] == value


def test_normalize_email_skips_an_absent_field_without_creating_it():
    rule = NormalizeEmail.from_params({"field": "email"})
    verdict, data = run(rule, {})
    assert verdict.outcome is Outcome.SKIP
    assert "email" not in data


def test_normalize_email_accepts_seed_spelling_field_name():
    rule = NormalizeEmail.from_params({"field_name": "contact"})
    assert rule.provides() == ("contact",)
    _, data = run(rule, {"contact": "X@Y.Z"})
    assert data["contact"] == "x@y.z"
