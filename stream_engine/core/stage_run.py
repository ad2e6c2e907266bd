"""One stage on one record: its rules evaluated level by level, with their pre-checks,
retries, timeouts and budget, and the book-keeping of why the stage stopped, if it did."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stream_engine.core.aio import await_with_timeout, gather_eager
from stream_engine.core.outcome import DeadLetterReason, ErrorKind, OnError, Outcome, Route
from stream_engine.core.plan import RuleSpec, StagePlan
from stream_engine.core.result import RuleResult, Verdict
from stream_engine.core.router import requested_route
from stream_engine.core.rule import RuleContext
from stream_engine.core.state import DeadLetter, RecordState
from stream_engine.core.watchdog import WATCHDOG, Overrun
from stream_engine.errors import RuleEvaluationError, RuleTimeoutError

if TYPE_CHECKING:
    from stream_engine.core.executor import Executor

_KIND_REASON: dict[str, DeadLetterReason] = {
    ErrorKind.TIMEOUT: DeadLetterReason.TIMEOUT,
    ErrorKind.CIRCUIT_OPEN: DeadLetterReason.CIRCUIT_OPEN,
}


async def _settle(value: Any, limit: float | None, inline: bool) -> Verdict:
    """What a rule returned that is not a Verdict: await it (under the rule's timeout), then
    accept a Verdict or a plain bool."""
    if isinstance(value, Coroutine):
        value = await await_with_timeout(value, limit, inline)
    elif isinstance(value, Awaitable):
        async with asyncio.timeout(limit):
            value = await value
    return _verdict(value)


def _verdict(value: object) -> Verdict:
    """Accept a Verdict, or a plain bool from a custom rule (True → PASS, False → FAIL)."""
    if isinstance(value, Verdict):
        return value
    if isinstance(value, bool):
        return Verdict(
            Outcome.PASS if value else Outcome.FAIL, "" if value else "rule returned false"
        )
    if isinstance(value, Coroutine):
        value.close()
        raise TypeError("evaluate returned a coroutine: declare it with 'async def'")
    raise TypeError(f"a rule must return a Verdict, got {type(value).__name__}")


class StageRun:
    """Book-keeping of one stage on one record: results so far and why it stopped, if it did."""

    __slots__ = (
        "budget_note", "ctx", "dead_letter", "ex", "guard", "pairs", "stage", "state", "stop",
    )  # fmt: skip

    def __init__(
        self, ex: Executor, stage: StagePlan, state: RecordState, guard: bool, now: datetime
    ) -> None:
        self.ex = ex
        self.stage = stage
        self.state = state
        #: Whether each synchronous call arms the watchdog itself (stages that await); a
        #: stage that never awaits is armed once, around the whole record.
        self.guard = guard
        self.ctx = RuleContext(
            state.record_id,
            state.data,
            state.results,
            stage.name,
            state.tenant,
            state.memo,
            now,
            state.stores,
        )
        self.pairs: list[tuple[str, RuleResult]] = []
        self.stop: str | None = None
        self.dead_letter: DeadLetter | None = None
        self.budget_note: str | None = None

    async def run_levels(self, deadline: float | None) -> None:
        for level in self.stage.levels:
            if self.stop is not None:
                self.skip_all(level, f"not evaluated: {self.stop}")
            elif self.stage.parallel and sum(spec.is_async for spec in level) > 1:
                await self.run_parallel(level)
            else:
                inline = self.ex.inline
                for spec in level:
                    if self.stop is not None:
                        self.skip_all((spec,), f"not evaluated: {self.stop}")
                        continue
                    if deadline is not None and time.perf_counter() > deadline:
                        self.timed_out()
                        return
                    if inline[spec.rule_id]:
                        result = self.evaluate_now(spec)
                    else:
                        result = await self.evaluate(spec)
                    self.state.results[spec.rule_id] = result
                    self.pairs.append((spec.rule_id, result))
                    if result.outcome is not Outcome.PASS or result.action is not None:
                        self.check_stop(spec, result)

    async def run_parallel(self, level: Sequence[RuleSpec]) -> None:
        limit = asyncio.Semaphore(max(1, self.stage.max_parallel_rules))

        async def one(spec: RuleSpec) -> None:
            async with limit:
                self.record(spec, await self.evaluate(spec))

        inline = all(spec.rule.inline_safe or not spec.is_async for spec in level)
        await gather_eager([one(spec) for spec in level], inline)
        for spec in level:
            self.check_stop(spec, self.state.results[spec.rule_id])

    def skip_all(self, specs: Sequence[RuleSpec], message: str) -> None:
        for spec in specs:
            self.record(
                spec, RuleResult(stage=self.stage.name, outcome=Outcome.SKIP, message=message)
            )

    def timed_out(self, message: str | None = None) -> None:
        """Every rule of the stage without a result gets ERROR(timeout); the record dead-letters."""
        message = message or f"stage '{self.stage.name}' timed out after {self.stage.timeout_s}s"
        done = {rule_id for rule_id, _ in self.pairs}
        for spec in self.stage.rules:
            if spec.rule_id not in done:
                self.record(
                    spec,
                    RuleResult(
                        stage=self.stage.name,
                        outcome=Outcome.ERROR,
                        message=message,
                        error_kind=ErrorKind.TIMEOUT,
                    ),
                )
        self.dead_letter = DeadLetter(
            DeadLetterReason.TIMEOUT, self.stage.name, message, error_class="TimeoutError"
        )
        self.stop = message

    def record(self, spec: RuleSpec, result: RuleResult) -> None:
        self.state.results[spec.rule_id] = result
        self.pairs.append((spec.rule_id, result))

    def check_stop(self, spec: RuleSpec, result: RuleResult) -> None:
        """Decide whether this result ends the stage early (dead letter, complete, fail-fast)."""
        if self.stop is not None:
            return
        if result.outcome is Outcome.ERROR and spec.on_error is OnError.DEAD_LETTER:
            kind = result.error_kind or ErrorKind.RULE_ERROR
            self.dead_letter = DeadLetter(
                _KIND_REASON.get(kind, DeadLetterReason.RULE_ERROR),
                self.stage.name,
                result.message,
                rule=spec.rule_id,
                error_class=(result.details or {}).get("error_class", ""),
                attempts=result.attempts,
            )
            self.stop = f"'{spec.rule_id}' errored"
            return
        route = requested_route(spec, result)
        if route is Route.COMPLETE or (
            route in (Route.REJECT, Route.REVIEW) and self.stage.fail_fast
        ):
            self.stop = f"stage stopped after '{spec.rule_id}' ({result.outcome.value})"

    def precheck(self, spec: RuleSpec) -> RuleResult | None:
        """A SKIP (or ERROR) result when the rule must not run: a dependency did not pass, a
        required field is missing, its condition is false, or it would exceed the budget."""
        unconditional = not (
            spec.dependencies or spec.cross_stage_dependencies or spec.requires or spec.when
        )
        if unconditional and (not spec.cost or self.ex.plan.budget is None):
            return None
        stage = self.stage.name
        results = self.state.results
        for dep in spec.dependencies + spec.cross_stage_dependencies:
            got = results.get(dep)
            if got is None:
                return RuleResult(
                    stage=stage,
                    outcome=Outcome.SKIP,
                    message=f"dependency '{dep}' was not evaluated",
                )
            if got.outcome is not Outcome.PASS:
                return RuleResult(
                    stage=stage,
                    outcome=Outcome.SKIP,
                    message=f"dependency '{dep}' did not pass ({got.outcome.value})",
                )
        data = self.state.data
        if spec.requires:
            missing = [name for name in spec.requires if data.get(name) is None]
            if missing:
                return RuleResult(
                    stage=stage,
                    outcome=Outcome.SKIP,
                    message="missing required field(s): " + ", ".join(missing),
                )
        if spec.when is not None:
            try:
                applies = self.sync(spec.when.is_true, data, results, None, self.ctx.now)
            except RuleTimeoutError as exc:
                return _error(stage, exc, 0, 0.0, ErrorKind.TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - a condition's failure is the rule's
                return _error(stage, exc, 0, 0.0, ErrorKind.RULE_ERROR)
            if not applies:
                return RuleResult(
                    stage=stage,
                    outcome=Outcome.SKIP,
                    message=f"condition is false: {spec.when.source}",
                )
        budget = self.ex.plan.budget
        if budget is not None and spec.cost and self.state.cost_total + spec.cost > budget + 1e-12:
            self.stop = "budget exceeded"
            self.budget_note = (
                f"'{spec.rule_id}' costs {spec.cost:g}, {self.state.cost_total:g} of the "
                f"budget of {budget:g} already spent"
            )
            return RuleResult(
                stage=stage, outcome=Outcome.SKIP, message=f"not evaluated: {self.budget_note}"
            )
        return None

    def evaluate_now(self, spec: RuleSpec) -> RuleResult:
        """A sync rule without retries, called inline: no coroutine is made for it."""
        early = self.precheck(spec)
        if early is not None:
            return early
        if spec.cost:
            self.charge(spec)
        started = time.perf_counter()
        try:
            value: Any = self.sync(spec.rule.evaluate, self.ctx)
            if type(value) is not Verdict:
                value = _verdict(value)
        except RuleEvaluationError as exc:
            return self._failed(spec, exc, exc.kind, 1, started)
        except Exception as exc:  # noqa: BLE001 - a rule's own bug must not stop the stage
            return self._failed(spec, exc, ErrorKind.RULE_ERROR, 1, started)
        return self._done(spec, value, 1, started)

    def sync(self, call: Any, *args: Any) -> Any:
        """``call(*args)``, under the watchdog when this run arms per call: past
        ``execution.sync_limit_s`` it is interrupted and ``RuleTimeoutError`` raised."""
        if not self.guard:
            return call(*args)
        limit = self.ex.plan.sync_limit_s
        WATCHDOG.arm(limit)
        try:
            try:
                return call(*args)
            finally:
                WATCHDOG.disarm()
        except Overrun:
            WATCHDOG.settle()
            raise RuleTimeoutError(interrupted(limit)) from None

    def charge(self, spec: RuleSpec) -> None:
        state = self.state
        state.cost_total += spec.cost
        state.cost_by_rule[spec.rule_id] = state.cost_by_rule.get(spec.rule_id, 0.0) + spec.cost

    def _failed(
        self, spec: RuleSpec, error: Exception, kind: str, attempt: int, started: float
    ) -> RuleResult:
        if attempt > 1 and spec.cost:
            self._check_budget_after(spec)
        duration = (time.perf_counter() - started) * 1000.0
        result = _error(self.stage.name, error, attempt, duration, kind)
        result.cost = spec.cost * attempt
        return result

    async def evaluate(self, spec: RuleSpec) -> RuleResult:
        """Pre-checks, then the attempts with retries; exceptions become ERROR results and
        never escape."""
        early = self.precheck(spec)
        if early is not None:
            return early
        rule, ctx = spec.rule, self.ctx
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            if spec.cost:
                self.charge(spec)
            try:
                value: Any = rule.evaluate(ctx) if spec.is_async else self.sync(rule.evaluate, ctx)
                if type(value) is not Verdict:
                    value = await _settle(value, spec.timeout_s, rule.inline_safe)
            except RuleEvaluationError as exc:
                kind = exc.kind
                error: Exception = exc
            except TimeoutError as exc:
                kind, error = ErrorKind.TIMEOUT, exc
            except Exception as exc:  # noqa: BLE001 - a rule's own bug must not stop the stage
                kind, error = ErrorKind.RULE_ERROR, exc
            else:
                return self._done(spec, value, attempt, started)
            if not spec.retry.should_retry(kind, attempt):
                return self._failed(spec, error, kind, attempt, started)
            await asyncio.sleep(spec.retry.delay(attempt, self.ex.rng))

    def _done(self, spec: RuleSpec, verdict: Verdict, attempt: int, started: float) -> RuleResult:
        duration = (time.perf_counter() - started) * 1000.0
        if attempt > 1 and spec.cost:
            self._check_budget_after(spec)
        if not spec.is_async and spec.timeout_s and duration > spec.timeout_s * 1000.0:
            return RuleResult(
                stage=self.stage.name,
                outcome=Outcome.ERROR,
                message=f"rule took {duration:.0f} ms, over its timeout of {spec.timeout_s}s",
                details={"error_class": "TimeoutError"},
                duration_ms=duration,
                attempts=attempt,
                cost=spec.cost * attempt,
                error_kind=ErrorKind.TIMEOUT,
            )
        return RuleResult(
            stage=self.stage.name,
            outcome=verdict.outcome,
            message=verdict.message,
            details=verdict.details,
            duration_ms=duration,
            attempts=attempt,
            cost=spec.cost * attempt,
            action=verdict.action,
        )

    def _check_budget_after(self, spec: RuleSpec) -> None:
        budget = self.ex.plan.budget
        if budget is not None and self.state.cost_total > budget + 1e-12 and self.stop is None:
            self.stop = "budget exceeded"
            self.budget_note = (
                f"retries of '{spec.rule_id}' brought the cost to {self.state.cost_total:g}, "
                f"over the budget of {budget:g}"
            )


def interrupted(limit: float) -> str:
    """The message of a record interrupted past the sync limit (``execution.sync_limit_s``)."""
    return (
        f"interrupted after {limit:g}s of synchronous work (execution.sync_limit_s); "
        "the record cannot hold the worker longer"
    )


def _error(stage: str, exc: BaseException, attempts: int, duration: float, kind: str) -> RuleResult:
    text = str(exc) or type(exc).__name__
    return RuleResult(
        stage=stage,
        outcome=Outcome.ERROR,
        message=f"{type(exc).__name__}: {text}",
        details={"error_class": type(exc).__name__},
        duration_ms=duration,
        attempts=attempts,
        error_kind=kind,
    )
