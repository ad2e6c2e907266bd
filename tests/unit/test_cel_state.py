"""CEL's ``state``: every place that sees ``results`` also sees ``state.<rule>.<name>``, the
running values a stateful rule put in its result's ``details["state"]`` - on the fast path
and the cel package's, from results of this stage and of earlier ones (read from the wire).
At load, ``state.<rule>`` must name a rule that runs before and keeps values in state, and
``state.<rule>.<name>`` one of those values; each mistake is a located error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field

from stream_engine.core.expr import Expression
from stream_engine.core.outcome import Outcome
from stream_engine.core.result import RuleResult, Verdict, passed
from stream_engine.core.rule import RuleContext
from stream_engine.errors import ConfigError, ConfigErrors, ExpressionError
from stream_engine.offline import OfflineEvaluator
from stream_engine.pipeline import load_pipeline
from stream_engine.rules.base import RULES, ConfiguredRule, RuleParams


class RunningParams(RuleParams):
    field: str = Field("amount", description="the number added to the running sum")


class Running(ConfiguredRule[RunningParams]):
    """Test only: puts a running sum and count in details["state"], as Aggregate does (this
    one forgets between records; only what it exposes matters here)."""

    Params = RunningParams

    def state_names(self) -> tuple[str, ...] | None:
        return ("sum", "count")

    def evaluate(self, ctx: RuleContext) -> Verdict:
        amount = ctx.data.get(self.params.field, 0)
        return passed("added", state={"sum": amount * 2, "count": 2})


@pytest.fixture(autouse=True)
def running_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    RULES.names()  # entry points first, so nothing registers over this later
    monkeypatch.setitem(RULES._classes, "TestRunning", Running)


def result(details: dict[str, Any] | None, outcome: Outcome = Outcome.PASS) -> RuleResult:
    return RuleResult("s", outcome, "", details)


AGG = {"agg": result({"state": {"sum": 10.0, "count": 3, "avg": None}})}


# -- evaluation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "state.agg.sum > 5.0 && state.agg.count == 3",  # the fast path
        "state.agg.sum > 5.0 && state.agg.count == 3 && 1u == 1u",  # the cel package
    ],
)
def test_state_reads_each_rules_running_values_on_either_path(source):
    expression = Expression(source)

    assert expression.is_true({}, AGG) is True


def test_the_cel_package_path_is_the_one_a_uint_takes():
    assert Expression("state.agg.sum > 5.0 && 1u == 1u")._fast is None
    assert Expression("state.agg.sum > 5.0")._fast is not None


def test_a_null_running_value_reads_as_null():
    assert Expression("state.agg.avg == null").is_true({}, AGG) is True


def test_state_of_an_earlier_stage_is_read_from_the_wire_form():
    wire = RuleResult("risk", Outcome.PASS, "ok", {"state": {"sum": 7, "count": 1}}).to_dict()
    results = {"agg": RuleResult.from_dict(wire)}

    assert Expression("state.agg.sum == 7").is_true({}, results) is True
    assert Expression("state.agg.sum == 7 && 1u == 1u").is_true({}, results) is True


@pytest.mark.parametrize("tail", ["", " && 1u == 1u"])
def test_a_rule_without_state_is_a_missing_key_like_a_missing_result(tail):
    skipped = {"agg": result(None, Outcome.SKIP)}

    with pytest.raises(ExpressionError) as state_error:
        Expression("state.agg.sum > 1" + tail).evaluate({}, skipped)
    with pytest.raises(ExpressionError) as results_error:
        Expression("results.other.outcome == 'PASS'" + tail).evaluate({}, skipped)

    assert "no such key 'agg' (guard it with has())" in str(state_error.value)
    assert "no such key 'other' (guard it with has())" in str(results_error.value)
    assert Expression("!has(state.agg)" + tail).is_true({}, skipped) is True
    assert Expression("has(state.agg)" + tail).is_true({}, AGG) is True


def test_details_whose_state_is_not_an_object_are_not_running_values():
    results = {"address": result({"state": "CA"})}

    assert Expression("has(state.address)").is_true({}, results) is False


def test_state_is_narrowed_to_the_rules_it_names():
    results = {**AGG, "other": result({"state": {"n": 1}})}

    assert Expression("size(state) == 2").is_true({}, results) is True
    assert Expression("state.agg.count == 3 && !has(state.nothing)").is_true({}, results)


def test_an_expression_that_reads_no_state_never_builds_it(monkeypatch):
    def refuse(*args: Any) -> None:
        raise AssertionError("state was built")

    monkeypatch.setattr("stream_engine.core.expr._state", refuse)

    assert Expression("results.agg.outcome == 'PASS'").is_true({}, AGG) is True
    assert Expression("data.x == 1 && 1u == 1u").is_true({"x": 1}, AGG) is True


# -- at load --------------------------------------------------------------------------------

REQUIRED_ID = {"class": "RequiredFields", "params": {"fields": ["id"]}}


def pipeline(
    reader: dict[str, Any], stage: str = "risk", condition: str | None = None
) -> dict[str, Any]:
    """``agg`` (TestRunning) in stage risk, after intake; ``reader`` added to ``stage``."""
    config: dict[str, Any] = {
        "pipeline": "pay",
        "version": "1",
        "input": {"key_field": "id"},
        "stages": {
            "intake": {"rules": {"has_id": REQUIRED_ID}},
            "risk": {"rules": {"agg": {"class": "TestRunning"}}},
            "review": {"rules": {"last": REQUIRED_ID}},
        },
    }
    config["stages"][stage]["rules"]["reader"] = reader
    if condition is not None:
        config["stages"][stage]["condition"] = condition
    return config


def check(expr: str, **options: Any) -> dict[str, Any]:
    return {"class": "CrossFieldCheck", "params": {"expr": expr}, **options}


def load(tmp_path: Path, config: dict[str, Any]) -> Any:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_pipeline(path)


def errors_of(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    try:
        load(tmp_path, config)
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    except ConfigError as exc:
        return [str(exc)]
    raise AssertionError("the configuration loaded without errors")


def decide(tmp_path: Path, config: dict[str, Any], *records: dict[str, Any]) -> list[Any]:
    compiled = load(tmp_path, config)

    async def run() -> list[Any]:
        try:
            return [d async for d in OfflineEvaluator(compiled).decisions(records)]
        finally:
            await compiled.close()

    return asyncio.run(run())


def test_a_rule_of_the_stage_listed_in_dependencies_reads_state_in_its_expression(tmp_path):
    config = pipeline(check("state.agg.sum > 100", dependencies=["agg"]))

    big, small = decide(tmp_path, config, {"id": "a", "amount": 60}, {"id": "b", "amount": 5})

    assert big["results"]["reader"]["outcome"] == "PASS"
    assert small["results"]["reader"]["outcome"] == "FAIL"


def test_a_later_stage_reads_state_in_a_when_and_its_condition(tmp_path):
    reader = check("state.agg.count == 2", when="state.agg.sum > 100")
    config = pipeline(reader, stage="review", condition="has(state.agg)")

    big, small = decide(tmp_path, config, {"id": "a", "amount": 60}, {"id": "b", "amount": 5})

    assert big["results"]["reader"]["outcome"] == "PASS"
    assert small["results"]["reader"]["outcome"] == "SKIP"


def test_a_skipped_stateful_rule_leaves_has_false(tmp_path):
    config = pipeline(check("!has(state.agg)"), stage="review")
    config["stages"]["risk"]["rules"]["agg"]["when"] = "data.amount > 10"

    [decision] = decide(tmp_path, config, {"id": "a", "amount": 5})

    assert decision["results"]["agg"]["outcome"] == "SKIP"
    assert decision["results"]["reader"]["outcome"] == "PASS"


def test_a_rule_declared_before_the_one_it_reads_is_checked_once_both_are_built(tmp_path):
    config = pipeline(check("state.agg.cont > 1", dependencies=["agg"]))
    rules = config["stages"]["risk"]["rules"]
    config["stages"]["risk"]["rules"] = {"reader": rules["reader"], "agg": rules["agg"]}

    [error] = errors_of(tmp_path, config)

    assert error.startswith(
        "stages.risk.rules.reader.params.expr: state.agg.cont: rule 'agg' (Running) keeps no "
        "value 'cont' in state (it keeps: sum, count) (did you mean 'count'?)"
    )


@pytest.mark.parametrize(
    ("stage", "reader", "where", "message"),
    [
        (
            "risk",
            check("state.agg.sum > 1"),
            "params.expr",
            "state.agg: rule 'agg' is in this stage: list it under dependencies so it runs first",
        ),
        (
            "intake",
            check("state.agg.sum > 1"),
            "params.expr",
            "state.agg: rule 'agg' is in later stage 'risk', which runs after this one",
        ),
        (
            "review",
            check("true", when="state.aggr.sum > 1"),
            "when",
            "state.aggr: unknown rule 'aggr' (did you mean 'agg'?)",
        ),
        (
            "review",
            check("state.has_id.sum > 1"),
            "params.expr",
            "state.has_id: rule 'has_id' (RequiredFields) keeps no values in state",
        ),
        (
            "review",
            {"class": "DerivedField", "params": {"field": "x", "expr": "state.agg.mean"}},
            "params.expr",
            "state.agg.mean: rule 'agg' (Running) keeps no value 'mean' in state "
            "(it keeps: sum, count)",
        ),
        (
            "review",
            check("state.reader.sum > 1"),
            "params.expr",
            "state.reader: a rule cannot read its own state",
        ),
    ],
)
def test_a_state_read_that_cannot_have_a_value_is_a_located_error(
    tmp_path, stage, reader, where, message
):
    [error] = errors_of(tmp_path, pipeline(reader, stage=stage))

    assert error.startswith(f"stages.{stage}.rules.reader.{where}: {message}")
    assert "(line " in error


def test_a_stage_condition_cannot_read_the_state_of_its_own_rules(tmp_path):
    config = pipeline(check("true"), stage="risk", condition="state.agg.sum > 1")

    [error] = errors_of(tmp_path, config)

    assert error.startswith(
        "stages.risk.condition: state.agg: rule 'agg' is in this stage, whose rules run after "
        "its condition"
    )


def test_a_service_checks_pass_when_may_read_state_too(tmp_path):
    config = pipeline(
        {
            "class": "ServiceCheck",
            "params": {"service": "score", "pass_when": "state.agg.sum < response.limit"},
        },
        stage="review",
    )
    score = {"class": "SimulatedService", "params": {"fields": {"limit": "100"}}}
    config["services"] = {"score": score}

    low, high = decide(tmp_path, config, {"id": "a", "amount": 10}, {"id": "b", "amount": 60})

    assert low["results"]["reader"]["outcome"] == "PASS"
    assert high["results"]["reader"]["outcome"] == "FAIL"
