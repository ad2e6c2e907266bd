"""CEL work is bounded: hostile sources fail to compile with an ExpressionError, hostile records
fail to evaluate with one, and neither takes long - on the fast path and on the cel package."""

from __future__ import annotations

import time

import pytest

from stream_engine.core.celfast import MAX_COST
from stream_engine.core.celshape import MAX_DEPTH, MAX_NESTING, MAX_SOURCE_LENGTH
from stream_engine.core.celstdlib import FUNCTIONS
from stream_engine.core.expr import Expression
from stream_engine.errors import ExpressionError

BIG_LIST = list(range(10_000))
BIG_TEXT = "a" * 65_536


def timed(function, *args):
    """``function(*args)``'s outcome (value or ExpressionError) and its duration in seconds."""
    start = time.perf_counter()
    try:
        outcome = function(*args)
    except ExpressionError as exc:
        outcome = exc
    return outcome, time.perf_counter() - start


@pytest.mark.parametrize(
    "source",
    [
        "(" * 1000 + "1" + ")" * 1000,
        "[" * 1000 + "]" * 1000,
        "f(" * 1000 + ")" * 1000,
        "+".join(["data.a"] * 5000),
        "data" + ".b" * 5000,
        "data.a" + "[0]" * 3000,
        " ? ".join(["true"] * 400) + " : 1" * 399,
        "1" + " + 1" * 20_000,
        "x" * (MAX_SOURCE_LENGTH + 1),
    ],
)
def test_a_source_too_deep_or_too_long_is_an_expression_error_not_a_crash(source):
    with pytest.raises(ExpressionError, match="invalid CEL expression"):
        Expression(source)


def test_a_thousand_nots_compile_and_mean_what_they_say():
    assert Expression("!" * 1000 + "data.ok").is_true({"ok": True}) is True
    assert Expression("!" * 1001 + "data.ok").is_true({"ok": True}) is False


def test_sources_at_the_limits_run_on_both_paths():
    nested = "(" * MAX_NESTING + "data.a" + ")" * MAX_NESTING
    chain = " + ".join(["data.a"] * (MAX_DEPTH - 10))
    assert Expression(nested).evaluate({"a": 1}) == 1
    assert Expression(chain).evaluate({"a": 1}) == MAX_DEPTH - 10
    assert Expression(chain + " > 0 && 1u == 1u").is_true({"a": 1}) is True  # cel package


def test_a_long_flat_condition_is_not_counted_as_deep():
    source = " || ".join(f"data.state == 'S{i}'" for i in range(300))
    assert Expression(source).is_true({"state": "S299"}) is True


def test_an_int_of_five_thousand_digits_is_an_expression_error():
    with pytest.raises(ExpressionError, match="too large"):
        Expression("int(data.n) > 5").is_true({"n": "9" * 5000})


def test_a_regex_that_backtracks_in_python_matches_in_linear_time():
    expr = Expression("data.name.matches('^([a-zA-Z]+ ?)+$')")
    outcome, seconds = timed(expr.is_true, {"name": "a" * 27 + "!"})
    assert outcome is False
    assert seconds < 0.05


def test_matches_reads_dollar_as_the_end_of_the_text_as_the_cel_package_does():
    assert Expression("data.zip.matches('^[0-9]{5}$')").is_true({"zip": "12345\n"}) is False


@pytest.mark.parametrize(
    "source",
    [
        "data.l.map(x, data.l.map(y, x + y)).size() > 0",
        "data.l.all(x, data.l.exists(y, y == x))",
        "data.l.all(x, x in data.l)",
        "data.l.map(x, data.s + data.s).size() > 0",
        "data.l.map(x, data.s.lowerAscii()).size() > 0",
        " && ".join(["data.l == data.l"] * 400),
    ],
)
def test_work_beyond_the_budget_stops_with_an_error_well_under_a_second(source):
    outcome, seconds = timed(Expression(source).evaluate, {"l": BIG_LIST, "s": BIG_TEXT})
    assert isinstance(outcome, ExpressionError)
    assert "evaluation cost limit exceeded" in str(outcome)
    assert seconds < 1.0


def test_a_comprehension_over_a_large_list_within_the_budget_runs_in_linear_time():
    expr = Expression("data.l.filter(x, x % 2 == 0).map(x, x * 2).size()")
    outcome, seconds = timed(expr.evaluate, {"l": BIG_LIST})
    assert outcome == 5_000
    assert seconds < 0.5


@pytest.mark.parametrize(
    "source",
    [
        "lists.range(100000000).size() > 0",
        "data.s.replace('a', data.s).size() > 0",
        "data.ls.join(data.s).size() > 0",
        "data.s.split('').size() > 0",
    ],
)
def test_extension_functions_refuse_results_beyond_a_record_s_size(source):
    outcome, seconds = timed(Expression(source).evaluate, {"s": BIG_TEXT, "ls": ["x"] * 50})
    assert isinstance(outcome, ExpressionError)
    assert seconds < 0.5


def test_the_cel_packages_work_is_estimated_and_refused_past_the_budget():
    source = " && ".join(["data.m == data.m"] * 100) + " && 1u == 1u"
    expr = Expression(source)
    big = {"m": {str(i): i for i in range(10_000)}}
    outcome, seconds = timed(expr.evaluate, big)
    assert isinstance(outcome, ExpressionError)
    assert f"more than {MAX_COST:,} steps" in str(outcome)
    assert seconds < 0.5
    assert expr.is_true({"m": {"a": 1}}) is True


def test_quadratic_extension_functions_run_in_linear_time_with_the_same_results():
    items = [*range(5000), *range(5000), True, 1.0, "a", [1], [1], {"k": 1}]
    outcome, seconds = timed(FUNCTIONS["distinct"], items)
    assert outcome == [*range(5000), "a", [1], {"k": 1}]
    assert seconds < 0.2
    assert FUNCTIONS["sets.contains"](BIG_LIST, BIG_LIST[::-1]) is True
    assert FUNCTIONS["sets.intersects"]([True], [1]) is True
    assert FUNCTIONS["sets.equivalent"]([[1], 2], [2, [1]]) is True


def test_a_comprehension_may_call_extension_functions_on_the_fast_path():
    expr = Expression("data.tags.exists(t, t.lowerAscii() == 'vip') && math.abs(data.n) > 1")
    assert expr.is_true({"tags": ["new", "VIP"], "n": -2}) is True


def test_a_comprehension_cannot_run_on_the_cel_package():
    with pytest.raises(ExpressionError, match=r"exists can be used only in .*fast subset.*uint"):
        Expression("data.l.exists(x, x == 1u)")


def test_a_comprehension_over_a_value_the_fast_path_does_not_know_is_an_error():
    expr = Expression("data.l.exists(x, x == data.u)")
    with pytest.raises(ExpressionError, match="uint"):
        expr.evaluate({"l": [1], "u": 2**63})


def test_an_extension_function_s_error_names_no_value():
    with pytest.raises(ExpressionError) as caught:
        Expression("bool(data.ssn)").evaluate({"ssn": "123-45-6789"})
    assert "123-45-6789" not in str(caught.value)


def test_values_nested_too_deeply_to_evaluate_are_an_expression_error():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ExpressionError):
        Expression("data.a == data.b").evaluate({"a": deep, "b": deep})
