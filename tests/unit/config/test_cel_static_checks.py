"""Every CEL expression is checked at load against what its place gives it: the variables
(``data``, ``results``, ``vars`` and its keys, ``response``/``request``, ``value``, ``rand``,
``now``), the rules whose results exist when it runs, and the functions with their overloads.
What would fail on every record is a located error, reported with all the others."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from config_helpers import base_config, errors_of, load, write

from stream_engine.cli import main


def with_rule(stage: str, rule_id: str, rule: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    config = base_config(**overrides)
    config["stages"][stage]["rules"][rule_id] = rule
    return config


def cross_field(expr: str, **options: Any) -> dict[str, Any]:
    return {"class": "CrossFieldCheck", "params": {"expr": expr}, **options}


def test_an_unknown_variable_is_an_error_at_its_place(tmp_path):
    config = with_rule("compliance", "odd", cross_field("true", when="foo.bar == 1"))
    [error] = errors_of(tmp_path, config)
    assert error.startswith("stages.compliance.rules.odd.when: unknown variable 'foo'")
    assert "here: data, now, results" in error


def test_now_is_a_variable_of_rules_and_conditions(tmp_path):
    config = with_rule(
        "compliance",
        "hours",
        cross_field("now.getHours('Europe/London') >= 9", when="now.getDayOfWeek() != 0"),
    )
    config["stages"]["compliance"]["condition"] = "now.getHours() < 17"
    load(tmp_path, config)


def test_a_mistyped_vars_key_is_an_error_naming_the_keys_there_are(tmp_path):
    rule = {
        "class": "CrossFieldCheck",
        "params": {"expr": "data.amount > vars.elevatd", "vars": {"elevated": 10}},
    }
    [error] = errors_of(tmp_path, with_rule("compliance", "limit", rule))
    assert error.startswith(
        "stages.compliance.rules.limit.params.expr: vars.elevatd: no such key in vars "
        "(defined: elevated) (did you mean 'elevated'?)"
    )


def test_a_derived_fields_vars_are_checked_too(tmp_path):
    rule = {"class": "DerivedField", "params": {"field": "x", "expr": "vars.rate", "vars": {}}}
    [error] = errors_of(tmp_path, with_rule("compliance", "fx", rule))
    assert "params.expr: vars.rate: no such key in vars (defined: none)" in error


@pytest.mark.parametrize(
    ("stage", "rule", "message"),
    [
        (
            "data_quality",
            cross_field("results.kyc_check.outcome == 'PASS'"),
            "rule 'kyc_check' is in later stage 'compliance', which runs after this one",
        ),
        (
            "data_quality",
            cross_field("results.email.outcome == 'PASS'"),
            "rule 'email' is in this stage: list it under dependencies so it runs first",
        ),
        (
            "compliance",
            cross_field("results.emial.outcome == 'PASS'"),
            "unknown rule 'emial' (did you mean 'email'?)",
        ),
        ("compliance", cross_field("results.odd.outcome == 'PASS'"), "cannot read its own"),
    ],
)
def test_results_of_a_rule_that_has_not_run_is_an_error(tmp_path, stage, rule, message):
    [error] = errors_of(tmp_path, with_rule(stage, "odd", rule))
    assert error.startswith(f"stages.{stage}.rules.odd.params.expr: results.")
    assert message in error


def test_results_of_an_earlier_stage_or_a_dependency_are_there(tmp_path):
    config = with_rule(
        "compliance", "odd", cross_field("results.required.outcome == 'PASS'", when="true")
    )
    config["stages"]["data_quality"]["rules"]["late"] = cross_field(
        "results.email.outcome == 'PASS'", dependencies=["email"]
    )
    load(tmp_path, config)


def test_a_stage_condition_reads_only_earlier_stages_results(tmp_path):
    config = base_config()
    config["stages"]["compliance"]["condition"] = "results.kyc_check.outcome == 'PASS'"
    [error] = errors_of(tmp_path, config)
    assert error.startswith(
        "stages.compliance.condition: results.kyc_check: rule 'kyc_check' is in this stage, "
        "whose rules run after its condition"
    )


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("size(1, 2) > 0", "no overload size(a, b): call it as size(a) or x.size()"),
        ("data.name.startsWith() ", "no overload x.startsWith(): call it as x.startsWith(a)"),
        ("data.name.frobnicate()", "unknown function 'frobnicate'"),
        ("now.getHours('UTC', 1) > 0", "no overload x.getHours(a, b)"),
        ("math.abs(1, 2) > 0", "no overload math.abs(a, b): call it as math.abs(a)"),
        ("now.getHours('Europe/Lodnon') > 9", "getHours('Europe/Lodnon'): unknown time zone"),
        ("now.getDate('+99:00') > 9", "getDate('+99:00'): time zone offset out of range"),
    ],
)
def test_a_function_without_that_overload_is_an_error(tmp_path, expr, message):
    [error] = errors_of(tmp_path, with_rule("compliance", "odd", cross_field(expr)))
    assert error.startswith("stages.compliance.rules.odd.params.expr: ")
    assert message in error


def test_the_time_zone_overloads_and_extension_methods_are_valid(tmp_path):
    checks = [
        {"expr": "timestamp(data.t).getHours('America/New_York') > 9"},
        {"expr": "data.s.split(',').size() > 1 && data.l.all(x, x > 0) && math.abs(-1) == 1"},
        {"expr": "type(data.s) == string && optional.of(1).hasValue()"},
    ]
    rule = {"class": "CrossFieldCheck", "params": {"checks": checks}}
    load(tmp_path, with_rule("compliance", "ok", rule))


@pytest.mark.parametrize(
    ("where", "body", "message"),
    [
        (
            "services.kyc.params.fields.verified",
            {"class": "SimulatedService", "params": {"fields": {"verified": "data.ok"}}},
            "unknown variable 'data' (here: rand, request, response)",
        ),
        (
            "stages.compliance.rules.kyc_check.params.pass_when",
            None,
            "unknown variable 'request' (here: data, now, response, results, state)",
        ),
    ],
)
def test_each_place_gives_its_own_variables(tmp_path, where, body, message):
    config = base_config()
    if body is not None:
        config["services"]["kyc"] = body
    else:
        config["stages"]["compliance"]["rules"]["kyc_check"]["params"]["pass_when"] = (
            "request.x == 1"
        )
    [error] = errors_of(tmp_path, config)
    assert error.startswith(f"{where}: {message}")


def test_a_score_transform_sees_value_and_now_only(tmp_path):
    rule = {
        "class": "WeightedScore",
        "params": {
            "score_field": "score",
            "components": {"a": {"field": "a", "weight": 1, "transform": "value * data.k"}},
        },
    }
    [error] = errors_of(tmp_path, with_rule("compliance", "score", rule))
    assert error.startswith(
        "stages.compliance.rules.score.params.components.a.transform: unknown variable 'data'"
    )


def test_an_unknown_service_is_reported_with_the_other_errors_of_its_rule(tmp_path):
    config = base_config()
    config["stages"]["compliance"]["rules"]["kyc_check"]["params"] = {
        "service": "service:kyc_typo",
        "pass_when": "response.verified >",
    }
    errors = errors_of(tmp_path, config)
    assert any(e.startswith("stages.compliance.rules.kyc_check.params.pass_when:") for e in errors)
    assert any(
        e.startswith("stages.compliance.rules.kyc_check.params.service: unknown service 'kyc_typo'")
        for e in errors
    )


def test_validate_lists_every_expression_problem_in_one_run_and_exits_1(tmp_path):
    config = with_rule("compliance", "a", cross_field("foo.bar == 1"))
    config["stages"]["compliance"]["rules"]["b"] = cross_field("size(1, 2) == 1")
    config["stages"]["data_quality"]["condition"] = "results.kyc_check.outcome == 'PASS'"
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, config))])
    assert result.exit_code == 1
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text
    for where in (
        "stages.compliance.rules.a.params.expr: unknown variable 'foo'",
        "stages.compliance.rules.b.params.expr: no overload size(a, b)",
        "stages.data_quality.condition: results.kyc_check:",
    ):
        assert where in text
