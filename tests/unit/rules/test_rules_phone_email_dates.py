"""NormalizePhone, PhoneFormat (libphonenumber), EmailFormat (email-validator, no DNS),
MinimumAge."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError
from rule_helpers import check, make

from stream_engine.core.outcome import Outcome
from stream_engine.core.rule import RuleContext

PASS, FAIL, SKIP = Outcome.PASS, Outcome.FAIL, Outcome.SKIP


@pytest.mark.parametrize(
    "raw", ["(212) 555-0147", "212-555-0147", "+1 212 555 0147", "212.555.0147", "12125550147"]
)
def test_us_numbers_in_any_common_format_become_e164(raw):
    verdict, data = check(make("NormalizePhone", field="phone", country_code="US"), {"phone": raw})
    assert data["phone"] == "+12125550147"
    assert verdict.outcome is PASS


def test_phone_can_be_formatted_for_humans_instead():
    rule = make("NormalizePhone", field="phone", format="NATIONAL")
    assert check(rule, {"phone": "+12125550147"})[1]["phone"] == "(212) 555-0147"


def test_unparsable_phone_is_left_alone_and_skipped_or_failed():
    verdict, data = check(make("NormalizePhone", field="phone"), {"phone": "call me"})
    assert (verdict.outcome, data["phone"]) == (SKIP, "call me")
    strict = make("NormalizePhone", field="phone", on_invalid="fail")
    assert check(strict, {"phone": "call me"})[0].outcome is FAIL


def test_the_seeds_sample_number_555_123_4567_is_not_valid():
    verdict, _ = check(make("PhoneFormat", field="phone"), {"phone": "(555) 123-4567"})
    assert verdict.outcome is FAIL
    assert verdict.message == "phone is not a valid phone number"


@pytest.mark.parametrize(
    ("phone", "outcome"),
    [
        ("+12125550147", PASS),
        ("(212) 555-0147", PASS),
        ("555-0147", FAIL),
        ("(212) 555-014", FAIL),
        ("", SKIP),
    ],
)
def test_phone_format_validates_with_libphonenumber(phone, outcome):
    assert check(make("PhoneFormat", field="phone"), {"phone": phone})[0].outcome is outcome


def test_phone_format_can_restrict_regions_and_refuse_extensions():
    uk = "+44 20 7946 0018"
    assert check(make("PhoneFormat", field="phone"), {"phone": uk})[0].outcome is PASS
    us_only = make("PhoneFormat", field="phone", allowed_regions=["US", "CA"])
    verdict, _ = check(us_only, {"phone": uk})
    assert (verdict.outcome, verdict.details) == (FAIL, {"region": "GB"})
    assert (
        check(make("PhoneFormat", field="phone"), {"phone": "212-555-0147 ext. 12"})[0].outcome
        is FAIL
    )


def test_normalize_and_validate_share_one_parse_per_record():
    memo: dict = {}
    ctx = RuleContext("r", {"phone": "(212) 555-0147"}, {}, memo=memo)
    make("NormalizePhone", field="phone").evaluate(ctx)
    parsed = memo[("phone", "+12125550147", "US")]
    assert parsed is not None
    make("PhoneFormat", field="phone").evaluate(ctx)
    assert memo[("phone", "+12125550147", "US")] is parsed


@pytest.mark.parametrize(
    ("email", "outcome"),
    [
        ("ann.lee@example.com", PASS),
        ("ann.lee@", FAIL),
        ("ann lee@example.com", FAIL),
        ("ann@@example.com", FAIL),
        ("ann@example", FAIL),
        ("", SKIP),
    ],
)
def test_email_format_checks_syntax_only(email, outcome):
    assert check(make("EmailFormat", field="email"), {"email": email})[0].outcome is outcome


def test_disposable_domains_are_refused_only_when_asked():
    address = {"email": "someone@mailinator.com"}
    assert check(make("EmailFormat", field="email"), address)[0].outcome is PASS
    verdict, _ = check(make("EmailFormat", field="email", allow_disposable=False), address)
    assert (verdict.outcome, verdict.details) == (FAIL, {"domain": "mailinator.com"})


def test_email_that_is_not_text_fails_without_crashing():
    verdict, _ = check(make("EmailFormat", field="email"), {"email": ["a@example.com"]})
    assert verdict.outcome is FAIL
    assert "must be text" in verdict.message


AS_OF = date(2026, 6, 15)


@pytest.mark.parametrize(
    ("born", "outcome"),
    [
        ("2008-06-15", PASS),  # 18 today
        ("2008-06-16", FAIL),  # 18 tomorrow
        ("06/15/2008", PASS),
        ("15.06.2008", PASS),
        ("1980-01-31T00:00:00", PASS),
        ("2030-01-01", FAIL),  # in the future
        ("not a date", FAIL),
    ],
)
def test_minimum_age_counts_whole_years_on_the_as_of_date(born, outcome):
    rule = make("MinimumAge", date_field="date_of_birth", minimum_age=18, as_of=AS_OF)
    assert check(rule, {"date_of_birth": born})[0].outcome is outcome


def test_lenient_age_check_skips_what_it_cannot_read_and_can_write_the_age():
    rule = make(
        "MinimumAge",
        field="dob",
        minimum_age=18,
        as_of=AS_OF,
        verification_strict=False,
        age_field="age",
    )
    assert check(rule, {"dob": "soon"})[0].outcome is SKIP
    verdict, data = check(rule, {"dob": "1990-06-16"})
    assert (verdict.outcome, data["age"], verdict.details) == (PASS, 35, {"age": 35})


def test_maximum_age_and_bad_bounds():
    rule = make("MinimumAge", field="dob", minimum_age=18, maximum_age=70, as_of=AS_OF)
    assert check(rule, {"dob": "1940-01-01"})[0].outcome is FAIL
    with pytest.raises(ValidationError):
        make("MinimumAge", field="dob", minimum_age=-1)
