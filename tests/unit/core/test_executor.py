"""The stage executor: dependency handling, fail-fast, parallel levels, timeouts, retries,
errors, conditions, budget and the route a stage chooses."""

from __future__ import annotations

import asyncio

import pytest
from core_builders import AsyncConst, Const, Raises, Writes, pipeline, run, spec, stage

from stream_engine.core.executor import Executor
from stream_engine.core.expr import Expression
from stream_engine.core.outcome import DeadLetterReason, OnError, OnFail, Outcome, Route, Status
from stream_engine.core.retry import RetryPolicy
from stream_engine.core.state import RecordState
from stream_engine.errors import CircuitOpenError, ServiceError

PASS, FAIL, SKIP, ERROR = Outcome.PASS, Outcome.FAIL, Outcome.SKIP, Outcome.ERROR


def outcomes(decision) -> dict[str, str]:
    return {rule: result.outcome.value for rule, result in decision.state.results.items()}


async def test_all_rules_passing_in_every_stage_is_approved_by_the_last_stage():
    plan = pipeline(stage("a", [spec("a1", Const())]), stage("b", [spec("b1", Const())]))
    decision = await run(plan)
    assert decision.status is Status.APPROVED
    assert decision.decided_by_stage == "b"
    assert outcomes(decision) == {"a1": "PASS", "b1": "PASS"}
    assert [entry.stage for entry in decision.state.audit] == ["a", "b"]


async def test_a_failing_rule_rejects_and_later_stages_never_run():
    later = Const()
    plan = pipeline(
        stage("a", [spec("a1", Const(FAIL, "bad input"))]), stage("b", [spec("b1", later)])
    )
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert decision.decided_by_stage == "a"
    assert decision.failed_rules == {"a": ["a1"]}
    assert decision.reasons == ["a1: bad input"]
    assert later.calls == 0
    assert "b1" not in decision.state.results


async def test_rule_whose_dependency_did_not_pass_is_skipped():
    dependent = Const()
    plan = pipeline(
        stage(
            "a",
            [spec("first", Const(FAIL)), spec("second", dependent, dependencies=("first",))],
            fail_fast=False,
        ),
        stop_on_stage_failure=False,
    )
    decision = await run(plan)
    assert outcomes(decision)["second"] == "SKIP"
    assert "dependency 'first' did not pass (FAIL)" in decision.state.results["second"].message
    assert dependent.calls == 0


async def test_cross_stage_dependency_reads_the_results_of_an_earlier_stage():
    plan = pipeline(
        stage("a", [spec("check", Const(FAIL))], fail_fast=False),
        stage("b", [spec("uses_check", Const(), cross_stage_dependencies=("check",))]),
        stop_on_stage_failure=False,
    )
    decision = await run(plan)
    assert outcomes(decision)["uses_check"] == "SKIP"


async def test_fail_fast_skips_the_rest_of_the_stage_after_the_first_failure():
    after = Const()
    plan = pipeline(
        stage("a", [spec("x", Const(FAIL)), spec("y", after)], fail_fast=True, parallel=False)
    )
    decision = await run(plan)
    assert outcomes(decision) == {"x": "FAIL", "y": "SKIP"}
    assert after.calls == 0
    assert "not evaluated" in decision.state.results["y"].message


async def test_without_fail_fast_every_failure_of_the_stage_is_collected():
    plan = pipeline(
        stage(
            "a", [spec("x", Const(FAIL, "x bad")), spec("y", Const(FAIL, "y bad"))], fail_fast=False
        )
    )
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert decision.failed_rules == {"a": ["x", "y"]}
    assert decision.reasons == ["x: x bad", "y: y bad"]


async def test_on_fail_continue_records_the_failure_but_forwards():
    plan = pipeline(stage("a", [spec("soft", Const(FAIL), on_fail=OnFail.CONTINUE)]))
    decision = await run(plan)
    assert decision.status is Status.APPROVED
    assert decision.failed_rules == {"a": ["soft"]}


async def test_on_fail_review_routes_to_review():
    plan = pipeline(stage("a", [spec("r", Const(FAIL), on_fail=OnFail.REVIEW)]))
    assert (await run(plan)).status is Status.REVIEW


async def test_reject_wins_over_review_in_the_same_stage():
    plan = pipeline(
        stage(
            "a",
            [spec("r", Const(FAIL), on_fail=OnFail.REVIEW), spec("j", Const(FAIL))],
            fail_fast=False,
        )
    )
    assert (await run(plan)).status is Status.REJECTED


async def test_a_rule_asking_to_complete_ends_the_record_early_with_its_data():
    after_stage = Const()
    plan = pipeline(
        stage(
            "a",
            [
                spec("w", Writes("kept", 1)),
                spec("done", Const(PASS, action=Route.COMPLETE), dependencies=("w",)),
            ],
        ),
        stage("b", [spec("never", after_stage)]),
    )
    decision = await run(plan)
    assert decision.status is Status.COMPLETED
    assert decision.decided_by_stage == "a"
    assert decision.state.data == {"kept": 1}
    assert after_stage.calls == 0


async def test_a_passing_rule_can_still_ask_for_review():
    plan = pipeline(stage("a", [spec("risky", Const(PASS, action=Route.REVIEW))]))
    decision = await run(plan)
    assert decision.status is Status.REVIEW
    assert decision.failed_rules == {}


async def test_a_rule_that_raises_is_contained_as_error_and_dead_lettered():
    plan = pipeline(stage("a", [spec("boom", Raises(ZeroDivisionError("division by zero")))]))
    decision = await run(plan)
    assert decision.status is Status.DEAD_LETTER
    result = decision.state.results["boom"]
    assert result.outcome is ERROR
    assert result.error_kind == "rule_error"
    assert "ZeroDivisionError" in result.message
    assert decision.dead_letter is not None
    assert decision.dead_letter.reason is DeadLetterReason.RULE_ERROR
    assert decision.dead_letter.rule == "boom"
    assert decision.dead_letter.error_class == "ZeroDivisionError"


async def test_on_error_fail_turns_an_error_into_a_failure():
    plan = pipeline(stage("a", [spec("boom", Raises(ValueError("x")), on_error=OnError.FAIL)]))
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert decision.failed_rules == {"a": ["boom"]}
    assert decision.state.results["boom"].outcome is ERROR


async def test_on_error_skip_ignores_the_error():
    plan = pipeline(stage("a", [spec("boom", Raises(ValueError("x")), on_error=OnError.SKIP)]))
    decision = await run(plan)
    assert decision.status is Status.APPROVED
    assert decision.state.results["boom"].outcome is ERROR


async def test_retryable_errors_are_retried_until_the_rule_succeeds():
    rule = Raises(ServiceError("flaky"), ServiceError("flaky"))
    retry = RetryPolicy(attempts=3, backoff_s=0.0)
    decision = await run(pipeline(stage("a", [spec("flaky", rule, retry=retry)])))
    assert decision.status is Status.APPROVED
    assert rule.calls == 3
    assert decision.state.results["flaky"].attempts == 3


async def test_errors_not_listed_in_retry_on_are_not_retried():
    rule = Raises(ValueError("bug"), ValueError("bug"))
    retry = RetryPolicy(attempts=3, backoff_s=0.0)
    decision = await run(pipeline(stage("a", [spec("bug", rule, retry=retry)])))
    assert rule.calls == 1
    assert decision.status is Status.DEAD_LETTER


async def test_an_open_circuit_dead_letters_with_reason_circuit_open():
    rule = Raises(CircuitOpenError("circuit open for service 'kyc'"))
    decision = await run(pipeline(stage("a", [spec("kyc", rule)])))
    assert decision.dead_letter is not None
    assert decision.dead_letter.reason is DeadLetterReason.CIRCUIT_OPEN


async def test_an_async_rule_over_its_timeout_is_an_error_with_reason_timeout():
    slow = AsyncConst(PASS, delay=5.0)
    plan = pipeline(stage("a", [spec("slow", slow, timeout_s=0.05)]))
    decision = await asyncio.wait_for(run(plan), timeout=2.0)
    assert decision.state.results["slow"].error_kind == "timeout"
    assert decision.dead_letter is not None
    assert decision.dead_letter.reason is DeadLetterReason.TIMEOUT


async def test_a_stage_over_its_timeout_dead_letters_and_marks_unfinished_rules():
    plan = pipeline(
        stage(
            "a",
            [
                spec("quick", Const()),
                spec("slow", AsyncConst(PASS, delay=5.0), dependencies=("quick",)),
            ],
            timeout_s=0.05,
        )
    )
    decision = await asyncio.wait_for(run(plan), timeout=2.0)
    assert decision.status is Status.DEAD_LETTER
    assert decision.dead_letter.reason is DeadLetterReason.TIMEOUT
    assert outcomes(decision) == {"quick": "PASS", "slow": "ERROR"}


async def test_parallel_level_runs_async_rules_concurrently_up_to_the_limit():
    gauge = {"now": 0, "peak": 0}
    rules = [AsyncConst(PASS, delay=0.05, gauge=gauge) for _ in range(4)]
    plan = pipeline(
        stage(
            "a",
            [spec(f"r{i}", r) for i, r in enumerate(rules)],
            parallel=True,
            max_parallel_rules=2,
        )
    )
    decision = await run(plan)
    assert decision.status is Status.APPROVED
    assert gauge["peak"] == 2
    assert all(rule.calls == 1 for rule in rules)


async def test_sequential_stage_runs_async_rules_one_at_a_time():
    gauge = {"now": 0, "peak": 0}
    rules = [AsyncConst(PASS, delay=0.01, gauge=gauge) for _ in range(3)]
    plan = pipeline(stage("a", [spec(f"r{i}", r) for i, r in enumerate(rules)], parallel=False))
    await run(plan)
    assert gauge["peak"] == 1


async def test_when_condition_false_skips_the_rule():
    rule = Const(FAIL)
    plan = pipeline(stage("a", [spec("adults", rule, when=Expression("data.age >= 18"))]))
    decision = await run(plan, {"age": 12})
    assert outcomes(decision) == {"adults": "SKIP"}
    assert rule.calls == 0
    assert decision.status is Status.APPROVED


async def test_when_condition_that_cannot_evaluate_is_an_error():
    plan = pipeline(stage("a", [spec("r", Const(), when=Expression("data.age >= 18"))]))
    decision = await run(plan, {})
    assert decision.state.results["r"].outcome is ERROR
    assert "age" in decision.state.results["r"].message


async def test_stage_condition_false_skips_every_rule_of_the_stage_and_forwards():
    plan = pipeline(
        stage(
            "a", [spec("x", Const(FAIL)), spec("y", Const(FAIL))], condition=Expression("data.vip")
        ),
        stage("b", [spec("z", Const())]),
    )
    decision = await run(plan, {"vip": False})
    assert outcomes(decision) == {"x": "SKIP", "y": "SKIP", "z": "PASS"}
    assert decision.status is Status.APPROVED


async def test_required_field_missing_skips_the_rule():
    rule = Const(FAIL)
    plan = pipeline(stage("a", [spec("needs_phone", rule, requires=("phone",))]))
    decision = await run(plan, {"email": "a@example.com"})
    assert outcomes(decision) == {"needs_phone": "SKIP"}
    assert "phone" in decision.state.results["needs_phone"].message


async def test_rules_that_provide_a_field_run_before_rules_that_require_it():
    reader = Const()
    plan = pipeline(
        stage(
            "a",
            [
                spec("reader", reader, requires=("phone",)),
                spec("writer", Writes("phone", "+1"), provides=("phone",)),
            ],
        )
    )
    assert [[s.rule_id for s in level] for level in plan.stages[0].levels] == [
        ["writer"],
        ["reader"],
    ]
    decision = await run(plan)
    assert outcomes(decision) == {"writer": "PASS", "reader": "PASS"}


async def test_cost_is_summed_per_evaluation_and_skipped_rules_cost_nothing():
    plan = pipeline(
        stage(
            "a",
            [
                spec("paid", Const(), cost=0.25),
                spec("skipped", Const(), cost=1.0, when=Expression("false")),
                spec(
                    "retried",
                    Raises(ServiceError("x")),
                    cost=0.1,
                    retry=RetryPolicy(attempts=2, backoff_s=0),
                ),
            ],
        )
    )
    decision = await run(plan)
    assert decision.state.cost_total == pytest.approx(0.45)
    assert decision.state.cost_by_rule == {"paid": 0.25, "retried": pytest.approx(0.2)}
    assert decision.state.results["retried"].cost == pytest.approx(0.2)


async def test_a_rule_that_would_exceed_the_budget_is_not_run_and_the_record_stops():
    expensive = Const()
    plan = pipeline(
        stage(
            "a",
            [
                spec("cheap", Const(), cost=0.6),
                spec("expensive", expensive, cost=0.6, dependencies=("cheap",)),
            ],
        ),
        stage("b", [spec("later", Const())]),
        budget=1.0,
    )
    decision = await run(plan)
    assert expensive.calls == 0
    assert decision.status is Status.REJECTED
    assert decision.decided_by_stage == "a"
    assert any(reason.startswith("budget_exceeded") for reason in decision.reasons)
    assert "later" not in decision.state.results
    assert decision.state.cost_total == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("budget_route", "status"),
    [
        (Route.REVIEW, Status.REVIEW),
        (Route.DEAD_LETTER, Status.DEAD_LETTER),
        (Route.COMPLETE, Status.COMPLETED),
    ],
)
async def test_budget_route_is_configurable(budget_route, status):
    plan = pipeline(
        stage("a", [spec("costly", Const(), cost=2.0)]), budget=1.0, budget_route=budget_route
    )
    decision = await run(plan)
    assert decision.status is status
    if status is Status.DEAD_LETTER:
        assert decision.dead_letter.reason is DeadLetterReason.BUDGET_EXCEEDED


async def test_without_stop_on_stage_failure_all_stages_run_and_the_worst_failure_decides():
    plan = pipeline(
        stage("a", [spec("a_review", Const(FAIL), on_fail=OnFail.REVIEW)]),
        stage("b", [spec("b_reject", Const(FAIL))]),
        stage("c", [spec("c_ok", Const())]),
        stop_on_stage_failure=False,
    )
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert decision.decided_by_stage == "a"
    assert decision.failed_rules == {"a": ["a_review"], "b": ["b_reject"]}
    assert set(outcomes(decision)) == {"a_review", "b_reject", "c_ok"}


async def test_disabled_stages_are_passed_over():
    plan = pipeline(
        stage("a", [spec("a1", Const())]),
        stage("off", [spec("never", Const(FAIL))], enabled=False),
        stage("c", [spec("c1", Const())]),
    )
    decision = await run(plan)
    assert decision.status is Status.APPROVED
    assert "never" not in decision.state.results


async def test_a_rule_may_return_a_plain_bool():
    class Boolean(Const):
        def evaluate(self, ctx):
            return False

    decision = await run(pipeline(stage("a", [spec("b", Boolean())])))
    assert decision.state.results["b"].outcome is FAIL


async def test_a_rule_returning_something_else_is_an_error():
    class Wrong(Const):
        def evaluate(self, ctx):
            return "yes"

    decision = await run(pipeline(stage("a", [spec("w", Wrong())])))
    assert decision.state.results["w"].outcome is ERROR
    assert "Verdict" in decision.state.results["w"].message


async def test_a_batch_keeps_input_order_and_decides_each_record_independently():
    class ByValue(Const):
        def evaluate(self, ctx):
            return ctx.data["n"] % 2 == 0

    plan = pipeline(stage("a", [spec("even", ByValue())]), stage("b", [spec("ok", AsyncConst())]))
    states = [RecordState(f"r{n}", {"n": n}) for n in range(10)]
    decisions = await Executor(plan).run_records(states)
    assert [d.record_id for d in decisions] == [f"r{n}" for n in range(10)]
    assert [d.status for d in decisions] == [
        Status.APPROVED if n % 2 == 0 else Status.REJECTED for n in range(10)
    ]


async def test_audit_trail_records_each_stage_with_its_route_and_worker():
    plan = pipeline(stage("a", [spec("a1", Const())]), stage("b", [spec("b1", Const(FAIL))]))
    decision = await Executor(plan, worker="w-1").run_record(RecordState("r", {}))
    audit = [entry.to_dict() for entry in decision.state.audit]
    assert [(e["stage"], e["route"], e["worker"]) for e in audit] == [
        ("a", "forward", "w-1"),
        ("b", "reject", "w-1"),
    ]
    assert all(e["duration_ms"] >= 0 for e in audit)


async def test_collecting_all_violations_a_later_complete_never_hides_an_earlier_reject():
    plan = pipeline(
        stage("a", [spec("a_reject", Const(FAIL, "too young"))]),
        stage("b", [spec("b_done", Const(PASS, "fast lane", action=Route.COMPLETE))]),
        stage("c", [spec("never", Const())]),
        stop_on_stage_failure=False,
    )
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert decision.decided_by_stage == "a"
    assert decision.reasons == ["a_reject: too young", "b_done: fast lane"]
    assert "never" not in decision.state.results


async def test_collecting_all_violations_a_budget_stop_never_hides_an_earlier_reject():
    plan = pipeline(
        stage("a", [spec("a_reject", Const(FAIL, "too young"))]),
        stage("b", [spec("costly", Const(), cost=2.0)]),
        budget=1.0,
        budget_route=Route.REVIEW,
        stop_on_stage_failure=False,
    )
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert decision.reasons[0] == "a_reject: too young"
    assert any(reason.startswith("budget_exceeded") for reason in decision.reasons)


async def test_collecting_all_violations_a_complete_beside_a_reject_still_stops_the_record():
    later = Const()
    plan = pipeline(
        stage(
            "a",
            [spec("j", Const(FAIL, "bad")), spec("done", Const(PASS, action=Route.COMPLETE))],
            fail_fast=False,
        ),
        stage("b", [spec("later", later)]),
        stop_on_stage_failure=False,
    )
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert later.calls == 0


async def test_collecting_all_violations_a_later_review_keeps_the_earlier_reject_and_its_reason():
    plan = pipeline(
        stage("a", [spec("a_reject", Const(FAIL, "too young"))]),
        stage("b", [spec("b_review", Const(FAIL, "odd"), on_fail=OnFail.REVIEW)]),
        stop_on_stage_failure=False,
    )
    decision = await run(plan)
    assert decision.status is Status.REJECTED
    assert decision.reasons == ["a_reject: too young", "b_review: odd"]
