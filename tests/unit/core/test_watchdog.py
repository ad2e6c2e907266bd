"""Synchronous rule work is bounded: a rule (or condition) that holds the worker past
``execution.sync_limit_s`` is interrupted there, its record dead-letters ``timeout``, and the
records after it run as usual - in stages that never await and in stages that do."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from core_builders import AsyncConst, Const, pipeline, spec, stage

from stream_engine.core.executor import Executor
from stream_engine.core.expr import Expression
from stream_engine.core.outcome import DeadLetterReason, Outcome, Route, Status
from stream_engine.core.result import Verdict
from stream_engine.core.retry import RetryPolicy
from stream_engine.core.rule import Rule, RuleContext
from stream_engine.core.state import RecordState
from stream_engine.core.watchdog import WATCHDOG, Overrun

LIMIT = 0.2


class Spins(Rule[None]):
    """Loops for ever on records whose ``spin`` is true - and swallows every Exception."""

    def __init__(self) -> None:
        super().__init__(None)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        while ctx.data.get("spin"):
            with contextlib.suppress(Exception):  # careless on purpose: it catches everything
                sum(range(1000))
        return Verdict(Outcome.PASS, "done")


def records(*spins: bool) -> list[RecordState]:
    return [RecordState(f"r{i}", {"spin": spin}) for i, spin in enumerate(spins)]


async def test_a_spinning_rule_in_a_stage_that_never_awaits_is_interrupted_and_dead_letters():
    plan = pipeline(
        stage("checks", [spec("spin", Spins()), spec("after", Const())]), sync_limit_s=LIMIT
    )
    started = time.perf_counter()
    outcomes = await Executor(plan).run_stage_batch(plan.stages[0], records(False, True, False))
    elapsed = time.perf_counter() - started
    assert [o.route for o in outcomes] == [Route.FORWARD, Route.DEAD_LETTER, Route.FORWARD]
    letter = outcomes[1].dead_letter
    assert letter is not None
    assert letter.reason is DeadLetterReason.TIMEOUT
    assert "interrupted after 0.2s of synchronous work (execution.sync_limit_s)" in letter.message
    assert dict(outcomes[1].results)["after"].outcome is Outcome.ERROR
    assert LIMIT <= elapsed < LIMIT + 1.0


async def test_a_spinning_sync_rule_in_a_stage_that_awaits_is_interrupted_as_that_rule():
    plan = pipeline(
        stage("mixed", [spec("call", AsyncConst(delay=0.001)), spec("spin", Spins())]),
        sync_limit_s=LIMIT,
    )
    outcomes = await Executor(plan).run_stage_batch(plan.stages[0], records(True, False))
    assert [o.route for o in outcomes] == [Route.DEAD_LETTER, Route.FORWARD]
    spun = dict(outcomes[0].results)["spin"]
    assert (spun.outcome, spun.error_kind) == (Outcome.ERROR, "timeout")
    assert outcomes[0].dead_letter is not None
    assert outcomes[0].dead_letter.reason is DeadLetterReason.TIMEOUT


async def test_a_spinning_sync_rule_with_retries_is_interrupted_on_every_attempt():
    retry = RetryPolicy(attempts=2, backoff_s=0.0, retry_on=frozenset({"timeout"}))
    plan = pipeline(stage("checks", [spec("spin", Spins(), retry=retry)]), sync_limit_s=LIMIT)
    [outcome] = await Executor(plan).run_stage_batch(plan.stages[0], records(True))
    spun = dict(outcome.results)["spin"]
    assert (spun.outcome, spun.error_kind, spun.attempts) == (Outcome.ERROR, "timeout", 2)


class SlowCondition:
    """An expression-like condition that spins when the record says so."""

    source = "spin"

    def is_true(self, data, results, extra=None, now=None) -> bool:
        while data.get("spin"):
            pass
        return True


async def test_a_stage_condition_that_spins_dead_letters_its_record_as_a_timeout():
    plan = pipeline(
        stage("gated", [spec("call", AsyncConst())], condition=SlowCondition()),
        sync_limit_s=LIMIT,
    )
    outcomes = await Executor(plan).run_stage_batch(plan.stages[0], records(True, False))
    assert [o.route for o in outcomes] == [Route.DEAD_LETTER, Route.FORWARD]
    assert outcomes[0].dead_letter is not None
    assert outcomes[0].dead_letter.reason is DeadLetterReason.TIMEOUT


async def test_a_rule_condition_that_raises_something_unexpected_is_that_rules_error():
    class Exploding(Expression):
        def __init__(self) -> None:
            super().__init__("true")

        def is_true(self, data=None, results=None, extra=None) -> bool:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    plan = pipeline(stage("checks", [spec("guarded", Const(), when=Exploding())]))
    [outcome] = await Executor(plan).run_stage_batch(plan.stages[0], records(False))
    result = dict(outcome.results)["guarded"]
    assert (result.outcome, result.error_kind) == (Outcome.ERROR, "rule_error")
    assert outcome.route is Route.DEAD_LETTER


async def test_a_stage_shorter_than_the_sync_limit_is_interrupted_at_its_own_timeout():
    plan = pipeline(stage("checks", [spec("spin", Spins())], timeout_s=0.1), sync_limit_s=5.0)
    started = time.perf_counter()
    [outcome] = await Executor(plan).run_stage_batch(plan.stages[0], records(True))
    assert outcome.route is Route.DEAD_LETTER
    assert time.perf_counter() - started < 1.0


async def test_the_event_loop_runs_between_records_of_a_long_synchronous_batch():
    plan = pipeline(stage("checks", [spec("spin", Spins())]), sync_limit_s=LIMIT)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await Executor(plan).run_stage_batch(plan.stages[0], records(True, True, True, True))
    ended = time.perf_counter()
    task.cancel()
    assert [t for t in ticks if started < t < ended - LIMIT], "the loop ran inside the batch"


async def test_a_decision_of_an_interrupted_record_is_a_dead_letter_offline_too():
    plan = pipeline(stage("checks", [spec("spin", Spins())]), sync_limit_s=LIMIT)
    decision = await Executor(plan).run_record(RecordState("r", {"spin": True}))
    assert decision.status is Status.DEAD_LETTER


def test_many_short_regions_never_leak_an_interruption_outside_them():
    """Regions ending right at their deadline race with the watchdog: every interruption
    must surface inside the region's handler, none after it."""
    caught = 0
    for _ in range(300):
        WATCHDOG.arm(0.0)
        try:
            try:
                deadline = time.perf_counter() + 0.002
                while time.perf_counter() < deadline:
                    pass
            finally:
                WATCHDOG.disarm()
        except Overrun:
            WATCHDOG.settle()
            caught += 1
    for _ in range(2000):  # anything still pending would be raised here, outside a region
        sum(range(10))
    assert caught >= 1


def test_nothing_is_interrupted_while_no_region_is_armed():
    fired = WATCHDOG.fired
    deadline = time.perf_counter() + 0.1
    while time.perf_counter() < deadline:
        pass
    assert WATCHDOG.fired == fired


def spin_armed(limit: float) -> None:
    WATCHDOG.arm(limit)
    try:
        while True:
            pass
    finally:
        WATCHDOG.settle()


@pytest.mark.parametrize("limit", [0.05, 0.3])
def test_a_region_is_interrupted_close_to_its_limit(limit):
    started = time.perf_counter()
    with pytest.raises(Overrun):
        spin_armed(limit)
    assert limit <= time.perf_counter() - started < limit + 0.5
