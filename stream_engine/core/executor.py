"""The stage executor: runs a stage's rules on a record and picks the route.

One async code path serves every stage. Sync rules are called inline (no task per rule);
tasks are created only where concurrency is asked for: async rules of a ``parallel`` level,
and records of a batch whose stage awaits services.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from stream_engine.core.aio import await_with_timeout, gather_eager
from stream_engine.core.decision import Decision, StageOutcome
from stream_engine.core.outcome import DeadLetterReason, OnError, Outcome, Route
from stream_engine.core.pii import Masker
from stream_engine.core.plan import PipelinePlan, RuleSpec, StagePlan
from stream_engine.core.result import RuleResult, Verdict
from stream_engine.core.router import (
    ROUTE_PRIORITY,
    ROUTE_STATUS,
    deferred_route,
    failed_rules,
    reason_for,
    requested_route,
    strongest,
)
from stream_engine.core.rule import RuleContext
from stream_engine.core.state import AuditEntry, DeadLetter, RecordState
from stream_engine.core.watchdog import WATCHDOG, Overrun
from stream_engine.errors import RuleEvaluationError, RuleTimeoutError

#: How long a batch of a synchronous stage may hold the event loop before it lets the loop run
#: (heartbeats, /health), between two records.
YIELD_EVERY_S = 0.05

_KIND_REASON = {
    "timeout": DeadLetterReason.TIMEOUT,
    "circuit_open": DeadLetterReason.CIRCUIT_OPEN,
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


class _StageRun:
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
            state.record_id, state.data, state.results, stage.name, state.tenant, state.memo, now
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
            self.record(spec, RuleResult(self.stage.name, Outcome.SKIP, message))

    def timed_out(self, message: str | None = None) -> None:
        """Every rule of the stage without a result gets ERROR(timeout); the record dead-letters."""
        message = message or f"stage '{self.stage.name}' timed out after {self.stage.timeout_s}s"
        done = {rule_id for rule_id, _ in self.pairs}
        for spec in self.stage.rules:
            if spec.rule_id not in done:
                self.record(
                    spec,
                    RuleResult(self.stage.name, Outcome.ERROR, message, error_kind="timeout"),
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
            kind = result.error_kind or "rule_error"
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
                return RuleResult(stage, Outcome.SKIP, f"dependency '{dep}' was not evaluated")
            if got.outcome is not Outcome.PASS:
                return RuleResult(
                    stage, Outcome.SKIP, f"dependency '{dep}' did not pass ({got.outcome.value})"
                )
        data = self.state.data
        if spec.requires:
            missing = [name for name in spec.requires if data.get(name) is None]
            if missing:
                return RuleResult(
                    stage, Outcome.SKIP, "missing required field(s): " + ", ".join(missing)
                )
        if spec.when is not None:
            try:
                applies = self.sync(spec.when.is_true, data, results, None, self.ctx.now)
            except RuleTimeoutError as exc:
                return _error(stage, exc, 0, 0.0, "timeout")
            except Exception as exc:  # noqa: BLE001 - a condition's failure is the rule's
                return _error(stage, exc, 0, 0.0, "rule_error")
            if not applies:
                return RuleResult(stage, Outcome.SKIP, f"condition is false: {spec.when.source}")
        budget = self.ex.plan.budget
        if budget is not None and spec.cost and self.state.cost_total + spec.cost > budget + 1e-12:
            self.stop = "budget exceeded"
            self.budget_note = (
                f"'{spec.rule_id}' costs {spec.cost:g}, {self.state.cost_total:g} of the "
                f"budget of {budget:g} already spent"
            )
            return RuleResult(stage, Outcome.SKIP, f"not evaluated: {self.budget_note}")
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
            return self._failed(spec, exc, "rule_error", 1, started)
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
            raise RuleTimeoutError(_interrupted(limit)) from None

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
                kind, error = "timeout", exc
            except Exception as exc:  # noqa: BLE001 - a rule's own bug must not stop the stage
                kind, error = "rule_error", exc
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
                self.stage.name,
                Outcome.ERROR,
                f"rule took {duration:.0f} ms, over its timeout of {spec.timeout_s}s",
                {"error_class": "TimeoutError"},
                duration,
                attempt,
                spec.cost * attempt,
                "timeout",
            )
        return RuleResult(
            self.stage.name,
            verdict.outcome,
            verdict.message,
            verdict.details,
            duration,
            attempt,
            spec.cost * attempt,
            None,
            verdict.action,
        )

    def _check_budget_after(self, spec: RuleSpec) -> None:
        budget = self.ex.plan.budget
        if budget is not None and self.state.cost_total > budget + 1e-12 and self.stop is None:
            self.stop = "budget exceeded"
            self.budget_note = (
                f"retries of '{spec.rule_id}' brought the cost to {self.state.cost_total:g}, "
                f"over the budget of {budget:g}"
            )


def _interrupted(limit: float) -> str:
    return (
        f"interrupted after {limit:g}s of synchronous work (execution.sync_limit_s); "
        "the record cannot hold the worker longer"
    )


def _error(stage: str, exc: BaseException, attempts: int, duration: float, kind: str) -> RuleResult:
    text = str(exc) or type(exc).__name__
    return RuleResult(
        stage,
        Outcome.ERROR,
        f"{type(exc).__name__}: {text}",
        {"error_class": type(exc).__name__},
        duration,
        attempts,
        0.0,
        kind,
    )


class Executor:
    """Runs a pipeline plan's stages on records and decides their routes."""

    def __init__(
        self,
        plan: PipelinePlan,
        worker: str = "local",
        clock: Any = time.time,
        rng: random.Random | None = None,
        batch_concurrency: int = 256,
    ) -> None:
        self.plan = plan
        self.worker = worker
        self.clock = clock
        self.rng = rng or random.Random()
        self.batch_concurrency = batch_concurrency
        #: Protects the PII fields in what leaves a stage; None when none is configured.
        self.masker = Masker.for_fields(plan.pii_fields, plan.pii)
        self.specs: dict[str, RuleSpec] = {
            spec.rule_id: spec for stage in plan.stages for spec in stage.rules
        }
        self._active = plan.active_stages
        self._has_async = {stage.name: stage.has_async for stage in plan.stages}
        #: Rules called inline, without a coroutine: sync, and nothing to retry.
        self.inline = {
            rule_id: not spec.is_async and spec.retry.attempts == 1
            for rule_id, spec in self.specs.items()
        }
        #: Stages whose rules are all called inline (none awaits): the watchdog is armed once
        #: around a record's whole stage rather than around each call.
        self._whole = {
            stage.name: all(self.inline[spec.rule_id] for spec in stage.rules)
            for stage in plan.stages
        }
        self._next: dict[str, StagePlan | None] = {
            stage.name: (self._active[i + 1] if i + 1 < len(self._active) else None)
            for i, stage in enumerate(self._active)
        }

    async def run_stage(self, stage: StagePlan, state: RecordState) -> StageOutcome:
        """Evaluate one stage on one record; the record's state is updated in place."""
        started_at = self.clock()
        started = time.perf_counter()
        masker = self.masker
        before = masker.values(state.data) if masker is not None else None
        whole = self._whole[stage.name]
        now = datetime.fromtimestamp(started_at, UTC)  # the audit's started_at, as CEL's now
        run = _StageRun(self, stage, state, not whole, now)
        if whole:
            await self._run_armed(stage, run, started)
        elif not await self._condition_holds(stage, run):
            pass
        elif stage.timeout_s is not None and self._has_async[stage.name]:
            try:
                await await_with_timeout(run.run_levels(None), stage.timeout_s)
            except TimeoutError:
                run.timed_out()
        else:
            deadline = None if stage.timeout_s is None else started + stage.timeout_s
            await run.run_levels(deadline)
        if masker is not None and before is not None:
            masker.stage(run.pairs, run.dead_letter, before, state.data)
        outcome = self._route(stage, run)
        outcome.audit = AuditEntry(
            stage.name,
            started_at,
            (time.perf_counter() - started) * 1000.0,
            outcome.route,
            self.worker,
            self.plan.version,
            self.plan.config_hash,
        )
        state.audit.append(outcome.audit)
        return outcome

    async def _run_armed(self, stage: StagePlan, run: _StageRun, started: float) -> None:
        """A stage that never awaits, under one watchdog region: past the sync limit (or the
        stage's own timeout, if shorter) it is interrupted and the record dead-letters."""
        limit = self.plan.sync_limit_s
        deadline = None if stage.timeout_s is None else started + stage.timeout_s
        if stage.timeout_s is not None and stage.timeout_s < limit:
            limit = stage.timeout_s
        WATCHDOG.arm(limit)
        try:
            try:
                if await self._condition_holds(stage, run):
                    await run.run_levels(deadline)
            finally:
                WATCHDOG.disarm()
        except Overrun:
            WATCHDOG.settle()
            run.timed_out(f"stage '{stage.name}' {_interrupted(limit)}")

    async def _condition_holds(self, stage: StagePlan, run: _StageRun) -> bool:
        if stage.condition is None:
            return True
        try:
            holds: bool = run.sync(
                stage.condition.is_true, run.state.data, run.state.results, None, run.ctx.now
            )
        except Exception as exc:  # noqa: BLE001 - the condition's failure is the record's
            timed_out = isinstance(exc, RuleTimeoutError)
            run.dead_letter = DeadLetter(
                DeadLetterReason.TIMEOUT if timed_out else DeadLetterReason.RULE_ERROR,
                stage.name,
                f"stage condition: {exc}",
                error_class=type(exc).__name__,
            )
            run.skip_all(stage.rules, "not evaluated: the stage condition failed to evaluate")
            return False
        if not holds:
            run.skip_all(
                stage.rules, f"stage skipped, condition is false: {stage.condition.source}"
            )
        return holds

    def _route(self, stage: StagePlan, run: _StageRun) -> StageOutcome:
        if run.dead_letter is not None:
            return StageOutcome(
                stage.name, Route.DEAD_LETTER, [run.dead_letter.message], run.pairs, run.dead_letter
            )
        reasons: list[str] = []
        routes: list[Route] = []
        for rule_id, result in run.pairs:
            if result.outcome is Outcome.PASS and result.action is None:
                continue
            asked = requested_route(self.specs[rule_id], result)
            if asked is not Route.FORWARD:
                routes.append(asked)
                reasons.append(reason_for(rule_id, result))
        route = strongest(routes)
        if run.budget_note is not None:
            route = strongest((route, self.plan.budget_route))
            reasons.append(f"budget_exceeded: {run.budget_note}")
            if route is Route.DEAD_LETTER:
                letter = DeadLetter(DeadLetterReason.BUDGET_EXCEEDED, stage.name, reasons[-1])
                return StageOutcome(stage.name, route, reasons, run.pairs, letter, None, True)
            return StageOutcome(stage.name, route, reasons, run.pairs, None, None, True)
        if not self.plan.stop_on_stage_failure:
            # rejects and reviews are judged at the end (``decide``); a complete still stops
            route = strongest(r for r in routes if r not in (Route.REJECT, Route.REVIEW))
        return StageOutcome(stage.name, route, reasons, run.pairs)

    async def run_stage_batch(
        self, stage: StagePlan, states: Sequence[RecordState]
    ) -> list[StageOutcome]:
        """One stage over a batch of records: inline for sync stages, concurrently (bounded)
        when the stage awaits services."""
        if not self._has_async[stage.name] or len(states) < 2:
            outcomes = []
            since = time.perf_counter()
            for state in states:
                outcomes.append(await self.run_contained(stage, state))
                if time.perf_counter() - since > YIELD_EVERY_S:
                    await asyncio.sleep(0)  # let heartbeats and /health run
                    since = time.perf_counter()
            return outcomes
        limit = asyncio.Semaphore(self.batch_concurrency)

        async def one(state: RecordState) -> StageOutcome:
            async with limit:
                return await self.run_contained(stage, state)

        inline = all(spec.rule.inline_safe or not spec.is_async for spec in stage.rules)
        return await gather_eager([one(state) for state in states], inline)

    async def run_contained(self, stage: StagePlan, state: RecordState) -> StageOutcome:
        """``run_stage``, with an engine error on this record made this record's outcome (a
        dead letter, ``internal_error``) so the records around it go on."""
        try:
            return await self.run_stage(stage, state)
        except Exception as exc:  # noqa: BLE001 - one record's internal error is its own
            return self.internal_error(stage.name, state, exc)

    def internal_error(self, stage: str, state: RecordState, exc: Exception) -> StageOutcome:
        """The outcome of a record the engine failed on: dead-lettered, the error kept."""
        text = self.scrub(f"{type(exc).__name__}: {exc}", state)[:500]
        letter = DeadLetter(
            DeadLetterReason.INTERNAL_ERROR, stage, text, error_class=type(exc).__name__
        )
        outcome = StageOutcome(stage, Route.DEAD_LETTER, [f"internal_error: {text}"])
        outcome.dead_letter = letter
        outcome.error = exc
        return outcome

    def scrub(self, text: str, *states: RecordState) -> str:
        """``text`` without the PII values of ``states`` (unchanged when none is configured)."""
        masker = self.masker
        if masker is None:
            return text
        needles = {needle for state in states for needle in masker.needles(state.data)}
        return masker.scrub(text, sorted(needles, key=len, reverse=True))

    def decide(self, state: RecordState, outcome: StageOutcome) -> Decision | None:
        """The decision after a stage, or None when the record moves on to the next stage."""
        if outcome.route is Route.FORWARD:
            if self._next.get(outcome.stage) is not None:
                return None
            return self._final(state, outcome.stage)
        if not self.plan.stop_on_stage_failure and outcome.route is not Route.DEAD_LETTER:
            return self._final(state, outcome.stage, outcome)
        return self._decision(
            state, outcome.route, outcome.stage, outcome.reasons, outcome.dead_letter
        )

    def _final(
        self, state: RecordState, last_stage: str, stop: StageOutcome | None = None
    ) -> Decision:
        """The decision of a record that ran to the end, or that ``stop`` (a complete or a
        budget stop) ended early. Collecting all violations, every reject or review of every
        stage counts: the strongest route wins and every reason is kept."""
        route: Route = Route.FORWARD
        first_stage: str | None = None
        reasons: list[str] = []
        if not self.plan.stop_on_stage_failure:
            route, first_stage, reasons = deferred_route(self.specs, state.results)
        if stop is not None:
            reasons += [reason for reason in stop.reasons if reason not in reasons]
            if ROUTE_PRIORITY[stop.route] > ROUTE_PRIORITY[route]:
                route, first_stage = stop.route, stop.stage
        return self._decision(state, route, first_stage or last_stage, reasons, None)

    def _decision(
        self,
        state: RecordState,
        route: Route,
        stage: str,
        reasons: list[str],
        dead_letter: DeadLetter | None,
    ) -> Decision:
        plan = self.plan
        masker = self.masker
        return Decision(
            state=state,
            status=ROUTE_STATUS[route],
            decided_by_stage=stage,
            reasons=reasons,
            failed_rules=failed_rules(self.specs, state.results),
            decided_at=self.clock(),
            pipeline=plan.name,
            config_version=plan.version,
            config_hash=plan.config_hash,
            budget=plan.budget,
            dead_letter=dead_letter,
            data=masker.data(state.data) if masker is not None and masker.mask_decisions else None,
        )

    async def run_records(self, states: Sequence[RecordState]) -> list[Decision]:
        """A batch through every enabled stage, stage by stage (as the Kafka agents do);
        decisions come back in input order."""
        decisions: list[Decision | None] = [None] * len(states)
        pending = list(range(len(states)))
        for stage in self._active:
            if not pending:
                break
            outcomes = await self.run_stage_batch(stage, [states[i] for i in pending])
            still: list[int] = []
            for i, outcome in zip(pending, outcomes, strict=True):
                decision = self.decide(states[i], outcome)
                if decision is None:
                    still.append(i)
                else:
                    decisions[i] = decision
            pending = still
        for i in pending:
            decisions[i] = self._final(states[i], "")
        return [d for d in decisions if d is not None]

    async def run_record(self, state: RecordState) -> Decision:
        """Every enabled stage in order until one stops the record (the offline path)."""
        for stage in self._active:
            outcome = await self.run_contained(stage, state)
            decision = self.decide(state, outcome)
            if decision is not None:
                return decision
        return self._final(state, "")
