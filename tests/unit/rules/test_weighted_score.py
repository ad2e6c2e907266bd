"""WeightedScore: seed 000's risk score aggregation (weighted average with CEL transforms,
renormalised weights, categories, review and fail categories)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome, Route
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.errors import ExpressionError, RuleEvaluationError
from stream_engine.rules.score import WeightedScore

#: The risk aggregation of seed 000 (configs/customer_onboarding.yaml, risk_score).
SEED_000: dict[str, Any] = {
    "score_field": "composite_risk_score",
    "category_field": "risk_category",
    "components": {
        "credit_score": {
            "field": "credit_score",
            "weight": 0.4,
            "transform": "(850.0 - value) / 850.0",
        },
        "aml_risk": {"field": "aml_risk_score", "weight": 0.3},
        "geographic_risk": {"field": "geographic_risk_score", "weight": 0.2},
        "identity_confidence": {
            "field": "identity_confidence_score",
            "weight": 0.1,
            "transform": "1.0 - value",
        },
    },
    "categories": [
        {"name": "low", "below": 0.3},
        {"name": "medium", "below": 0.7},
        {"name": "high"},
    ],
    "review_categories": ["high"],
}

APPLICANT = {
    "credit_score": 700,
    "aml_risk_score": 0.5,
    "geographic_risk_score": 0.2,
    "identity_confidence_score": 0.9,
}


def run(rule: Any, data: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results={})
    return rule.evaluate(ctx), ctx.data


def seed_rule(**overrides: Any) -> Any:
    return WeightedScore.from_params({**SEED_000, **overrides})


def test_seed_000_score_is_the_weighted_average_of_transformed_components():
    verdict, data = run(seed_rule(), dict(APPLICANT))
    credit = (850.0 - 700) / 850.0
    expected = 0.4 * credit + 0.3 * 0.5 + 0.2 * 0.2 + 0.1 * (1.0 - 0.9)
    assert verdict.outcome is Outcome.PASS
    assert verdict.action is None
    assert data["composite_risk_score"] == pytest.approx(expected, abs=1e-6)
    assert data["risk_category"] == "low"
    assert verdict.details is not None
    assert verdict.details["score"] == data["composite_risk_score"]
    assert verdict.details["category"] == "low"
    assert verdict.details["components"] == {
        "credit_score": pytest.approx(credit, abs=1e-6),
        "aml_risk": 0.5,
        "geographic_risk": 0.2,
        "identity_confidence": pytest.approx(0.1, abs=1e-6),
    }
    assert verdict.message == f"score {expected:.3f} (low)"


def test_an_absent_component_is_left_out_and_the_other_weights_renormalised():
    applicant = {k: v for k, v in APPLICANT.items() if k != "aml_risk_score"}
    verdict, data = run(seed_rule(), applicant)
    credit = (850.0 - 700) / 850.0
    expected = (0.4 * credit + 0.2 * 0.2 + 0.1 * 0.1) / (0.4 + 0.2 + 0.1)
    assert data["composite_risk_score"] == pytest.approx(expected, abs=1e-6)
    assert verdict.details is not None
    assert "aml_risk" not in verdict.details["components"]


@pytest.mark.parametrize("absent", [None, "", "n/a", True, [0.5]])
def test_a_non_numeric_component_counts_as_absent(absent: Any):
    applicant = {**APPLICANT, "aml_risk_score": absent}
    with_gap, _ = run(seed_rule(), applicant)
    without, _ = run(seed_rule(), {k: v for k, v in APPLICANT.items() if k != "aml_risk_score"})
    assert with_gap.details == without.details


def test_numeric_text_components_are_read_as_numbers():
    as_text = {k: str(v) for k, v in APPLICANT.items()}
    _, from_text = run(seed_rule(), as_text)
    _, from_numbers = run(seed_rule(), dict(APPLICANT))
    assert from_text["composite_risk_score"] == from_numbers["composite_risk_score"]


@pytest.mark.parametrize(
    ("aml", "category"),
    [(0.0, "low"), (0.7, "medium"), (1.0, "medium")],
)
def test_the_category_is_the_first_whose_bound_is_above_the_score(aml: float, category: str):
    rule = WeightedScore.from_params(
        {
            "components": {"aml": {"field": "aml", "weight": 1}},
            "categories": [
                {"name": "low", "below": 0.5},
                {"name": "medium", "below": 1.5},
                {"name": "high"},
            ],
        }
    )
    _, data = run(rule, {"aml": aml})
    assert data["score_category"] == category


def test_a_score_equal_to_a_bound_falls_in_the_next_category():
    rule = WeightedScore.from_params(
        {
            "components": {"x": {"field": "x", "weight": 1}},
            "categories": [{"name": "low", "below": 0.3}, {"name": "rest"}],
        }
    )
    assert run(rule, {"x": 0.3})[1]["score_category"] == "rest"
    assert run(rule, {"x": 0.2999})[1]["score_category"] == "low"


def test_a_review_category_gives_a_passing_verdict_routed_to_review():
    risky = {
        "credit_score": 300,
        "aml_risk_score": 0.95,
        "geographic_risk_score": 0.9,
        "identity_confidence_score": 0.1,
    }
    verdict, data = run(seed_rule(), risky)
    assert data["risk_category"] == "high"
    assert verdict.action is Route.REVIEW
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.endswith("(high)")


def test_a_fail_category_fails_the_rule():
    rule = seed_rule(review_categories=[], fail_categories=["high"])
    verdict, data = run(rule, {"aml_risk_score": 1.0})
    assert data["risk_category"] == "high"
    assert verdict.outcome is Outcome.FAIL
    assert verdict.action is None


def test_too_few_components_fail_without_writing_a_score():
    rule = seed_rule(min_components=3)
    verdict, data = run(rule, {"credit_score": 700, "aml_risk_score": 0.5})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "only 2 of 4 score components available"
    assert verdict.details is not None
    assert set(verdict.details["components"]) == {"credit_score", "aml_risk"}
    assert "composite_risk_score" not in data
    assert "risk_category" not in data


def test_no_components_at_all_fail():
    verdict, data = run(seed_rule(), {})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "only 0 of 4 score components available"
    assert data == {}


def test_without_categories_only_the_score_is_written():
    rule = WeightedScore.from_params({"components": {"x": {"field": "x", "weight": 2}}})
    verdict, data = run(rule, {"x": 0.25})
    assert data == {"x": 0.25, "score": 0.25}
    assert verdict.details is not None
    assert verdict.details["category"] is None
    assert verdict.message == "score 0.250"


def test_category_field_none_keeps_the_category_out_of_the_record():
    rule = seed_rule(category_field=None)
    assert rule.provides() == ("composite_risk_score",)
    verdict, data = run(rule, dict(APPLICANT))
    assert "risk_category" not in data
    assert verdict.details is not None
    assert verdict.details["category"] == "low"


def test_provides_names_the_score_and_category_fields():
    assert seed_rule().provides() == ("composite_risk_score", "risk_category")


def test_a_transform_that_does_not_give_a_number_drops_the_component():
    rule = WeightedScore.from_params(
        {
            "components": {
                "a": {"field": "a", "weight": 1, "transform": "value > 0.5"},
                "b": {"field": "b", "weight": 1},
            }
        }
    )
    verdict, data = run(rule, {"a": 0.9, "b": 0.2})
    assert verdict.details is not None
    assert verdict.details["components"] == {"b": 0.2}
    assert data["score"] == 0.2


def test_a_transform_that_cannot_be_evaluated_raises():
    rule = WeightedScore.from_params(
        {"components": {"a": {"field": "a", "weight": 1, "transform": "value / 0"}}}
    )
    with pytest.raises(ExpressionError):
        run(rule, {"a": 1.0})


@pytest.mark.parametrize(
    ("categories", "extra", "error"),
    [
        ([{"name": "low", "below": 0.3}], {}, "last category must have no 'below'"),
        ([{"name": "a"}, {"name": "b"}], {}, "every category but the last needs"),
        (
            [{"name": "a", "below": 0.7}, {"name": "b", "below": 0.3}, {"name": "c"}],
            {},
            "category bounds must increase",
        ),
        ([{"name": "low"}], {"review_categories": ["high"]}, "unknown category 'high'"),
        ([{"name": "low"}], {"fail_categories": ["nope"]}, "unknown category 'nope'"),
        ([], {"review_categories": ["high"]}, "unknown category 'high'"),
    ],
    ids=[
        "last-has-bound",
        "middle-without-bound",
        "decreasing",
        "unknown-review",
        "unknown-fail",
        "review-without-categories",
    ],
)
def test_bad_category_params_are_rejected(
    categories: list[dict[str, Any]], extra: dict[str, Any], error: str
):
    params = {"components": {"x": {"field": "x", "weight": 1}}, "categories": categories, **extra}
    with pytest.raises(ValidationError, match=error):
        WeightedScore.from_params(params)


@pytest.mark.parametrize(
    "components",
    [
        {},
        {"x": {"field": "x", "weight": 0}},
        {"x": {"field": "x", "weight": -1}},
        {"x": {"field": "x", "weight": 1, "transform": "value +"}},
    ],
    ids=["none", "zero-weight", "negative-weight", "invalid-cel"],
)
def test_bad_component_params_are_rejected(components: dict[str, Any]):
    with pytest.raises(ValidationError):
        WeightedScore.from_params({"components": components})


def test_min_components_must_be_positive():
    with pytest.raises(ValidationError):
        seed_rule(min_components=0)


def test_a_score_json_cannot_carry_is_an_error_of_the_rule_not_a_null():
    rule = seed_rule(
        components={
            "a": {"field": "amount", "weight": 1.0},
            "b": {"field": "amount", "weight": 1.0},
        },
        categories=[{"name": "any"}],
        review_categories=[],
    )
    with pytest.raises(RuleEvaluationError, match="JSON cannot carry"):
        run(rule, {"amount": 1.5e308})  # each finite, their weighted sum is not
