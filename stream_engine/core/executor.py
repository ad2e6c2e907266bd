"""The stage executor: runs a stage's rules on records and asks the ``Router`` where each goes.

One async code path serves every stage. Sync rules are called inline (no task per rule);
tasks are created only where concurrency is asked for: async rules of a ``parallel`` level,
and records of a batch whose stage awaits services.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from stream_engine.core.aio import await_with_timeout, gather_eager
from stream_engine.core.decision import Decision, StageOutcome
from stream_engine.core.outcome import DeadLetterReason, Route
from stream_engine.core.pii import Masker
from stream_engine.core.plan import PipelinePlan, RuleSpec, StagePlan
from stream_engine.core.router import Router
from stream_engine.core.stage_run import StageRun, interrupted
from stream_engine.core.state import AuditEntry, DeadLetter, RecordState
from stream_engine.core.watchdog import WATCHDOG, Overrun
from stream_engine.errors import RuleTimeoutError

#: How long a batch of a synchronous stage may hold the event loop before it lets the loop run
#: (heartbeats, /health), between two records.
YIELD_EVERY_S = 0.05


class Executor:
    """Runs a pipeline plan's stages on records; its ``router`` decides where each goes."""

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
        #: Decides each stage's route and each record's decision.
        self.router = Router(plan, self.specs, self.masker, clock)

    async def run_stage(self, stage: StagePlan, state: RecordState) -> StageOutcome:
        """Evaluate one stage on one record; the record's state is updated in place."""
        started_at = self.clock()
        started = time.perf_counter()
        masker = self.masker
        before = masker.values(state.data) if masker is not None else None
        whole = self._whole[stage.name]
        now = datetime.fromtimestamp(started_at, UTC)  # the audit's started_at, as CEL's now
        run = StageRun(self, stage, state, not whole, now)
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
        outcome = self.router.route(stage.name, run.pairs, run.dead_letter, run.budget_note)
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

    async def _run_armed(self, stage: StagePlan, run: StageRun, started: float) -> None:
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
            run.timed_out(f"stage '{stage.name}' {interrupted(limit)}")

    async def _condition_holds(self, stage: StagePlan, run: StageRun) -> bool:
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

    async def run_stage_batch(
        self, stage: StagePlan, states: Sequence[RecordState]
    ) -> list[StageOutcome]:
        """One stage over a batch of records: inline for sync stages, concurrently (bounded)
        when the stage awaits services - unless it keeps state, whose updates must follow
        the records' order."""
        # A stage that keeps state decides its records one after another, in order.
        if not self._has_async[stage.name] or len(states) < 2 or stage.stores:
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
                decision = self.router.decide(states[i], outcome)
                if decision is None:
                    still.append(i)
                else:
                    decisions[i] = decision
            pending = still
        for i in pending:
            decisions[i] = self.router.final(states[i], "")
        return [d for d in decisions if d is not None]

    async def run_record(self, state: RecordState) -> Decision:
        """Every enabled stage in order until one stops the record (the offline path)."""
        for stage in self._active:
            outcome = await self.run_contained(stage, state)
            decision = self.router.decide(state, outcome)
            if decision is not None:
                return decision
        return self.router.final(state, "")
