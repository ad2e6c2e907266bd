"""CEL time as the specification has it: accessors in UTC, time-zone overloads (IANA names and
fixed offsets), durations and their arithmetic, and ``now``, the decision time of the stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from core_builders import pipeline, spec, stage

from stream_engine.core.executor import Executor
from stream_engine.core.expr import Expression
from stream_engine.core.outcome import Outcome
from stream_engine.core.state import RecordState
from stream_engine.errors import ExpressionError
from stream_engine.rules import RULES

#: 23:30:15.250 on Monday 2 March in New York is 04:30:15.250 on Tuesday 3 March in UTC.
T = "timestamp('2026-03-02T23:30:15.250-05:00')"


def value(source: str, **extra: object) -> object:
    return Expression(source).evaluate({}, None, extra)


@pytest.mark.parametrize(
    ("accessor", "expected"),
    [
        ("getFullYear", 2026),
        ("getMonth", 2),
        ("getDayOfYear", 61),
        ("getDayOfMonth", 2),
        ("getDate", 3),
        ("getDayOfWeek", 2),
        ("getHours", 4),
        ("getMinutes", 30),
        ("getSeconds", 15),
        ("getMilliseconds", 250),
    ],
)
def test_timestamp_accessors_read_the_time_in_utc(accessor, expected):
    assert value(f"{T}.{accessor}()") == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"{T}.getHours('America/New_York')", 23),
        (f"{T}.getDayOfWeek('America/New_York')", 1),
        (f"{T}.getDate('America/New_York')", 2),
        (f"{T}.getHours('UTC')", 4),
        (f"{T}.getHours('+05:30')", 10),
        (f"{T}.getMinutes('+05:30')", 0),
        (f"{T}.getHours('05:30')", 10),
        (f"{T}.getHours('-08:00')", 20),
        (f"{T}.getDayOfYear('Asia/Tokyo')", 61),
        (f"{T}.getMonth('Pacific/Honolulu')", 2),
        (f"{T}.getFullYear('Europe/London')", 2026),
        (f"{T}.getMilliseconds('Europe/London')", 250),
        ("timestamp('2026-07-01T12:00:00Z').getHours('Europe/London')", 13),  # summer time
    ],
)
def test_accessors_take_a_time_zone_as_an_iana_name_or_a_fixed_offset(source, expected):
    assert value(source) == expected


@pytest.mark.parametrize("zone", ["Mars/Olympus", "+25:00", "", "../etc/passwd"])
def test_an_unknown_time_zone_is_an_expression_error(zone):
    with pytest.raises(ExpressionError, match="time zone"):
        value(f"{T}.getHours('{zone}')")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("duration('90m').getHours()", 1),
        ("duration('90m').getMinutes()", 90),
        ("duration('90m').getSeconds()", 5400),
        ("duration('1.5s').getMilliseconds()", 1500),
        ("duration('1h') == duration('60m')", True),
        ("duration('1h') + duration('30m') == duration('90m')", True),
        ("duration('1h') < duration('61m')", True),
        (f"{T} + duration('30m') == timestamp('2026-03-03T05:00:15.250Z')", True),
        (f"{T} - duration('4h30m') == timestamp('2026-03-03T00:00:15.250Z')", True),
        (f"{T} - timestamp('2026-03-03T03:30:15.250Z') == duration('1h')", True),
        (f"{T} > timestamp('2026-03-03T04:30:00Z')", True),
        (f"{T} == timestamp('2026-03-03T04:30:15.250Z')", True),
        (f"({T} + duration('20h')).getDayOfWeek()", 3),
    ],
)
def test_durations_and_timestamp_arithmetic_follow_cel(source, expected):
    assert value(source) == expected


def test_a_text_that_is_not_rfc_3339_is_not_a_timestamp():
    with pytest.raises(ExpressionError, match="RFC 3339"):
        value("timestamp('2026-03-02')")


def test_a_timestamp_is_in_utc_whatever_offset_it_was_written_with():
    assert value(T) == datetime(2026, 3, 3, 4, 30, 15, 250000, tzinfo=UTC)


def test_now_is_handed_only_to_an_expression_that_reads_it():
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert Expression("now.getHours()").evaluate({}, now=now) == 10
    assert Expression("data.x").uses_now is False
    assert Expression("now > timestamp('2026-01-01T00:00:00Z')").uses_now is True


FIXED = datetime(2026, 3, 2, 10, 15, 30, tzinfo=UTC).timestamp()


async def test_now_is_the_stage_s_started_at_in_its_audit_entry():
    derived = RULES.get("DerivedField").from_params({"field": "at", "expr": "string(now)"})
    plan = pipeline(stage("s", [spec("at", derived)]))
    state = RecordState("r1", {})
    outcome = await Executor(plan, clock=lambda: FIXED).run_stage(plan.stages[0], state)
    assert outcome.audit is not None
    assert outcome.audit.started_at == FIXED
    assert datetime.fromisoformat(state.data["at"]) == datetime.fromtimestamp(FIXED, UTC)


BUSINESS_HOURS = "now.getHours('Europe/London') >= 9 && now.getHours('Europe/London') < 17"


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), Outcome.PASS),
        (datetime(2026, 3, 2, 18, 0, tzinfo=UTC), Outcome.FAIL),
        (datetime(2026, 7, 1, 16, 30, tzinfo=UTC), Outcome.FAIL),  # 17:30 in London (BST)
    ],
)
async def test_a_business_hours_rule_decides_by_the_decision_time(clock, expected):
    rule = RULES.get("CrossFieldCheck").from_params({"expr": BUSINESS_HOURS})
    plan = pipeline(stage("s", [spec("hours", rule)]))
    executor = Executor(plan, clock=lambda: clock.timestamp())
    outcome = await executor.run_stage(plan.stages[0], RecordState("r1", {}))
    assert dict(outcome.results)["hours"].outcome is expected


async def test_a_stage_condition_and_a_when_see_now():
    rule = RULES.get("CrossFieldCheck").from_params({"expr": "true"})
    late = Expression("now.getHours() >= 12")
    plan = pipeline(
        stage("s", [spec("r", rule, when=late)], condition=Expression("now.getFullYear() == 2026"))
    )
    morning = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
    outcome = await Executor(plan, clock=lambda: morning).run_stage(
        plan.stages[0], RecordState("r1", {})
    )
    result = dict(outcome.results)["r"]
    assert result.outcome is Outcome.SKIP
    assert "condition is false" in result.message
    afternoon = morning + timedelta(hours=4).total_seconds()
    outcome = await Executor(plan, clock=lambda: afternoon).run_stage(
        plan.stages[0], RecordState("r1", {})
    )
    assert dict(outcome.results)["r"].outcome is Outcome.PASS
