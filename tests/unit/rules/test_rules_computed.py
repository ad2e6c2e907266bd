"""Rules that compute: CrossFieldCheck, DerivedField, NameParsing, WeightedScore,
DeterministicId."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from rule_helpers import check, make

from stream_engine.core.outcome import Outcome, Route
from stream_engine.errors import ExpressionError

PASS, FAIL, SKIP = Outcome.PASS, Outcome.FAIL, Outcome.SKIP


def test_cross_field_check_lists_every_failing_check():
    rule = make(
        "CrossFieldCheck",
        checks=[
            {"name": "dates", "expr": "data.end >= data.start", "message": "end before start"},
            {"name": "cap", "expr": "data.amount <= vars.cap", "message": "over the cap"},
            {"name": "currency", "expr": "data.currency in ['USD', 'EUR']"},
        ],
        vars={"cap": 1000},
    )
    verdict, _ = check(rule, {"start": 5, "end": 3, "amount": 5000, "currency": "USD"})
    assert verdict.outcome is FAIL
    assert verdict.message == "end before start; over the cap"
    assert verdict.details == {"failed_checks": ["dates", "cap"]}
    assert check(rule, {"start": 1, "end": 3, "amount": 10, "currency": "EUR"})[0].outcome is PASS


def test_cross_field_check_refuses_invalid_cel_when_the_config_loads():
    with pytest.raises(ValidationError, match="invalid CEL expression"):
        make("CrossFieldCheck", expr="data.a >")


def test_cross_field_check_on_a_missing_field_is_an_error_not_a_pass():
    with pytest.raises(ExpressionError, match="has"):
        check(make("CrossFieldCheck", expr="data.a > 1"), {})


def test_derived_field_sets_a_cel_value():
    rule = make("DerivedField", field="monthly", expr="double(data.annual) / 12.0")
    verdict, data = check(rule, {"annual": 60000})
    assert (verdict.outcome, data["monthly"]) == (PASS, 5000.0)


def test_derived_field_can_keep_an_existing_value():
    rule = make("DerivedField", field="tier", expr="'B'", overwrite=False)
    assert check(rule, {"tier": "A"})[1]["tier"] == "A"
    assert check(rule, {})[1]["tier"] == "B"


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("John Michael Smith", ("John", "Michael", "Smith")),
        ("Smith, John Michael", ("John", "Michael", "Smith")),
        ("Dr. Jane Doe", ("Jane", None, "Doe")),
        ("Martin Luther King Jr.", ("Martin", "Luther", "King")),
        ("Ludwig van Beethoven", ("Ludwig", None, "van Beethoven")),
        ("Cher", ("Cher", None, None)),
    ],
)
def test_name_parsing_splits_full_names(name, parts):
    _, data = check(make("NameParsing", field="name"), {"name": name})
    assert (data.get("first_name"), data.get("middle_name"), data.get("last_name")) == parts


def test_name_parsing_keeps_fields_already_given_unless_told_to_overwrite():
    _, data = check(make("NameParsing", field="name"), {"name": "Ann Lee", "first_name": "Annie"})
    assert (data["first_name"], data["last_name"]) == ("Annie", "Lee")
    _, data = check(
        make("NameParsing", field="name", overwrite=True), {"name": "Ann Lee", "first_name": "X"}
    )
    assert data["first_name"] == "Ann"


def test_name_parsing_skips_without_a_name():
    assert check(make("NameParsing", field="name"), {"name": "  "})[0].outcome is SKIP


RISK = {
    "score_field": "risk",
    "category_field": "band",
    "components": {
        "credit": {"field": "credit_score", "weight": 0.4, "transform": "(850.0 - value) / 850.0"},
        "aml": {"field": "aml", "weight": 0.3},
        "identity": {"field": "confidence", "weight": 0.1, "transform": "1.0 - value"},
    },
    "categories": [
        {"name": "low", "below": 0.3},
        {"name": "medium", "below": 0.7},
        {"name": "high"},
    ],
    "review_categories": ["high"],
}


def test_weighted_score_combines_transformed_components():
    verdict, data = check(
        make("WeightedScore", **RISK), {"credit_score": 765, "aml": 0.2, "confidence": 0.9}
    )
    expected = (0.1 * 0.4 + 0.2 * 0.3 + 0.1 * 0.1) / 0.8
    assert data["risk"] == pytest.approx(expected)
    assert data["band"] == "low"
    assert verdict.outcome is PASS


def test_weighted_score_renormalises_when_a_component_is_absent():
    _, data = check(make("WeightedScore", **RISK), {"aml": 0.5})
    assert data["risk"] == pytest.approx(0.5)
    assert data["band"] == "medium"


def test_a_review_category_asks_for_review():
    verdict, data = check(make("WeightedScore", **RISK), {"aml": 0.9, "credit_score": 300})
    assert data["band"] == "high"
    assert (verdict.outcome, verdict.action) == (PASS, Route.REVIEW)


def test_weighted_score_fails_with_too_few_components():
    verdict, data = check(make("WeightedScore", **RISK), {"other": 1})
    assert verdict.outcome is FAIL
    assert "risk" not in data


def test_weighted_score_refuses_unordered_or_unknown_categories():
    with pytest.raises(ValidationError, match="must increase"):
        make(
            "WeightedScore",
            **{
                **RISK,
                "categories": [
                    {"name": "a", "below": 0.7},
                    {"name": "b", "below": 0.3},
                    {"name": "c"},
                ],
            },
        )
    with pytest.raises(ValidationError, match="unknown category"):
        make("WeightedScore", **{**RISK, "review_categories": ["severe"]})


def test_deterministic_id_is_stable_and_depends_on_the_hashed_fields():
    rule = make(
        "DeterministicId",
        field="customer_id",
        hash_fields=["email", "ssn"],
        template="CUST-{hash}",
        length=12,
    )
    _, first = check(rule, {"email": "Ann@Example.com ", "ssn": "123-45-6789"})
    _, again = check(rule, {"email": "ann@example.com", "ssn": "123-45-6789"})
    _, other = check(rule, {"email": "bob@example.com", "ssn": "123-45-6789"})
    assert first["customer_id"] == again["customer_id"]
    assert first["customer_id"] != other["customer_id"]
    assert first["customer_id"].startswith("CUST-")
    assert len(first["customer_id"]) == 17


def test_deterministic_id_salt_changes_the_id_and_missing_fields_fail():
    plain = make("DeterministicId", hash_fields=["email"])
    salted = make("DeterministicId", hash_fields=["email"], salt="pepper")
    record = {"email": "ann@example.com"}
    assert check(plain, record)[1]["id"] != check(salted, record)[1]["id"]
    verdict, data = check(plain, {})
    assert verdict.outcome is FAIL
    assert "id" not in data
    with pytest.raises(ValidationError, match="must contain"):
        make("DeterministicId", hash_fields=["a"], template="CUST")
