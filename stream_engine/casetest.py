"""Configuration unit tests (``stream-engine test``): each case is an input record and what the
pipeline must decide about it, so the people who own the rules can test them without code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream_engine.config.compiler import CompiledPipeline
from stream_engine.config.source import format_location, read_source
from stream_engine.core.executor import Executor
from stream_engine.core.state import RecordState
from stream_engine.errors import ConfigError, ConfigErrors

_MISSING = object()


class Expect(BaseModel):
    """What a case asserts; every key is optional and only what is given is checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["approved", "rejected", "review", "completed", "dead_letter"] | None = None
    decided_by_stage: str | None = None
    failed_rules: list[str] | dict[str, list[str]] | None = None
    outcomes: dict[str, Literal["PASS", "FAIL", "SKIP", "ERROR"]] = Field(default_factory=dict)
    not_evaluated: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    absent_fields: list[str] = Field(default_factory=list)
    reasons_contain: list[str] = Field(default_factory=list)
    dead_letter_reason: str | None = None
    route: Literal["forward", "reject", "review", "complete", "dead_letter"] | None = None
    max_cost: float | None = None


class Case(BaseModel):
    """One test case: a name, an input record, optionally one stage, and expectations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    input: dict[str, Any]
    stage: str | None = None
    expect: Expect


class CaseFile(BaseModel):
    """A file of cases; ``environment`` picks the overlay the cases were written for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str | None = None
    description: str = ""
    cases: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    """A case and what did not hold (empty when it passed)."""

    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return not self.failures


def load_cases(path: str | Path) -> CaseFile:
    """Read and validate a cases file; errors are located like config errors."""
    source = read_source(path)
    try:
        return CaseFile.model_validate(source.data)
    except ValidationError as exc:
        errors = []
        for item in exc.errors(include_url=False):
            loc = tuple(item["loc"])
            errors.append(ConfigError(format_location(loc), str(item["msg"]), source.line_of(loc)))
        raise ConfigErrors(errors) from None


def _flatten(failed: dict[str, list[str]]) -> list[str]:
    return [rule for rules in failed.values() for rule in rules]


def _get(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def compare(expect: Expect, answer: dict[str, Any], stages: list[str]) -> list[str]:
    """Every expectation that ``answer`` (a decision, or a single-stage result) breaks."""
    problems: list[str] = []

    def check(label: str, wanted: Any, got: Any) -> None:
        if wanted is not None and wanted != got:
            problems.append(f"{label}: expected {wanted!r}, got {got!r}")

    check("status", expect.status, answer.get("status"))
    check("decided_by_stage", expect.decided_by_stage, answer.get("decided_by_stage"))
    check("route", expect.route, answer.get("route"))
    failed = answer.get("failed_rules")
    if isinstance(expect.failed_rules, list) and isinstance(failed, dict):
        check("failed_rules", sorted(expect.failed_rules), sorted(_flatten(failed)))
    elif expect.failed_rules is not None:
        check("failed_rules", expect.failed_rules, failed)
    results: dict[str, Any] = answer.get("results", {})
    for rule, outcome in expect.outcomes.items():
        got = results.get(rule, {}).get("outcome", "not evaluated")
        check(f"outcome of {rule}", outcome, got)
    for name in expect.not_evaluated:
        if name in stages:
            ran = [r for r, v in results.items() if v.get("stage") == name]
            if ran:
                problems.append(f"stage {name} should not have run, but evaluated {', '.join(ran)}")
        elif name in results:
            problems.append(
                f"{name} should not have been evaluated, got {results[name]['outcome']}"
            )
    data = answer.get("data", {})
    for dotted, wanted in expect.data.items():
        got = _get(data, dotted)
        check(f"data.{dotted}", wanted, "<absent>" if got is _MISSING else got)
    for dotted in expect.absent_fields:
        if _get(data, dotted) is not _MISSING:
            problems.append(f"data.{dotted} should be absent")
    reasons = " | ".join(answer.get("reasons", []))
    for text in expect.reasons_contain:
        if text not in reasons:
            problems.append(f"reasons should mention {text!r}, got {reasons!r}")
    letter = answer.get("dead_letter") or {}
    check("dead_letter.reason", expect.dead_letter_reason, letter.get("reason"))
    if expect.max_cost is not None:
        cost = answer.get("cost", {})
        total = cost.get("total", 0.0) if isinstance(cost, dict) else cost
        if total > expect.max_cost + 1e-9:
            problems.append(f"cost: expected at most {expect.max_cost}, got {total}")
    return problems


async def run_cases(pipeline: CompiledPipeline, cases: CaseFile) -> list[CaseResult]:
    """Evaluate every case on a fresh executor and compare."""
    executor = Executor(pipeline.plan, worker="test")
    stage_names = [stage.name for stage in pipeline.plan.stages]
    out = []
    for case in cases.cases:
        state = RecordState.from_input(
            dict(case.input), pipeline.plan.key_field, pipeline.plan.tenant_field
        )
        if case.stage is not None:
            if case.stage not in stage_names:
                out.append(CaseResult(case.name, [f"unknown stage {case.stage!r}"]))
                continue
            outcome = await executor.run_stage(pipeline.plan.stage(case.stage), state)
            masker = executor.masker
            data = masker.data(state.data) if masker and masker.mask_decisions else state.data
            answer: dict[str, Any] = {
                "route": outcome.route.value,
                "reasons": outcome.reasons,
                "results": {rule: r.to_dict() for rule, r in outcome.results},
                "data": data,  # as `eval --stage` prints it
                "cost": state.cost_total,
                "dead_letter": outcome.dead_letter.to_dict() if outcome.dead_letter else None,
            }
        else:
            answer = (await executor.run_record(state)).to_dict()
        out.append(CaseResult(case.name, compare(case.expect, answer, stage_names)))
    return out
