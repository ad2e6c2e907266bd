"""Rules keep values they derive from PII fields out of their messages and details: the
masker replaces a PII value where it is quoted, but cannot know that ``age 39`` next to a
decision's time narrows a date of birth down to days. Each rule learns at load which of its
fields are PII (``Rule.learn_pii``); ``pii.reveal_derived`` lets them show such values."""

from __future__ import annotations

from typing import Any

import pytest
from rule_helpers import check, make

from stream_engine.core.outcome import Outcome
from stream_engine.core.pii import PiiInputs

DOB = {"dob": "1985-06-14"}
AS_OF = "2024-06-15"
VALID_GB = "+44 20 7946 0958"


def learned(rule: Any, *fields: str, reveal: bool = False) -> tuple[Any, list[str]]:
    """The rule after it learned the PII fields, and the warnings it gave."""
    notes = rule.learn_pii(PiiInputs(frozenset(fields), reveal))
    return rule, notes


def text_of(verdict: Any) -> str:
    return f"{verdict.message} {verdict.details}"


# -- MinimumAge -------------------------------------------------------------------------


def minimum_age(**params: Any) -> Any:
    return make("MinimumAge", field="dob", minimum_age=18, as_of=AS_OF, **params)


def test_minimum_age_on_a_pii_date_of_birth_says_neither_the_age_nor_keeps_it_in_details():
    rule, notes = learned(minimum_age(maximum_age=60), "dob")
    assert notes == []
    verdict, _ = check(rule, DOB)
    assert (verdict.outcome, verdict.message, verdict.details) == (
        Outcome.PASS,
        "applicant is at least 18",
        None,
    )
    for born, message in (("2010-01-01", "applicant is under 18"), ("1950-01-01", "over 60")):
        verdict, _ = check(rule, {"dob": born})
        assert verdict.outcome is Outcome.FAIL
        assert message in verdict.message
        assert verdict.details is None


def test_minimum_age_still_reports_the_age_of_a_date_that_is_not_pii():
    rule, _ = learned(minimum_age(), "ssn")
    verdict, _ = check(rule, DOB)
    assert (verdict.message, verdict.details) == ("age 39 is at least 18", {"age": 39})


def test_with_reveal_derived_minimum_age_reports_the_age_of_a_pii_date():
    rule, _ = learned(minimum_age(), "dob", reveal=True)
    assert check(rule, DOB)[0].details == {"age": 39}


def test_a_date_of_birth_inside_a_pii_object_hides_the_age_too():
    rule, _ = learned(minimum_age(), "dob.value")
    assert check(rule, DOB)[0].details is None


def test_an_age_field_fed_from_a_pii_date_is_a_warning_unless_it_is_pii_too():
    _, notes = learned(minimum_age(age_field="age"), "dob")
    [note] = notes
    assert note.startswith("age_field: 'age' holds the age derived from PII field 'dob'")
    assert learned(minimum_age(age_field="age"), "dob", "age")[1] == []


# -- other rules that derive values -----------------------------------------------------


def test_string_length_on_a_pii_field_keeps_the_length_out_of_its_details():
    rule = make("StringLength", field="ssn", min_length=20)
    assert check(rule, {"ssn": "123-45-6789"})[0].details == {"length": 11}
    learned(rule, "ssn")
    verdict, _ = check(rule, {"ssn": "123-45-6789"})
    assert (verdict.outcome, verdict.message, verdict.details) == (
        Outcome.FAIL,
        "ssn is shorter than 20 characters",
        None,
    )


def test_email_format_on_a_pii_field_names_neither_the_domain_nor_what_was_wrong():
    rule, _ = learned(make("EmailFormat", field="email", allow_disposable=False), "email")
    for address in ("jane@mailinator.com", "jane@example.com", "jane<@example.com"):
        verdict, _ = check(rule, {"email": address})
        assert "example" not in text_of(verdict)
        assert "mailinator" not in text_of(verdict)
        assert "<" not in text_of(verdict)
        assert verdict.details is None
    shown = make("EmailFormat", field="email")
    assert check(shown, {"email": "jane@example.com"})[0].details == {"domain": "example.com"}


@pytest.mark.parametrize(
    "params", [{"allowed_regions": ["US"]}, {"allowed_types": ["mobile"]}], ids=["region", "type"]
)
def test_phone_format_on_a_pii_field_refuses_a_number_without_saying_what_it_is(params):
    rule, _ = learned(make("PhoneFormat", field="phone", **params), "phone")
    verdict, _ = check(rule, {"phone": VALID_GB})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.details is None
    assert "GB" not in verdict.message
    assert "fixed" not in verdict.message


def weighted(**extra: Any) -> Any:
    return make(
        "WeightedScore",
        components={
            "income": {"field": "income", "weight": 1, "transform": "value / 1000.0"},
            "risk": {"field": "risk", "weight": 1},
        },
        categories=[{"name": "low", "below": 10}, {"name": "high"}],
        **extra,
    )


def test_weighted_score_shows_neither_a_pii_component_nor_a_score_it_counts_in():
    rule, _ = learned(weighted(), "income")
    verdict, data = check(rule, {"income": 75000, "risk": 0.5})
    assert data["score"] == pytest.approx(37.75)  # the record still gets the score
    assert verdict.message == "score computed (high)"
    assert verdict.details == {"category": "high", "components": {"income": None, "risk": 0.5}}
    verdict, _ = check(rule, {"risk": 0.5})  # without the PII component the score shows
    assert verdict.message == "score 0.500 (low)"
    assert verdict.details is not None
    assert verdict.details["score"] == 0.5


def test_weighted_score_without_pii_components_is_unchanged():
    rule, _ = learned(weighted(), "ssn")
    verdict, _ = check(rule, {"income": 75000, "risk": 0.5})
    assert verdict.details == {
        "score": 37.75,
        "category": "high",
        "components": {"income": 75.0, "risk": 0.5},
    }


# -- rules that only write derived values: warnings -------------------------------------


def test_name_parsing_of_a_pii_name_warns_that_its_parts_are_not_protected():
    rule = make("NameParsing", field="name")
    [note] = learned(rule, "name")[1]
    assert note.startswith("field: the parts of PII field 'name' are written to first_name")
    assert learned(rule, "name", "first_name", "middle_name", "last_name")[1] == []
    verdict, _ = check(rule, {"name": "Jane Q Public"})
    assert "Jane" not in text_of(verdict)


def test_a_deterministic_id_over_a_pii_field_without_salt_warns_that_it_can_be_reversed():
    rule = make("DeterministicId", hash_fields=["email", "ssn"])
    [note] = learned(rule, "ssn")[1]
    assert note.startswith("hash_fields: the id hashes PII field(s) ssn without a salt")
    assert learned(rule, "ssn", reveal=True)[1] == [note]  # reversing it is not a derived value
    salted = make("DeterministicId", hash_fields=["ssn"], salt="s3cret-from-env")
    assert learned(salted, "ssn")[1] == []


@pytest.mark.parametrize(
    ("name", "params", "data", "piece"),
    [
        ("NumericRange", {"field": "income", "min": 100000}, {"income": 75000}, "75"),
        ("AcceptedValues", {"field": "state", "values": ["NY"]}, {"state": "CA"}, "CA"),
        ("Regex", {"field": "ssn", "pattern": "[0-9]{9}"}, {"ssn": "123-45-6789"}, "6789"),
        ("TrimWhitespace", {"fields": ["ssn"]}, {"ssn": " 123-45-6789 "}, "6789"),
        ("NormalizePhone", {"field": "ssn"}, {"ssn": "(212) 555-0147"}, "0147"),
        ("NormalizeEmail", {"field": "ssn"}, {"ssn": "A@B.example"}, "example"),
    ],
)
def test_rules_that_derive_nothing_say_nothing_of_the_value(name, params, data, piece):
    rule, notes = learned(make(name, **params), *data)
    verdict, _ = check(rule, data)
    assert notes == []
    assert piece not in text_of(verdict)
