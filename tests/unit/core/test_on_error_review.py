"""``on_error: review``: an ERROR of the rule sends the record to review, as ``on_fail:
review`` does for a FAIL (a vendor down → manual review)."""

from __future__ import annotations

from core_builders import Const, Raises, pipeline, run, spec, stage

from stream_engine.core.outcome import OnError, OnFail, Outcome, Status
from stream_engine.errors import ServiceError


async def test_an_error_with_on_error_review_sends_the_record_to_review_with_its_reason():
    plan = pipeline(
        stage("a", [spec("kyc", Raises(ServiceError("kyc: HTTP 503")), on_error=OnError.REVIEW)]),
        stage("b", [spec("later", Const())]),
    )

    decision = await run(plan)

    assert decision.status is Status.REVIEW
    assert decision.decided_by_stage == "a"
    assert decision.dead_letter is None
    assert decision.state.results["kyc"].outcome is Outcome.ERROR
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith("kyc: ")
    assert "kyc: HTTP 503" in decision.reasons[0]
    assert decision.failed_rules == {"a": ["kyc"]}
    assert "later" not in decision.state.results


async def test_on_error_review_goes_to_review_even_when_a_fail_would_reject():
    plan = pipeline(
        stage(
            "a",
            [spec("kyc", Raises(ValueError("x")), on_fail=OnFail.REJECT, on_error=OnError.REVIEW)],
        )
    )

    assert (await run(plan)).status is Status.REVIEW


async def test_on_error_review_leaves_a_fail_of_the_same_rule_to_on_fail():
    plan = pipeline(stage("a", [spec("kyc", Const(Outcome.FAIL), on_error=OnError.REVIEW)]))

    assert (await run(plan)).status is Status.REJECTED


async def test_a_reject_in_the_same_stage_outranks_on_error_review():
    plan = pipeline(
        stage(
            "a",
            [
                spec("kyc", Raises(ValueError("x")), on_error=OnError.REVIEW),
                spec("limit", Const(Outcome.FAIL)),
            ],
            fail_fast=False,
        )
    )

    assert (await run(plan)).status is Status.REJECTED


async def test_on_error_review_is_kept_when_every_stage_runs_before_the_decision():
    plan = pipeline(
        stage("a", [spec("kyc", Raises(ValueError("x")), on_error=OnError.REVIEW)]),
        stage("b", [spec("later", Const())]),
        stop_on_stage_failure=False,
    )

    decision = await run(plan)

    assert decision.status is Status.REVIEW
    assert decision.decided_by_stage == "a"
    assert decision.reasons[0].startswith("kyc: ")
    assert decision.state.results["later"].outcome is Outcome.PASS
