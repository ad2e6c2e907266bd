"""CrossFieldCheck and DerivedField: rules written as CEL expressions over the record."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import RuleResult, Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.errors import ExpressionError
from stream_engine.rules.expressions import CrossFieldCheck, DerivedField


def run(
    rule: Any, data: dict[str, Any], results: dict[str, RuleResult] | None = None
) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results=results or {})
    return rule.evaluate(ctx), ctx.data


# --- CrossFieldCheck -----------------------------------------------------------------------


def test_a_single_expression_that_holds_passes():
    rule = CrossFieldCheck.from_params({"expr": "data.end >= data.start"})
    verdict, _ = run(rule, {"start": 1, "end": 2})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "all checks hold"


def test_a_single_false_expression_fails_with_its_message():
    rule = CrossFieldCheck.from_params(
        {"expr": "data.end >= data.start", "message": "end is before start"}
    )
    verdict, _ = run(rule, {"start": 2, "end": 1})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "end is before start"
    assert verdict.details == {"failed_checks": ["check_0"]}


def test_a_failing_check_without_a_message_is_described_by_its_expression():
    rule = CrossFieldCheck.from_params({"expr": "data.a == data.b"})
    verdict, _ = run(rule, {"a": 1, "b": 2})
    assert verdict.message == "data.a == data.b"


def test_multiple_checks_pass_when_all_hold():
    rule = CrossFieldCheck.from_params(
        {
            "checks": [
                {"name": "positive", "expr": "data.amount > 0"},
                {"name": "currency", "expr": "data.currency in ['USD', 'EUR']"},
            ]
        }
    )
    verdict, _ = run(rule, {"amount": 10, "currency": "EUR"})
    assert verdict.outcome is Outcome.PASS


def test_every_failing_check_is_listed_not_just_the_first():
    rule = CrossFieldCheck.from_params(
        {
            "checks": [
                {"name": "positive", "expr": "data.amount > 0", "message": "amount <= 0"},
                {"name": "currency", "expr": "data.currency == 'USD'"},
                {"name": "limit", "expr": "data.amount < 1000", "message": "over limit"},
                {"expr": "data.currency != ''", "message": "no currency"},
            ]
        }
    )
    verdict, _ = run(rule, {"amount": -5, "currency": "EUR"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.details == {"failed_checks": ["positive", "currency"]}
    assert verdict.message == "amount <= 0; data.currency == 'USD'"


def test_unnamed_checks_are_named_by_position_with_expr_first():
    rule = CrossFieldCheck.from_params(
        {
            "expr": "data.x > 0",
            "checks": [{"expr": "data.x > 1"}, {"expr": "data.x > 2", "name": "big"}],
        }
    )
    verdict, _ = run(rule, {"x": 0})
    assert verdict.details == {"failed_checks": ["check_0", "check_1", "big"]}


def test_vars_are_constants_available_to_every_check():
    rule = CrossFieldCheck.from_params(
        {
            "checks": [
                {"name": "ratio", "expr": "data.debt / data.income <= vars.max_ratio"},
                {"name": "state", "expr": "data.state in vars.states"},
            ],
            "vars": {"max_ratio": 0.4, "states": ["NY", "CA"]},
        }
    )
    ok, _ = run(rule, {"debt": 30.0, "income": 100.0, "state": "NY"})
    bad, _ = run(rule, {"debt": 50.0, "income": 100.0, "state": "TX"})
    assert ok.outcome is Outcome.PASS
    assert bad.details == {"failed_checks": ["ratio", "state"]}


def test_checks_can_read_earlier_results():
    rule = CrossFieldCheck.from_params({"expr": "results.kyc.outcome == 'PASS'"})
    passed_kyc = {"kyc": RuleResult(stage="s", outcome=Outcome.PASS)}
    failed_kyc = {"kyc": RuleResult(stage="s", outcome=Outcome.FAIL)}
    assert run(rule, {}, passed_kyc)[0].outcome is Outcome.PASS
    assert run(rule, {}, failed_kyc)[0].outcome is Outcome.FAIL


def test_a_check_on_a_missing_field_raises_an_expression_error():
    rule = CrossFieldCheck.from_params({"expr": "data.a > 1"})
    with pytest.raises(ExpressionError, match="no such key 'a'"):
        run(rule, {})


def test_a_has_guard_makes_a_missing_field_a_plain_false():
    rule = CrossFieldCheck.from_params({"expr": "has(data.a) && data.a > 1"})
    assert run(rule, {})[0].outcome is Outcome.FAIL


def test_a_check_that_is_not_a_condition_raises():
    rule = CrossFieldCheck.from_params({"expr": "data.a + 1"})
    with pytest.raises(ExpressionError, match="must be true or false"):
        run(rule, {"a": 1})


def test_the_check_does_not_change_the_record():
    rule = CrossFieldCheck.from_params({"expr": "data.a == 1"})
    record = {"a": 1, "b": [1, 2]}
    _, data = run(rule, dict(record))
    assert data == record


@pytest.mark.parametrize(
    "params",
    [
        {"expr": "data.a >"},
        {"checks": [{"expr": "data.a > 1"}, {"expr": "data.b ==="}]},
    ],
    ids=["expr", "one-of-checks"],
)
def test_invalid_cel_is_rejected_at_params_validation_with_a_clear_message(
    params: dict[str, Any],
):
    with pytest.raises(ValidationError, match="invalid CEL expression") as caught:
        CrossFieldCheck.from_params(params)
    assert "Syntax error" in str(caught.value)


def test_cross_field_check_needs_expr_or_checks():
    with pytest.raises(ValidationError, match="give expr or checks"):
        CrossFieldCheck.from_params({"vars": {"a": 1}})


# --- DerivedField --------------------------------------------------------------------------


def test_derived_field_sets_the_value_of_the_expression():
    rule = DerivedField.from_params({"field": "full_name", "expr": "data.first + ' ' + data.last"})
    verdict, data = run(rule, {"first": "Ada", "last": "Lovelace"})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "set full_name"
    assert data["full_name"] == "Ada Lovelace"
    assert rule.provides() == ("full_name",)


@pytest.mark.parametrize(
    ("expr", "data", "expected"),
    [
        ("data.a * vars.k", {"a": 3}, 6),
        ("size(data.items)", {"items": [1, 2, 3]}, 3),
        ("data.name.lowerAscii()", {"name": "ADA"}, "ada"),
        ("data.a > 2 ? 'high' : 'low'", {"a": 3}, "high"),
        ("{'n': data.a}", {"a": 1}, {"n": 1}),
    ],
    ids=["vars", "size", "extension-function", "ternary", "map"],
)
def test_derived_field_supports_cel_values_of_any_type(
    expr: str, data: dict[str, Any], expected: Any
):
    rule = DerivedField.from_params({"field": "out", "expr": expr, "vars": {"k": 2}})
    _, record = run(rule, data)
    assert record["out"] == expected


def test_derived_field_overwrites_an_existing_value_by_default():
    rule = DerivedField.from_params({"field": "total", "expr": "data.a + data.b"})
    _, data = run(rule, {"a": 1, "b": 2, "total": 99})
    assert data["total"] == 3


def test_derived_field_keeps_an_existing_value_when_overwrite_is_false():
    rule = DerivedField.from_params(
        {"field": "total", "expr": "data.a + data.b", "overwrite": False}
    )
    verdict, data = run(rule, {"a": 1, "b": 2, "total": 99})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "total already set"
    assert data["total"] == 99


@pytest.mark.parametrize("existing", [{}, {"total": None}])
def test_derived_field_fills_an_absent_or_null_value_when_overwrite_is_false(
    existing: dict[str, Any],
):
    rule = DerivedField.from_params(
        {"field": "total", "expr": "data.a + data.b", "overwrite": False}
    )
    _, data = run(rule, {"a": 1, "b": 2, **existing})
    assert data["total"] == 3


def test_derived_field_raises_when_the_expression_cannot_be_evaluated():
    rule = DerivedField.from_params({"field": "x", "expr": "data.missing + 1"})
    with pytest.raises(ExpressionError):
        run(rule, {})


def test_derived_field_rejects_invalid_cel():
    with pytest.raises(ValidationError, match="invalid CEL expression"):
        DerivedField.from_params({"field": "x", "expr": "data.a +"})


def test_derived_field_needs_a_field():
    with pytest.raises(ValidationError):
        DerivedField.from_params({"expr": "1"})
