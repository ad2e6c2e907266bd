"""CEL expressions: compiled once, evaluated against records, errors explained."""

from __future__ import annotations

import pytest

from stream_engine.core.expr import Expression, _selected_fields
from stream_engine.core.outcome import Outcome
from stream_engine.core.result import RuleResult
from stream_engine.errors import ExpressionError


def test_condition_over_record_fields():
    expr = Expression("data.age >= 18 && data.state in ['CA', 'NY']")
    assert expr.is_true({"age": 30, "state": "CA"}) is True
    assert expr.is_true({"age": 17, "state": "CA"}) is False


def test_invalid_cel_fails_at_compile_time_with_the_position():
    with pytest.raises(ExpressionError, match=r"invalid CEL expression .*1:12"):
        Expression("data.age >=")


def test_missing_field_is_an_error_that_suggests_has():
    with pytest.raises(ExpressionError, match=r"no such key 'age'.*has"):
        Expression("data.age > 1").evaluate({})


def test_has_guards_a_missing_field():
    assert Expression("!has(data.age) || data.age > 1").is_true({}) is True


def test_a_condition_must_be_a_bool():
    with pytest.raises(ExpressionError, match="must be true or false"):
        Expression("data.age").is_true({"age": 3})


def test_results_of_earlier_rules_are_visible_with_outcome_and_details():
    results = {
        "kyc": RuleResult(
            stage="compliance", outcome=Outcome.PASS, message="ok", details={"score": 0.9}
        )
    }
    expr = Expression("results.kyc.outcome == 'PASS' && results.kyc.details.score > 0.5")
    assert expr.is_true({}, results) is True


def test_extension_functions_are_available_when_used():
    assert Expression("data.name.upperAscii()").evaluate({"name": "ann"}) == "ANN"
    assert Expression("math.greatest([1, 5, 3])").evaluate({}) == 5


def test_extra_variables_are_passed_through():
    assert Expression("response.verified && vars.x == 2").is_true(
        {}, None, {"response": {"verified": True}, "vars": {"x": 2}}
    )


def test_only_fields_the_expression_reads_are_selected():
    assert _selected_fields("data.a > 1 && has(data . b)", "data") == frozenset({"a", "b"})
    assert _selected_fields("'k' in data", "data") is None
    assert _selected_fields("mydata.x + data.y", "data") == frozenset({"y"})


def test_expression_using_the_whole_record_sees_every_field():
    assert Expression("'k' in data && size(data) == 2").is_true({"k": 1, "j": 2}) is True


def test_cel_types_are_not_coerced_and_the_error_says_so():
    with pytest.raises(ExpressionError):
        Expression("data.income * 2.5").evaluate({"income": 100})
