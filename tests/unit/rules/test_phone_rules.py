"""NormalizePhone and PhoneFormat (libphonenumber), and the parse they share per record."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules.phone import NormalizePhone, PhoneFormat

VALID_US = "(212) 555-1234"
VALID_US_E164 = "+12125551234"
#: Well formed and "possible", but 555 is not a valid US area code.
INVALID_US = "555-123-4567"
VALID_GB = "+44 20 7946 0958"


def ctx_for(data: dict[str, Any]) -> RuleContext:
    return RuleContext(record_id="r1", data=data, results={})


def run(rule: Any, data: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
    ctx = ctx_for(data)
    return rule.evaluate(ctx), ctx.data


# --- NormalizePhone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("E164", "+12125551234"),
        ("INTERNATIONAL", "+1 212-555-1234"),
        ("NATIONAL", "(212) 555-1234"),
    ],
)
def test_normalize_phone_writes_the_number_in_the_chosen_format(fmt: str, expected: str):
    rule = NormalizePhone.from_params({"field": "phone", "format": fmt})
    verdict, data = run(rule, {"phone": "212.555.1234"})
    assert verdict.outcome is Outcome.PASS
    assert data["phone"] == expected


def test_normalize_phone_defaults_to_e164():
    rule = NormalizePhone.from_params({"field": "phone"})
    verdict, data = run(rule, {"phone": VALID_US})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "normalized"
    assert data["phone"] == VALID_US_E164


def test_normalize_phone_reports_a_number_already_in_format():
    rule = NormalizePhone.from_params({"field": "phone"})
    verdict, data = run(rule, {"phone": VALID_US_E164})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "already normalized"
    assert data["phone"] == VALID_US_E164


def test_normalize_phone_uses_the_default_region_for_national_numbers():
    rule = NormalizePhone.from_params({"field": "phone", "country_code": "GB"})
    _, data = run(rule, {"phone": "020 7946 0958"})
    assert data["phone"] == "+442079460958"


def test_an_international_number_ignores_the_default_region():
    rule = NormalizePhone.from_params({"field": "phone", "country_code": "US"})
    _, data = run(rule, {"phone": VALID_GB})
    assert data["phone"] == "+442079460958"


def test_normalize_phone_rewrites_a_possible_but_invalid_number_for_validation_to_judge():
    rule = NormalizePhone.from_params({"field": "phone"})
    verdict, data = run(rule, {"phone": INVALID_US})
    assert verdict.outcome is Outcome.PASS
    assert data["phone"] == "+15551234567"


@pytest.mark.parametrize("raw", ["abc", "12"], ids=["not-a-number", "too-short"])
def test_unparsable_number_is_left_as_is_and_skips_by_default(raw: str):
    rule = NormalizePhone.from_params({"field": "phone"})
    verdict, data = run(rule, {"phone": raw})
    assert verdict.outcome is Outcome.SKIP
    assert data["phone"] == raw


def test_unparsable_number_fails_with_on_invalid_fail():
    rule = NormalizePhone.from_params({"field": "phone", "on_invalid": "fail"})
    verdict, data = run(rule, {"phone": "abc"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "phone is not a phone number"
    assert data["phone"] == "abc"


@pytest.mark.parametrize("value", [None, "", "   ", 2125551234])
def test_normalize_phone_skips_when_the_field_holds_no_text(value: Any):
    rule = NormalizePhone.from_params({"field": "phone", "on_invalid": "fail"})
    verdict, data = run(rule, {"phone": value})
    assert verdict.outcome is Outcome.SKIP
    assert data["phone"] == value


@pytest.mark.parametrize(
    "params",
    [
        {"field": "phone", "country_code": "USA"},
        {"field": "phone", "format": "RFC3966"},
        {"field": "phone", "on_invalid": "explode"},
        {"country_code": "US"},
    ],
    ids=["three-letter-region", "unknown-format", "unknown-on-invalid", "no-field"],
)
def test_normalize_phone_rejects_bad_params(params: dict[str, Any]):
    with pytest.raises(ValidationError):
        NormalizePhone.from_params(params)


def test_normalize_phone_accepts_region_and_field_name_aliases():
    rule = NormalizePhone.from_params({"field_name": "tel", "region": "GB"})
    assert rule.provides() == ("tel",)
    _, data = run(rule, {"tel": "020 7946 0958"})
    assert data["tel"] == "+442079460958"


# --- PhoneFormat ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [VALID_US, VALID_US_E164, "212-555-1234", VALID_GB])
def test_phone_format_passes_valid_numbers(value: str):
    rule = PhoneFormat.from_params({"field": "phone"})
    verdict, _ = run(rule, {"phone": value})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "valid phone number"


def test_phone_format_fails_a_number_with_an_invalid_us_area_code():
    rule = PhoneFormat.from_params({"field": "phone"})
    verdict, _ = run(rule, {"phone": INVALID_US})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "phone is not a valid phone number"


def test_phone_format_fails_text_that_is_not_a_phone_number():
    rule = PhoneFormat.from_params({"field": "phone"})
    verdict, _ = run(rule, {"phone": "call me maybe"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "phone is not a phone number"


def test_phone_format_fails_a_non_text_value():
    rule = PhoneFormat.from_params({"field": "phone"})
    verdict, _ = run(rule, {"phone": 2125551234})
    assert verdict.outcome is Outcome.FAIL
    assert "must be text" in verdict.message


@pytest.mark.parametrize("data", [{}, {"phone": None}, {"phone": ""}])
def test_phone_format_skips_an_absent_or_empty_value(data: dict[str, Any]):
    rule = PhoneFormat.from_params({"field": "phone"})
    verdict, _ = run(rule, data)
    assert verdict.outcome is Outcome.SKIP


def test_extensions_fail_unless_allowed():
    strict = PhoneFormat.from_params({"field": "phone"})
    lenient = PhoneFormat.from_params({"field": "phone", "allow_extensions": True})
    record = {"phone": "212-555-1234 ext. 5"}
    assert run(strict, dict(record))[0].outcome is Outcome.FAIL
    assert "extension" in run(strict, dict(record))[0].message
    assert run(lenient, dict(record))[0].outcome is Outcome.PASS


def test_allowed_regions_fail_a_number_from_another_region_and_name_it():
    rule = PhoneFormat.from_params({"field": "phone", "allowed_regions": ["US", "CA"]})
    verdict, _ = run(rule, {"phone": VALID_GB})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.details == {"region": "GB"}
    assert run(rule, {"phone": VALID_US})[0].outcome is Outcome.PASS


def test_allowed_types_fail_a_number_of_another_type_and_name_it():
    # London 020 numbers are fixed lines; US numbers are "fixed line or mobile".
    rule = PhoneFormat.from_params({"field": "phone", "allowed_types": ["mobile"]})
    verdict, _ = run(rule, {"phone": VALID_GB})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.details == {"type": "fixed_line"}
    fixed = PhoneFormat.from_params({"field": "phone", "allowed_types": ["fixed_line"]})
    assert run(fixed, {"phone": VALID_GB})[0].outcome is Outcome.PASS


def test_phone_format_rejects_an_unknown_number_type():
    with pytest.raises(ValidationError):
        PhoneFormat.from_params({"field": "phone", "allowed_types": ["pager"]})


# --- The per-record memo -------------------------------------------------------------------


def test_normalize_then_validate_parses_the_number_only_once(monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[str, str]] = []
    real_parse = phonenumbers.parse

    def counting_parse(raw: str, region: str) -> Any:
        calls.append((raw, region))
        return real_parse(raw, region)

    monkeypatch.setattr(phonenumbers, "parse", counting_parse)
    ctx = ctx_for({"phone": VALID_US})
    normalize = NormalizePhone.from_params({"field": "phone"})
    validate = PhoneFormat.from_params({"field": "phone"})

    assert normalize.evaluate(ctx).outcome is Outcome.PASS
    assert validate.evaluate(ctx).outcome is Outcome.PASS
    assert ctx.data["phone"] == VALID_US_E164
    assert calls == [(VALID_US, "US")]


def test_normalize_memoises_the_parse_under_the_written_value():
    ctx = ctx_for({"phone": VALID_US})
    NormalizePhone.from_params({"field": "phone"}).evaluate(ctx)
    original = ctx.memo[("phone", VALID_US, "US")]
    assert ctx.memo[("phone", VALID_US_E164, "US")] is original


def test_phone_format_uses_a_parse_already_in_the_memo():
    # The memo is trusted: a parse recorded for this exact text decides the verdict.
    ctx = ctx_for({"phone": "opaque-token"})
    ctx.memo[("phone", "opaque-token", "US")] = real_number = phonenumbers.parse(VALID_US, "US")
    verdict = PhoneFormat.from_params({"field": "phone"}).evaluate(ctx)
    assert verdict.outcome is Outcome.PASS
    assert ctx.memo[("phone", "opaque-token", "US")] is real_number


def test_a_failed_parse_is_memoised_too(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    real_parse = phonenumbers.parse

    def counting_parse(raw: str, region: str) -> Any:
        calls.append(raw)
        return real_parse(raw, region)

    monkeypatch.setattr(phonenumbers, "parse", counting_parse)
    ctx = ctx_for({"phone": "abc"})
    assert NormalizePhone.from_params({"field": "phone"}).evaluate(ctx).outcome is Outcome.SKIP
    assert PhoneFormat.from_params({"field": "phone"}).evaluate(ctx).outcome is Outcome.FAIL
    assert calls == ["abc"]
    assert ctx.memo[("phone", "abc", "US")] is None


def test_the_memo_is_per_record_not_per_rule(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    real_parse = phonenumbers.parse

    def counting_parse(raw: str, region: str) -> Any:
        calls.append(raw)
        return real_parse(raw, region)

    monkeypatch.setattr(phonenumbers, "parse", counting_parse)
    validate = PhoneFormat.from_params({"field": "phone"})
    first = ctx_for({"phone": VALID_US})
    second = ctx_for({"phone": VALID_US})
    validate.evaluate(first)
    validate.evaluate(second)
    assert calls == [VALID_US, VALID_US]
    assert ("phone", VALID_US, "US") in second.memo
