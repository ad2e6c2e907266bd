"""Rules written as CEL expressions: cross-field checks and derived fields."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from stream_engine.core.expr import NOW, RESULTS, STATE, Expression, Scope
from stream_engine.core.records import NotJson, record_value
from stream_engine.core.result import Verdict, failed, passed
from stream_engine.core.rule import Placed, RuleContext
from stream_engine.errors import RuleEvaluationError
from stream_engine.rules.base import (
    CelSource,
    ConfiguredRule,
    RuleParams,
    field_param,
    register_rule,
)


def vars_scope(constants: dict[str, Any]) -> Scope:
    """What an expression of a rule with constants sees: the record, the results so far,
    the stateful rules' running values, ``vars`` with the keys it has, the decision time."""
    variables = frozenset({"data", RESULTS, STATE, "vars", NOW})
    return Scope(variables, {"vars": frozenset(constants)})


class Check(RuleParams):
    expr: CelSource = Field(description="a CEL condition over data, results, state and vars")
    message: str | None = Field(
        None, description="the text of the FAIL when it is false (default: the expression)"
    )
    name: str | None = Field(
        None, description="the check's name in details.failed_checks (default: check_N)"
    )


class CrossFieldParams(RuleParams):
    expr: CelSource | None = Field(
        None,
        description="one CEL condition over data, results, state and vars; give it, checks, "
        "or both",
    )
    message: str | None = Field(
        None, description="the FAIL message when expr is false (default: the expression)"
    )
    checks: list[Check] = Field(
        default_factory=list,
        description="several conditions, each {expr, message, name}; every one runs",
    )
    vars: dict[str, Any] = Field(
        default_factory=dict, description="constants the expressions read as vars.NAME"
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> CrossFieldParams:
        if self.expr is None and not self.checks:
            raise ValueError("give expr or checks")
        return self


@register_rule("CrossFieldCheck")
class CrossFieldCheck(ConfiguredRule[CrossFieldParams]):
    """FAIL when any CEL condition over ``data`` (with constants in ``vars``) is false.
    Every check runs, so the message lists all that failed."""

    Params = CrossFieldParams

    def __init__(self, params: CrossFieldParams) -> None:
        super().__init__(params)
        checks = list(params.checks)
        places: list[tuple[str | int, ...]] = [("checks", i, "expr") for i in range(len(checks))]
        if params.expr is not None:
            checks.insert(0, Check(expr=params.expr, message=params.message))
            places.insert(0, ("expr",))
        self._checks = [
            (check.name or f"check_{i}", Expression(check.expr), check.message or check.expr)
            for i, check in enumerate(checks)
        ]
        self._places = places
        self._vars = {"vars": params.vars}

    def expressions(self) -> list[Placed]:
        scope = vars_scope(self.params.vars)
        checks = zip(self._places, self._checks, strict=True)
        return [(place, check[1], scope) for place, check in checks]

    def evaluate(self, ctx: RuleContext) -> Verdict:
        failures = [
            (name, message)
            for name, expression, message in self._checks
            if not expression.is_true(ctx.data, ctx.results, self._vars, ctx.now)
        ]
        if not failures:
            return passed("all checks hold")
        return failed(
            "; ".join(message for _, message in failures),
            failed_checks=[name for name, _ in failures],
        )


class DerivedFieldParams(RuleParams):
    field: str = field_param(description="the field the value is written to")
    expr: CelSource = Field(description="the CEL expression over data, results, state and vars")
    vars: dict[str, Any] = Field(
        default_factory=dict, description="constants the expression reads as vars.NAME"
    )
    overwrite: bool = Field(
        True, description="false: a field that already holds a value is left as it is"
    )


@register_rule("DerivedField")
class DerivedField(ConfiguredRule[DerivedFieldParams]):
    """Set ``field`` to the value of a CEL expression over ``data``."""

    Params = DerivedFieldParams

    def __init__(self, params: DerivedFieldParams) -> None:
        super().__init__(params)
        self._expr = Expression(params.expr)
        self._vars = {"vars": params.vars}

    def provides(self) -> tuple[str, ...]:
        return (self.params.field,)

    def expressions(self) -> list[Placed]:
        return [(("expr",), self._expr, vars_scope(self.params.vars))]

    def evaluate(self, ctx: RuleContext) -> Verdict:
        name = self.params.field
        if not self.params.overwrite and ctx.data.get(name) is not None:
            return passed(f"{name} already set")
        value = self._expr.evaluate(ctx.data, ctx.results, self._vars, ctx.now)
        try:
            ctx.data[name] = record_value(value)
        except NotJson as exc:
            raise RuleEvaluationError(f"{name}: {exc}") from None
        return passed(f"set {name}")
