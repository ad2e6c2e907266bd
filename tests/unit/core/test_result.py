"""Results read back from an envelope: checked where it matters at once, read lazily."""

from __future__ import annotations

import gc

import pytest

from stream_engine.core.outcome import Outcome, Route
from stream_engine.core.result import RuleResult
from stream_engine.runtime.observe import gc_tuning as collector

FULL = RuleResult(
    stage="compliance",
    outcome=Outcome.FAIL,
    message="kyc: needs manual review",
    details={"score": 0.4},
    duration_ms=12.5,
    attempts=2,
    cost=0.1,
    error_kind="timeout",
    action=Route.REVIEW,
)


def test_a_result_read_from_the_wire_equals_the_one_that_was_written():
    read = RuleResult.from_dict(FULL.to_dict())
    assert read == FULL
    assert (read.stage, read.outcome, read.message, read.details) == (
        "compliance",
        Outcome.FAIL,
        "kyc: needs manual review",
        {"score": 0.4},
    )
    assert (read.duration_ms, read.attempts, read.cost, read.error_kind, read.action) == (
        12.5,
        2,
        0.1,
        "timeout",
        Route.REVIEW,
    )


def test_a_result_read_from_the_wire_is_written_back_unchanged():
    wire = {**FULL.to_dict(), "added_by_a_newer_version": True}
    assert RuleResult.from_dict(wire).to_dict() is wire


def test_a_minimal_wire_result_reads_with_the_defaults():
    read = RuleResult.from_dict({"outcome": "PASS"})
    assert read == RuleResult(stage="", outcome=Outcome.PASS)


def test_wire_numbers_and_texts_of_other_types_are_converted_when_read():
    read = RuleResult.from_dict(
        {"outcome": "SKIP", "stage": 7, "message": None, "duration_ms": 3, "attempts": 1.0}
    )
    assert (read.stage, read.message, read.duration_ms, read.attempts) == ("7", "None", 3.0, 1)
    assert type(read.duration_ms) is float
    assert type(read.attempts) is int


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("PASS", TypeError),
        ({"message": "no outcome"}, ValueError),
        ({"outcome": "MAYBE"}, ValueError),
        ({"outcome": ["PASS"]}, TypeError),
        ({"outcome": "PASS", "action": "escalate"}, ValueError),
    ],
    ids=["not-an-object", "no-outcome", "unknown-outcome", "unhashable-outcome", "bad-action"],
)
def test_a_wire_result_without_a_known_outcome_or_action_is_refused_when_read(raw, error):
    with pytest.raises(error):
        RuleResult.from_dict(raw)


def test_an_unknown_attribute_of_a_wire_result_is_an_attribute_error():
    with pytest.raises(AttributeError):
        RuleResult.from_dict({"outcome": "PASS"}).verdict  # type: ignore[attr-defined]  # noqa: B018


def test_settling_the_collector_freezes_what_is_alive_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        collector.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
