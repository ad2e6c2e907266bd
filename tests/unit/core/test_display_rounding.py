"""Costs are rounded where people read them (decisions, results), never in the arithmetic."""

from __future__ import annotations

import orjson
from core_builders import Const, Raises, pipeline, run, spec, stage

from stream_engine.core.result import display_float
from stream_engine.core.retry import RetryPolicy
from stream_engine.errors import ServiceError


async def test_three_rules_costing_a_tenth_show_a_total_of_three_tenths():
    plan = pipeline(stage("a", [spec(name, Const(), cost=0.1) for name in ("r1", "r2", "r3")]))

    decision = await run(plan)

    assert decision.state.cost_total == 0.1 + 0.1 + 0.1  # the arithmetic stays exact
    wire = decision.to_dict()
    assert wire["cost"]["total"] == 0.3
    assert b"0.30000000000000004" not in orjson.dumps(wire)


async def test_a_rule_retried_three_times_at_a_tenth_shows_a_cost_of_three_tenths():
    rule = Raises(ServiceError("flaky"), ServiceError("flaky"))
    retry = RetryPolicy(attempts=3, backoff_s=0.0)
    plan = pipeline(stage("a", [spec("flaky", rule, cost=0.1, retry=retry)]))

    wire = (await run(plan)).to_dict()

    assert wire["results"]["flaky"]["cost"] == 0.3
    assert wire["cost"]["by_rule"] == {"flaky": 0.3}
    assert b"0.30000000000000004" not in orjson.dumps(wire)


def test_display_rounding_keeps_small_costs_and_whole_values():
    assert display_float(0.1 + 0.2) == 0.3
    assert display_float(1e-9) == 1e-9
    assert display_float(0.000123456) == 0.000123456
    assert display_float(0.0) == 0.0
    assert display_float(12345.5) == 12345.5
