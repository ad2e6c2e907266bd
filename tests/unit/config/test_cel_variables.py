"""``${VAR}`` inside a CEL expression is inserted as a literal, never as expression text: inside
a string literal it is escaped for that literal, outside one it becomes a literal of its own (a
number or boolean when the whole value reads as one, else a quoted string). Every CEL field
gets this - stage conditions, rules' ``when``, and each rule or service param declared CEL,
however deeply nested - while other fields keep plain interpolation."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner
from config_helpers import base_config, errors_of, load, write

from stream_engine.cli import main
from stream_engine.config.loader import interpolate_cel
from stream_engine.core.expr import Expression

HOSTILE = [
    "x' || true || '",
    'x" || true || "',
    "x''' || true || '''",
    "\\' || true || '",
    "\\",
    "line\nbreak || true",
    "tab\tand\rreturn\x00nul\x1b[2J",
    "ünïcødé ✓",
    "",
    "${NESTED}",
]


def cel(source: str, **environ: str) -> str:
    errors: list = []
    text = interpolate_cel(source, environ, ("x",), errors)
    assert errors == []
    return text


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("quoted", ["'${V}'", '"${V}"', "'''${V}'''", '"""${V}"""'])
def test_a_value_inside_a_string_literal_is_that_literal_and_nothing_more(value, quoted):
    expression = Expression(cel(f"data.c == {quoted}", V=value))
    assert expression.evaluate({"c": value}) is True
    assert expression.evaluate({"c": "x"}) is (value == "x")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_outside_a_string_is_one_quoted_string_literal(value):
    expression = Expression(cel("data.c == ${V}", V=value))
    assert expression.evaluate({"c": value}) is True


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("5", "5"),
        ("-5", "-5"),
        ("2.5", "2.5"),
        ("1e3", "1e3"),
        ("true", "true"),
        ("false", "false"),
    ],
)
def test_a_value_that_reads_as_a_number_or_boolean_is_inserted_as_that_literal(value, literal):
    assert cel("data.n == ${V}", V=value) == f"data.n == {literal}"


@pytest.mark.parametrize("value", ["5 || true", "5) || (true", "true || data.x", "null", " 5"])
def test_a_value_that_is_more_than_a_literal_becomes_a_string(value):
    source = cel("data.n > ${V}", V=value)
    assert source == f"data.n > {orjson.dumps(value).decode()}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x${N}", "x 5"),  # never a new name
        ("${N}${N}", "5 5"),  # never a longer number
        ("${N}.5", "5 .5"),
        ("data.${F}", 'data. "amount"'),  # never a field name: a syntax error at load
        ("[${N}, ${F}]", '[5, "amount"]'),
        ("'$$${N}'", "'$5'"),
        ("size(${UNSET:-ab}) == 2", 'size("ab") == 2'),
    ],
)
def test_a_literal_never_joins_the_text_around_it(source, expected):
    assert cel(source, N="5", F="amount") == expected


def test_a_value_in_a_bytes_literal_is_escaped_for_bytes():
    assert cel("b'${V}'", V="a'\x01") == "b'a\\'\\x01'"
    Expression(cel("data.b == b'${V}'", V="a'\x01\n"))


def test_a_value_in_a_comment_stays_in_the_comment():
    expression = Expression(cel("data.ok // ${V}\n && data.also", V="x\n|| true"))
    assert expression.evaluate({"ok": True, "also": False}) is False


def test_a_raw_string_takes_a_value_without_quotes_as_it_is():
    assert cel("data.c.matches(r'^${P}$')", P="[a-z]+\\d") == "data.c.matches(r'^[a-z]+\\d$')"


@pytest.mark.parametrize("value", ["x' || true || '", "a\nb"])
def test_a_raw_string_refuses_a_value_it_cannot_hold(value):
    errors: list = []
    interpolate_cel("data.c.matches(r'^${P}$')", {"P": value}, ("stages", "s", "condition"), errors)
    assert [str(e) for e in errors] == [
        "stages.s.condition: the value of ${P} holds a quote or a line break, which a raw "
        "string (r'...') cannot hold: drop the r prefix"
    ]


# -- through the compiler: every CEL field, and only those ----------------------------------


def country_check(expr: str = "data.country == '${COUNTRY}'") -> dict:
    config = base_config()
    config["stages"]["data_quality"]["rules"]["country"] = {
        "class": "CrossFieldCheck",
        "params": {"expr": expr},
    }
    return config


def eval_status(tmp_path, config: dict, record: dict, env: dict[str, str]) -> str:
    path = write(tmp_path, config)
    result = CliRunner().invoke(
        main, ["eval", str(path), "--stage", "data_quality"], input=orjson.dumps(record), env=env
    )
    assert result.exit_code == 0, result.stderr
    return orjson.loads(result.stdout)["results"]["country"]["outcome"]


def test_the_country_check_of_the_review_is_not_passed_by_a_crafted_variable(tmp_path):
    record = {"name": "A", "email": "a@example.com", "country": "FR"}
    assert eval_status(tmp_path, country_check(), record, {"COUNTRY": "x' || true || '"}) == "FAIL"
    assert eval_status(tmp_path, country_check(), record, {"COUNTRY": "FR"}) == "PASS"


WHERE = {
    "stage condition": (("stages", "compliance", "condition"), "data.c == '${V}'"),
    "rule when": (("stages", "data_quality", "rules", "email", "when"), "data.c == '${V}'"),
    "rule param": (("stages", "data_quality", "rules", "country", "params", "expr"), None),
    "param in a list of models": (
        ("stages", "data_quality", "rules", "many", "params", "checks", 1, "expr"),
        "data.c == '${V}'",
    ),
    "param in a dict of models": (
        ("stages", "data_quality", "rules", "score", "params", "components", "c", "transform"),
        "value + double('${V}'.size())",
    ),
    "service check param": (
        ("stages", "compliance", "rules", "kyc_check", "params", "pass_when"),
        "response.verified || '${V}' == 'yes'",
    ),
    "service param": (("services", "kyc", "params", "fields", "verified"), "'${V}' == 'yes'"),
}


def every_cel_field(expr: str) -> dict:
    config = country_check(expr)
    rules = config["stages"]["data_quality"]["rules"]
    config["stages"]["compliance"]["condition"] = expr
    rules["email"]["when"] = expr
    checks = [{"expr": "true"}, {"expr": expr}]
    rules["many"] = {"class": "CrossFieldCheck", "params": {"checks": checks}}
    component = {"field": "n", "weight": 1, "transform": "value + double('${V}'.size())"}
    rules["score"] = {"class": "WeightedScore", "params": {"components": {"c": component}}}
    kyc = config["stages"]["compliance"]["rules"]["kyc_check"]["params"]
    kyc["pass_when"] = "response.verified || '${V}' == 'yes'"
    config["services"]["kyc"]["params"]["fields"]["verified"] = "'${V}' == 'yes'"
    config["description"] = "checks ${V}"  # not CEL
    rules["country"]["params"]["message"] = "not ${V}"  # not CEL
    return config


@pytest.mark.parametrize("where", list(WHERE))
def test_every_cel_field_gets_the_variable_as_a_literal(tmp_path, where):
    path, source = WHERE[where]
    pipeline = load(tmp_path, every_cel_field("data.c == '${V}'"), environ={"V": "x' || '"})
    value = pipeline.effective.data
    for part in path:
        value = value[part]
    written = (source or "data.c == '${V}'").replace("${V}", "x\\' || \\'")
    assert value == written


def test_the_compiled_plan_runs_the_literal_form(tmp_path):
    pipeline = load(tmp_path, every_cel_field("data.c == '${V}'"), environ={"V": "x' || '"})
    stage = pipeline.plan.stage("data_quality")
    email = next(spec for spec in stage.rules if spec.rule_id == "email")
    assert pipeline.plan.stage("compliance").condition.source == "data.c == 'x\\' || \\''"
    assert email.when.source == "data.c == 'x\\' || \\''"
    assert pipeline.services["kyc"].service.params.fields["verified"] == "'x\\' || \\'' == 'yes'"


def test_fields_that_are_not_cel_keep_plain_interpolation(tmp_path):
    pipeline = load(tmp_path, every_cel_field("data.c == '${V}'"), environ={"V": "x' || '"})
    assert pipeline.config.description == "checks x' || '"
    country = pipeline.config.stages["data_quality"].rules["country"]
    assert country.params["message"] == "not x' || '"


def test_a_raw_string_that_cannot_hold_the_value_is_a_located_config_error(tmp_path):
    config = country_check("data.country.matches(r'^${COUNTRY}$')")
    errors = errors_of(tmp_path, config, environ={"COUNTRY": "x' || true || '"})
    assert errors == [
        "stages.data_quality.rules.country.params.expr: the value of ${COUNTRY} holds a quote "
        "or a line break, which a raw string (r'...') cannot hold: drop the r prefix (line 26)"
    ]


def test_a_name_from_a_variable_is_a_cel_error_at_load_not_a_field_access(tmp_path):
    [error] = errors_of(tmp_path, country_check("data.${FIELD} == 'US'"), environ={"FIELD": "x"})
    assert error.startswith("stages.data_quality.rules.country.params.expr: invalid CEL")


# -- config_hash ----------------------------------------------------------------------------


def test_the_hash_covers_the_expression_as_it_runs(tmp_path):
    crafted = load(tmp_path, country_check(), environ={"COUNTRY": "x' || true || '"})
    written = load(tmp_path, country_check("data.country == 'x\\' || true || \\''"), environ={})
    assert crafted.plan.config_hash == written.plan.config_hash


def test_the_hash_of_a_cel_variable_is_that_of_the_plain_value_when_nothing_needs_escaping(
    tmp_path,
):
    us = load(tmp_path, country_check(), environ={"COUNTRY": "US"})
    fr = load(tmp_path, country_check(), environ={"COUNTRY": "FR"})
    literal = load(tmp_path, country_check("data.country == 'US'"), environ={})
    assert us.plan.config_hash == literal.plan.config_hash
    assert us.plan.config_hash != fr.plan.config_hash
