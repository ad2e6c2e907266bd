"""Circuit breaker states and retry backoff."""

from __future__ import annotations

import random

import pytest

from stream_engine.core.breaker import BreakerState, CircuitBreaker
from stream_engine.core.retry import RetryPolicy
from stream_engine.errors import CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, reset: float = 10.0, probes: int = 1):
    clock = Clock()
    changes: list[tuple[str, BreakerState]] = []
    breaker = CircuitBreaker(
        "svc",
        threshold,
        reset,
        probes,
        clock=clock,
        on_state_change=lambda n, s: changes.append((n, s)),
    )
    return breaker, clock, changes


def test_breaker_opens_after_the_threshold_of_consecutive_failures():
    breaker, _, changes = make(threshold=3)
    for _ in range(2):
        breaker.before_call()
        breaker.on_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.on_failure()
    assert breaker.state is BreakerState.OPEN
    assert changes == [("svc", BreakerState.OPEN)]
    with pytest.raises(CircuitOpenError, match="svc"):
        breaker.before_call()


def test_a_success_resets_the_failure_count():
    breaker, _, _ = make(threshold=2)
    breaker.on_failure()
    breaker.on_success()
    breaker.on_failure()
    assert breaker.state is BreakerState.CLOSED


def test_breaker_half_opens_after_the_reset_timeout_and_allows_one_probe():
    breaker, clock, _ = make(threshold=1, reset=10.0)
    breaker.on_failure()
    clock.now += 9.9
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()
    with pytest.raises(CircuitOpenError, match="probe"):
        breaker.before_call()


def test_a_successful_probe_closes_the_breaker():
    breaker, clock, changes = make(threshold=1, reset=1.0)
    breaker.on_failure()
    clock.now += 1.0
    breaker.before_call()
    breaker.on_success()
    assert breaker.state is BreakerState.CLOSED
    assert [s for _, s in changes] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_a_failed_probe_opens_the_breaker_again_for_a_full_period():
    breaker, clock, _ = make(threshold=1, reset=5.0)
    breaker.on_failure()
    clock.now += 5.0
    breaker.before_call()
    breaker.on_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.0
    assert breaker.state is BreakerState.OPEN
    clock.now += 1.0
    assert breaker.state is BreakerState.HALF_OPEN


def test_retry_delay_grows_by_the_multiplier_up_to_the_cap():
    policy = RetryPolicy(attempts=10, backoff_s=0.1, multiplier=2.0, max_backoff_s=0.5)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_retry_jitter_spreads_delays_within_its_fraction():
    policy = RetryPolicy(attempts=3, backoff_s=1.0, multiplier=1.0, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert max(delays) - min(delays) > 0.2


def test_retry_stops_at_the_attempt_limit_and_only_for_listed_kinds():
    policy = RetryPolicy(attempts=3, retry_on=frozenset({"timeout"}))
    assert policy.should_retry("timeout", 1) is True
    assert policy.should_retry("timeout", 3) is False
    assert policy.should_retry("rule_error", 1) is False
