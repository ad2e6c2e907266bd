"""Configuration unit tests (``stream-engine test``): each case is an input record and what the
pipeline must decide about it, so the people who own the rules can test them without code.

Every case runs on a pipeline compiled for it alone (fresh services, circuit breakers and
state), through ``OfflineEvaluator`` - what ``eval`` runs. A case may fix the decision time
(``now``), stand in for services (``services``): answer a given response, fail, or time out,
and give earlier records (``history``), decided first, so stateful rules remember them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)

from stream_engine.config.compiler import compile_pipeline
from stream_engine.config.loader import EffectiveConfig
from stream_engine.config.source import PathKey, Source, format_location, read_source
from stream_engine.core.outcome import Outcome, Route, Status
from stream_engine.core.registry import Registry
from stream_engine.errors import ConfigError, ConfigErrors, StreamEngineError
from stream_engine.offline import OfflineEvaluator
from stream_engine.rules import RULES
from stream_engine.services.standin import STAND_IN_CLASS, StandInParams, case_registry

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

_MISSING = object()


class Expect(BaseModel):
    """What a case asserts; every key is optional and only what is given is checked."""

    #: Enum values are kept as their text: a failure then reads ``expected 'approved'``.
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)

    status: Status | None = Field(
        None, description="the decision's status: approved, rejected, review, completed..."
    )
    route: Route | None = Field(
        None, description="the route: forward, reject, review, complete, dead_letter"
    )
    record_id: str | None = Field(None, description="the record id (from input.key_field)")
    decided_by_stage: str | None = Field(None, description="the stage that decided")
    failed_rules: list[str] | dict[str, list[str]] | None = Field(
        None,
        description="exactly these failed: a list of rules, or stage -> rules ([]: none)",
    )
    outcomes: dict[str, Outcome] = Field(
        default_factory=dict, description="rule -> PASS, FAIL, SKIP or ERROR"
    )
    not_evaluated: list[str] = Field(
        default_factory=list, description="rules that did not run; stages none of whose rules ran"
    )
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="field (a dotted path: address.city) -> its value in the output record",
    )
    absent_fields: list[str] = Field(
        default_factory=list, description="fields (dotted paths) the output record must not have"
    )
    reasons_contain: list[str] = Field(
        default_factory=list, description="texts each found in the decision's reasons"
    )
    dead_letter_reason: str | None = Field(
        None, description="the dead letter's reason (rule_error, timeout, circuit_open, ...)"
    )
    max_cost: float | None = Field(None, description="the total rule cost is at most this")


def expect_keys_help() -> list[tuple[str, str]]:
    """Each expect key with its one-line meaning (``stream-engine test --help``)."""
    return [(name, info.description or "") for name, info in Expect.model_fields.items()]


class Case(BaseModel):
    """One test case: a name, an input record, optionally one stage, and expectations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    input: dict[str, Any]
    #: Earlier records, decided in order before ``input`` through the same pipeline, so its
    #: stateful rules (and circuit breakers) have seen them; their decisions are not checked.
    history: list[dict[str, Any]] = Field(default_factory=list)
    stage: str | None = None
    now: AwareDatetime | None = None
    services: dict[str, StandInParams] = Field(default_factory=dict)
    expect: Expect


class CaseFile(BaseModel):
    """A file of cases; ``environment`` picks the overlay the cases were written for, ``now``
    is the decision time of every case that does not set its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str | None = None
    description: str = ""
    now: AwareDatetime | None = None
    cases: list[Case] = Field(min_length=1)
    _source: Source | None = PrivateAttr(None)

    def line_of(self, path: PathKey) -> int | None:
        """The line where ``path`` of the file was written (None when unknown)."""
        return self._source.line_of(path) if self._source is not None else None


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
        cases = CaseFile.model_validate(source.data)
    except ValidationError as exc:
        errors = []
        for item in exc.errors(include_url=False):
            loc = tuple(item["loc"])
            message = str(item["msg"]).removeprefix("Value error, ")
            errors.append(ConfigError(format_location(loc), message, source.line_of(loc)))
        raise ConfigErrors(errors) from None
    cases._source = source
    return cases


# -- names an expectation may use -----------------------------------------------------------


@dataclass(frozen=True)
class _Names:
    """The stages, rules (disabled ones included) and services a pipeline defines."""

    stages: dict[str, list[str]]
    services: list[str]

    @classmethod
    def of(cls, pipeline: CompiledPipeline) -> _Names:
        stages = {name: list(stage.rules) for name, stage in pipeline.config.stages.items()}
        return cls(stages, list(pipeline.config.services))

    @property
    def rules(self) -> list[str]:
        return [rule for rules in self.stages.values() for rule in rules]


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (defined: {', '.join(known)})"
    return f"unknown {kind} '{name}'{hint}"


def _case_problems(case: Case, names: _Names) -> list[tuple[PathKey, str]]:
    """Every name in ``case`` the pipeline does not define, with its path inside the case."""
    out: list[tuple[PathKey, str]] = []
    expect = case.expect
    stages, rules = list(names.stages), names.rules
    if case.stage is not None and case.stage not in names.stages:
        out.append((("stage",), _unknown("stage", case.stage, stages)))
    for service in case.services:
        if service not in names.services:
            out.append((("services", service), _unknown("service", service, names.services)))
    if expect.decided_by_stage is not None and expect.decided_by_stage not in names.stages:
        path: PathKey = ("expect", "decided_by_stage")
        out.append((path, _unknown("stage", expect.decided_by_stage, stages)))
    for rule in expect.outcomes:
        if rule not in rules:
            out.append((("expect", "outcomes", rule), _unknown("rule", rule, rules)))
    for i, name in enumerate(expect.not_evaluated):
        if name not in rules and name not in names.stages:
            path = ("expect", "not_evaluated", i)
            out.append((path, _unknown("rule or stage", name, [*rules, *stages])))
    out.extend(_failed_rules_problems(expect.failed_rules, names))
    return out


def _failed_rules_problems(
    failed: list[str] | dict[str, list[str]] | None, names: _Names
) -> list[tuple[PathKey, str]]:
    out: list[tuple[PathKey, str]] = []
    if isinstance(failed, list):
        for i, rule in enumerate(failed):
            if rule not in names.rules:
                out.append((("expect", "failed_rules", i), _unknown("rule", rule, names.rules)))
        return out
    for stage, stage_rules in (failed or {}).items():
        if stage not in names.stages:
            path: PathKey = ("expect", "failed_rules", stage)
            out.append((path, _unknown("stage", stage, names.stages)))
            continue
        for i, rule in enumerate(stage_rules):
            if rule not in names.stages[stage]:
                message = _unknown(f"rule of stage {stage}", rule, names.stages[stage])
                out.append((("expect", "failed_rules", stage, i), message))
    return out


def _timeout_problems(case: Case, pipeline: CompiledPipeline) -> list[tuple[PathKey, str]]:
    """A service without a timeout cannot time out: such a stand-in is refused."""
    return [
        (("services", name, "timeout"), f"service '{name}' has no timeout_s: it cannot time out")
        for name, stand_in in case.services.items()
        if stand_in.timeout
        and name in pipeline.services
        and pipeline.services[name].timeout_s is None
    ]


def check_cases(pipeline: CompiledPipeline, cases: CaseFile) -> None:
    """Refuse, before any case runs, a file whose expectations name stages, rules or services
    the pipeline does not define: such a check could pass without testing anything.

    Raises ``ConfigErrors`` with every problem located. Fields (``data``, ``absent_fields``)
    are not checked: a record may carry any field (see ``field_warnings``)."""
    names = _Names.of(pipeline)
    errors = []
    for i, case in enumerate(cases.cases):
        for path, message in [*_case_problems(case, names), *_timeout_problems(case, pipeline)]:
            where: PathKey = ("cases", i, *path)
            errors.append(ConfigError(format_location(where), message, cases.line_of(where)))
    if errors:
        raise ConfigErrors(errors)


def field_warnings(pipeline: CompiledPipeline, cases: CaseFile) -> list[str]:
    """``absent_fields`` that can never be present - in neither the case's input nor any
    rule's ``provides`` - so the check cannot fail (a misspelt field, most likely)."""
    provided = {
        name.split(".")[0]
        for stage in pipeline.plan.stages
        for spec in stage.rules
        for name in spec.provides
    }
    out = []
    for i, case in enumerate(cases.cases):
        for j, dotted in enumerate(case.expect.absent_fields):
            top = dotted.split(".")[0]
            if top not in case.input and top not in provided:
                where = format_location(("cases", i, "expect", "absent_fields", j))
                line = cases.line_of(("cases", i, "expect", "absent_fields", j))
                out.append(
                    f"{where}: '{dotted}' is neither in the case's input nor provided by a rule: "
                    f"this check cannot fail" + (f" (line {line})" if line else "")
                )
    return out


# -- running ----------------------------------------------------------------------------------


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
    check("record_id", expect.record_id, answer.get("record_id"))
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


def with_stand_ins(
    effective: EffectiveConfig, stand_ins: Mapping[str, StandInParams]
) -> EffectiveConfig:
    """The configuration with each named service replaced by a stand-in behind the same
    timeout, retry attempts and circuit breaker. Its retries are not waited for (no backoff):
    a stand-in answers the same every time, so waiting would only slow the test down."""
    if not stand_ins:
        return effective
    data = copy.deepcopy(effective.data)
    for name, params in stand_ins.items():
        body = data["services"][name]
        body.update({"class": STAND_IN_CLASS, "params": params.model_dump(exclude_none=True)})
        if isinstance(body.get("retry"), dict):
            body["retry"] = {**body["retry"], "backoff_s": 0.0}
    return dataclasses.replace(effective, data=data)


def _clock(moment: datetime | None) -> Callable[[], float]:
    """The decision time of a case: ``moment`` fixed, or the wall clock."""
    if moment is None:
        return time.time
    epoch = moment.timestamp()
    return lambda: epoch


async def run_case(
    effective: EffectiveConfig,
    case: Case,
    now: datetime | None = None,
    registry: Registry[Any] | None = None,
    allow_outside: bool = False,
) -> dict[str, Any]:
    """``case``'s answer from a pipeline compiled for it alone: its decision, or with
    ``stage`` that stage's result, as ``eval`` prints them."""
    answers = await case_answers(effective, case, now, registry, allow_outside)
    return answers[-1]


async def case_answers(
    effective: EffectiveConfig,
    case: Case,
    now: datetime | None = None,
    registry: Registry[Any] | None = None,
    allow_outside: bool = False,
) -> list[dict[str, Any]]:
    """The answers to ``case``'s history records, in order, then to its input: all decided
    by one evaluator of a pipeline compiled for the case alone, so the state its history
    builds is the state the input is decided with, and no other case's."""
    pipeline = compile_pipeline(
        with_stand_ins(effective, case.services),
        RULES,
        registry or case_registry(),
        allow_outside=allow_outside,
    )
    try:
        evaluator = OfflineEvaluator(pipeline, clock=_clock(case.now or now))
        records = [*map(dict, case.history), dict(case.input)]
        if case.stage is not None:
            answers = [a async for a in evaluator.stage_results(case.stage, records)]
        else:
            answers = [d async for d in evaluator.decisions(records)]
        if len(answers) != len(records):  # every line gets an answer; a bug otherwise
            raise StreamEngineError(f"{len(records)} records, but {len(answers)} answers")
        return answers
    finally:
        await pipeline.close()


def history_notes(answers: list[dict[str, Any]]) -> list[str]:
    """What went wrong with a case's history (all its answers but the last): each record
    that dead-lettered, with its reason - shown when the case fails, as its likely cause."""
    notes = []
    for i, answer in enumerate(answers[:-1]):
        dead = (
            answer.get("status") == Status.DEAD_LETTER or answer.get("route") == Route.DEAD_LETTER
        )
        if dead:
            letter = answer.get("dead_letter") or {}
            rule = f" by {letter['rule']}" if letter.get("rule") else ""
            why = letter.get("message") or "; ".join(answer.get("reasons") or [])
            notes.append(
                f"history[{i}] was dead-lettered{rule}: {letter.get('reason', '?')}: {why}"
            )
    return notes


async def run_cases(
    pipeline: CompiledPipeline, cases: CaseFile, allow_outside: bool = False
) -> list[CaseResult]:
    """Check the file's names against ``pipeline``, then run each case on its own freshly
    compiled copy of it and compare."""
    check_cases(pipeline, cases)
    registry = case_registry()
    stage_names = list(pipeline.config.stages)
    out = []
    for case in cases.cases:
        answers = await case_answers(pipeline.effective, case, cases.now, registry, allow_outside)
        failures = compare(case.expect, answers[-1], stage_names)
        if failures:
            failures += history_notes(answers)
        out.append(CaseResult(case.name, failures))
    return out
