"""The metrics collector: names from ARCHITECTURE.md, exact counts, valid histograms."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_engine.core.breaker import BreakerState
from stream_engine.core.decision import StageOutcome
from stream_engine.core.outcome import DeadLetterReason, Outcome, Route
from stream_engine.core.result import RuleResult
from stream_engine.core.state import DeadLetter
from stream_engine.runtime.observe.metrics import FAST_BUCKETS, METRIC_NAMES, Metrics, new_registry


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(new_registry(metrics)).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def outcome(route: Route, *results: tuple[str, RuleResult], budget: bool = False) -> StageOutcome:
    return StageOutcome("dq", route, results=list(results), budget_exceeded=budget)


# The list in ARCHITECTURE.md ("Metrics"), as Prometheus names them.
#: ARCHITECTURE.md's list, plus ``poison_records_total`` (issue 12: records dead-lettered after
#: an internal error on every attempt), ``config_mixed_decisions_total`` (issue 13) and the
#: stores of stateful rules (issue 15).
ARCHITECTURE_METRICS = {
    "stream_engine_state_entries",
    "stream_engine_state_expired_entries_total",
    "stream_engine_state_late_records_total",
    "stream_engine_state_restore_lag",
    "stream_engine_state_restore_duration_seconds",
    "stream_engine_state_restore_rejected_total",
    "stream_engine_state_restoring_partitions",
    "stream_engine_poison_records_total",
    "stream_engine_config_mixed_decisions_total",
    "stream_engine_rule_evaluations_total",
    "stream_engine_rule_duration_seconds",
    "stream_engine_stage_records_total",
    "stream_engine_stage_batch_duration_seconds",
    "stream_engine_decisions_total",
    "stream_engine_decision_latency_seconds",
    "stream_engine_dead_letters_total",
    "stream_engine_retries_total",
    "stream_engine_service_calls_total",
    "stream_engine_circuit_breaker_state",
    "stream_engine_cost_total",
    "stream_engine_budget_exceeded_total",
    "stream_engine_consumer_lag",
    "stream_engine_config_info",
}


def test_the_exported_metrics_are_exactly_those_the_architecture_lists_and_the_later_issues():
    assert set(METRIC_NAMES) == ARCHITECTURE_METRICS


def test_a_batch_counts_each_rule_outcome_route_retry_and_cost_exactly():
    metrics = Metrics()
    passed = RuleResult(stage="dq", outcome=Outcome.PASS, duration_ms=0.2, attempts=1, cost=0.5)
    failed = RuleResult(stage="dq", outcome=Outcome.FAIL, duration_ms=3.0, attempts=3, cost=1.5)
    skipped = RuleResult(stage="dq", outcome=Outcome.SKIP)
    batch = [
        outcome(Route.FORWARD, ("a", passed), ("b", skipped)),
        outcome(Route.REJECT, ("a", passed), ("b", failed)),
        outcome(Route.REJECT, ("a", passed), ("b", failed), budget=True),
    ]
    letter = DeadLetter(DeadLetterReason.TIMEOUT, "dq", "slow")

    metrics.stage_batch("p", "dq", batch, [], [letter], 0.25)
    got = samples(metrics)

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    rule = "stream_engine_rule_evaluations_total"
    assert value(rule, pipeline="p", stage="dq", rule="a", outcome="PASS") == 3
    assert value(rule, pipeline="p", stage="dq", rule="b", outcome="FAIL") == 2
    assert value(rule, pipeline="p", stage="dq", rule="b", outcome="SKIP") == 1
    assert value("stream_engine_stage_records_total", pipeline="p", stage="dq", route="reject") == 2
    assert value("stream_engine_retries_total", pipeline="p", stage="dq", rule="b") == 4
    assert value("stream_engine_cost_total", pipeline="p", stage="dq", rule="a") == 1.5
    assert value("stream_engine_budget_exceeded_total", pipeline="p") == 1
    assert (
        value("stream_engine_dead_letters_total", pipeline="p", stage="dq", reason="timeout") == 1
    )
    durations = "stream_engine_rule_duration_seconds_count"
    assert value(durations, pipeline="p", stage="dq", rule="b") == 2, "skips are not timed"


def test_histograms_are_cumulative_and_end_in_an_inf_bucket_holding_the_count():
    metrics = Metrics()
    results = [
        ("r", RuleResult(stage="s", outcome=Outcome.PASS, duration_ms=ms, attempts=1))
        for ms in (0.001, 0.3, 0.3, 7.0, 20_000.0)
    ]
    metrics.stage_batch("p", "s", [outcome(Route.FORWARD, *results)], [], [], 0.1)
    got = samples(metrics)

    buckets = {
        dict(labels)["le"]: v
        for (name, labels), v in got.items()
        if name == "stream_engine_rule_duration_seconds_bucket"
    }
    ordered = [buckets[repr(b)] for b in FAST_BUCKETS] + [buckets["+Inf"]]
    assert ordered == sorted(ordered)
    assert buckets["+Inf"] == 5
    assert buckets[repr(0.0005)] == 3
    count = got[("stream_engine_rule_duration_seconds_count",
                 frozenset({"pipeline": "p", "stage": "s", "rule": "r"}.items()))]  # fmt: skip
    assert count == 5


def test_service_calls_breaker_states_and_lag_are_exported_with_bounded_labels():
    metrics = Metrics()
    metrics.service_call("kyc", "ok")
    metrics.service_call("kyc", "timeout")
    metrics.service_call("kyc", "timeout")
    metrics.breaker("kyc", BreakerState.OPEN)
    metrics.lag("t", 0, 12)
    metrics.lag("t", 1, -3)
    metrics.forget_lag([("t", 1)])
    got = samples(metrics)

    calls = "stream_engine_service_calls_total"
    assert got[(calls, frozenset({"service": "kyc", "outcome": "timeout"}.items()))] == 2
    assert got[("stream_engine_circuit_breaker_state", frozenset({("service", "kyc")}))] == 2
    lags = {k: v for k, v in got.items() if k[0] == "stream_engine_consumer_lag"}
    assert lags == {
        ("stream_engine_consumer_lag", frozenset({"topic": "t", "partition": "1"}.items())): 0.0
    }
