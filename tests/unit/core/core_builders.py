"""Builders for core tests: small rules with known behaviour and plans made in Python."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from stream_engine.core.executor import Executor
from stream_engine.core.outcome import Outcome, Route
from stream_engine.core.plan import PipelinePlan, RuleSpec, StagePlan, dependency_levels
from stream_engine.core.result import Verdict
from stream_engine.core.rule import Rule, RuleContext
from stream_engine.core.state import RecordState


class Const(Rule[None]):
    """Always answers the same verdict, and counts its calls."""

    def __init__(
        self, outcome: Outcome = Outcome.PASS, message: str = "", action: Route | None = None
    ):
        super().__init__(None)
        self.verdict = Verdict(outcome, message or outcome.value.lower(), None, action)
        self.calls = 0

    def evaluate(self, ctx: RuleContext) -> Verdict:
        self.calls += 1
        return self.verdict


class AsyncConst(Const):
    """Like Const, but a coroutine that may take a while."""

    def __init__(
        self,
        outcome: Outcome = Outcome.PASS,
        delay: float = 0.0,
        message: str = "",
        gauge: dict[str, int] | None = None,
    ):
        super().__init__(outcome, message)
        self.delay = delay
        self.gauge = gauge if gauge is not None else {"now": 0, "peak": 0}

    async def evaluate(self, ctx: RuleContext) -> Verdict:  # type: ignore[override]
        self.calls += 1
        self.gauge["now"] += 1
        self.gauge["peak"] = max(self.gauge["peak"], self.gauge["now"])
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.gauge["now"] -= 1
        return self.verdict


class Raises(Rule[None]):
    """Raises the given exceptions in turn, then passes."""

    def __init__(self, *errors: BaseException):
        super().__init__(None)
        self.errors = list(errors)
        self.calls = 0

    def evaluate(self, ctx: RuleContext) -> Verdict:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return Verdict(Outcome.PASS, "recovered")


class Writes(Rule[None]):
    """Writes a field, and reports what it saw of another field."""

    def __init__(self, field: str, value: Any):
        super().__init__(None)
        self.field = field
        self.value = value

    def evaluate(self, ctx: RuleContext) -> Verdict:
        ctx.data[self.field] = self.value
        return Verdict(Outcome.PASS, f"wrote {self.field}")


def spec(rule_id: str, rule: Rule[Any], **options: Any) -> RuleSpec:
    """A rule spec; the stage is filled in by ``stage``."""
    return RuleSpec(
        rule_id=rule_id, stage="", rule=rule, is_async=RuleSpec.detect_async(rule), **options
    )


def stage(name: str, specs: Sequence[RuleSpec], index: int = 0, **options: Any) -> StagePlan:
    """A stage plan with its dependency levels computed."""
    specs = [replace(s, stage=name) for s in specs]
    return StagePlan(
        name=name, index=index, rules=tuple(specs), levels=dependency_levels(specs), **options
    )


def pipeline(*stages: StagePlan, **options: Any) -> PipelinePlan:
    """A pipeline plan over the given stages (indexes renumbered in order)."""
    numbered = tuple(replace(s, index=i) for i, s in enumerate(stages))
    return PipelinePlan(name="test", version="1", config_hash="h", stages=numbered, **options)


async def run(plan: PipelinePlan, data: dict[str, Any] | None = None) -> Any:
    """Run one record through every stage; returns the decision."""
    state = RecordState("r1", dict(data or {}))
    return await Executor(plan).run_record(state)
