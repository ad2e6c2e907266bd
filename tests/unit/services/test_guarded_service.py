"""GuardedService: per-call timeout, retries with backoff, and a circuit breaker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stream_engine.core.breaker import BreakerState, CircuitBreaker
from stream_engine.core.retry import RetryPolicy
from stream_engine.core.service import GuardedService
from stream_engine.errors import (
    CircuitOpenError,
    RuleTimeoutError,
    ServiceClientError,
    ServiceError,
)
from stream_engine.services.simulated import SimulatedService

NO_WAIT = {"backoff_s": 0.0}


class Flaky:
    """A real service that raises the given errors in turn, then answers."""

    def __init__(self, *errors: BaseException, answer: dict[str, Any] | None = None) -> None:
        self.errors = list(errors)
        self.answer = answer if answer is not None else {"ok": True}
        self.calls = 0

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return dict(self.answer)


class Hanging:
    """A service that never answers; it records whether the guard cancelled it."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def always_failing() -> SimulatedService:
    service = SimulatedService.from_params("sim", {"fail_rate": 1.0})
    assert isinstance(service, SimulatedService)
    return service


# --- Retries -------------------------------------------------------------------------------


async def test_a_successful_call_is_made_once():
    service = Flaky()
    guard = GuardedService("svc", service, retry=RetryPolicy(attempts=3, **NO_WAIT))
    assert await guard.call({"a": 1}) == {"ok": True}
    assert service.calls == 1
    assert guard.calls == 1


async def test_retries_until_the_service_succeeds():
    service = Flaky(ServiceError("boom"), ServiceError("boom"))
    guard = GuardedService("svc", service, retry=RetryPolicy(attempts=3, **NO_WAIT))
    assert await guard.call({}) == {"ok": True}
    assert service.calls == 3
    assert guard.calls == 3


async def test_gives_up_after_the_configured_attempts_with_the_last_error():
    service = always_failing()
    guard = GuardedService("svc", service, retry=RetryPolicy(attempts=4, **NO_WAIT))
    with pytest.raises(ServiceError, match="simulated failure"):
        await guard.call({})
    assert service.calls == 4


async def test_by_default_a_failure_is_not_retried():
    service = Flaky(ServiceError("boom"))
    with pytest.raises(ServiceError):
        await GuardedService("svc", service).call({})
    assert service.calls == 1


async def test_an_error_kind_not_in_retry_on_is_not_retried():
    service = Flaky(ServiceError("boom"))
    retry = RetryPolicy(attempts=5, retry_on=frozenset({"timeout"}), **NO_WAIT)
    with pytest.raises(ServiceError):
        await GuardedService("svc", service, retry=retry).call({})
    assert service.calls == 1


async def test_client_errors_are_not_retried_by_default():
    service = Flaky(ServiceClientError("HTTP 400"))
    guard = GuardedService("svc", service, retry=RetryPolicy(attempts=5, **NO_WAIT))
    with pytest.raises(ServiceClientError):
        await guard.call({})
    assert service.calls == 1


async def test_client_errors_are_retried_when_retry_on_names_them():
    service = Flaky(ServiceClientError("HTTP 409"))
    retry = RetryPolicy(attempts=2, retry_on=frozenset({"client_error"}), **NO_WAIT)
    assert await GuardedService("svc", service, retry=retry).call({}) == {"ok": True}
    assert service.calls == 2


@pytest.mark.parametrize("error", [OSError("connection reset"), ValueError("bad")])
async def test_transport_and_value_errors_become_retryable_service_errors(error: Exception):
    service = Flaky(error)
    guard = GuardedService("svc", service, retry=RetryPolicy(attempts=2, **NO_WAIT))
    assert await guard.call({}) == {"ok": True}
    failing = GuardedService("svc", Flaky(type(error)("again")))
    with pytest.raises(ServiceError, match=f"service 'svc': {type(error).__name__}: again"):
        await failing.call({})


async def test_retries_wait_the_backoff_between_attempts():
    service = Flaky(ServiceError("1"), ServiceError("2"))
    retry = RetryPolicy(attempts=3, backoff_s=0.02, multiplier=2.0)
    started = time.perf_counter()
    await GuardedService("svc", service, retry=retry).call({})
    assert time.perf_counter() - started >= 0.02 + 0.04


# --- Timeouts ------------------------------------------------------------------------------


async def test_a_call_past_timeout_s_raises_rule_timeout_error_and_is_cancelled():
    service = Hanging()
    guard = GuardedService("svc", service, timeout_s=0.02)
    with pytest.raises(RuleTimeoutError, match=r"service 'svc' did not answer within 0\.02s"):
        await guard.call({})
    assert service.calls == 1
    assert service.cancelled == 1


async def test_a_timeout_is_retried_under_the_default_retry_on():
    service = Hanging()
    guard = GuardedService("svc", service, timeout_s=0.01, retry=RetryPolicy(attempts=3, **NO_WAIT))
    with pytest.raises(RuleTimeoutError):
        await guard.call({})
    assert service.calls == 3


async def test_a_slow_simulated_service_times_out():
    service = SimulatedService.from_params("sim", {"latency_ms": 5000})
    with pytest.raises(RuleTimeoutError):
        await GuardedService("sim", service, timeout_s=0.02).call({})


async def test_a_call_within_timeout_s_answers():
    service = SimulatedService.from_params("sim", {"latency_ms": 1, "fields": {"x": "1"}})
    assert await GuardedService("sim", service, timeout_s=5.0).call({}) == {"x": 1}


async def test_a_timeout_counts_against_the_breaker():
    breaker = CircuitBreaker("svc", failure_threshold=1, clock=FakeClock())
    guard = GuardedService("svc", Hanging(), timeout_s=0.01, breaker=breaker)
    with pytest.raises(RuleTimeoutError):
        await guard.call({})
    assert breaker.state is BreakerState.OPEN


# --- Circuit breaker -----------------------------------------------------------------------


async def test_the_breaker_opens_after_failure_threshold_consecutive_failures():
    clock = FakeClock()
    breaker = CircuitBreaker("svc", failure_threshold=3, reset_timeout_s=30, clock=clock)
    service = always_failing()
    guard = GuardedService("svc", service, breaker=breaker)
    for expected_state in (BreakerState.CLOSED, BreakerState.CLOSED, BreakerState.OPEN):
        with pytest.raises(ServiceError):
            await guard.call({})
        assert breaker.state is expected_state
    assert service.calls == 3


async def test_an_open_breaker_raises_circuit_open_error_without_calling_the_service():
    breaker = CircuitBreaker("svc", failure_threshold=2, reset_timeout_s=30, clock=FakeClock())
    service = always_failing()
    guard = GuardedService("svc", service, breaker=breaker)
    for _ in range(2):
        with pytest.raises(ServiceError):
            await guard.call({})
    for _ in range(5):
        with pytest.raises(CircuitOpenError, match="circuit open for service 'svc'") as caught:
            await guard.call({})
        assert caught.value.kind == "circuit_open"
    assert service.calls == 2
    assert guard.calls == 2


async def test_an_open_breaker_is_not_retried_by_the_default_policy():
    breaker = CircuitBreaker("svc", failure_threshold=1, clock=FakeClock())
    service = Flaky(ServiceError("boom"))
    guard = GuardedService("svc", service, breaker=breaker, retry=RetryPolicy(attempts=5))
    with pytest.raises(CircuitOpenError):
        await guard.call({})
    assert service.calls == 1


async def test_a_success_resets_the_consecutive_failure_count():
    breaker = CircuitBreaker("svc", failure_threshold=2, clock=FakeClock())
    service = Flaky(ServiceError("1"), answer={"ok": True})
    guard = GuardedService("svc", service, breaker=breaker)
    with pytest.raises(ServiceError):
        await guard.call({})
    await guard.call({})
    service.errors.append(ServiceError("2"))
    with pytest.raises(ServiceError):
        await guard.call({})
    assert breaker.state is BreakerState.CLOSED


async def test_the_breaker_half_opens_after_reset_timeout_and_a_successful_probe_closes_it():
    clock = FakeClock()
    breaker = CircuitBreaker("svc", failure_threshold=2, reset_timeout_s=30, clock=clock)
    service = Flaky(ServiceError("1"), ServiceError("2"))
    guard = GuardedService("svc", service, breaker=breaker)
    for _ in range(2):
        with pytest.raises(ServiceError):
            await guard.call({})
    assert breaker.state is BreakerState.OPEN

    clock.now += 29.9
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await guard.call({})
    assert service.calls == 2

    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert await guard.call({}) == {"ok": True}
    assert service.calls == 3
    assert breaker.state is BreakerState.CLOSED
    assert await guard.call({}) == {"ok": True}


async def test_a_failed_probe_opens_the_breaker_for_another_reset_timeout():
    clock = FakeClock()
    breaker = CircuitBreaker("svc", failure_threshold=1, reset_timeout_s=10, clock=clock)
    service = always_failing()
    guard = GuardedService("svc", service, breaker=breaker)
    with pytest.raises(ServiceError):
        await guard.call({})
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(ServiceError, match="simulated failure"):
        await guard.call({})
    assert breaker.state is BreakerState.OPEN
    clock.now += 9.9
    with pytest.raises(CircuitOpenError):
        await guard.call({})
    assert service.calls == 2
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN


async def test_half_open_lets_only_one_probe_through_at_a_time():
    clock = FakeClock()
    breaker = CircuitBreaker("svc", failure_threshold=1, reset_timeout_s=10, clock=clock)
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Gated:
        calls = 0

        async def call(self, request: dict[str, Any]) -> dict[str, Any]:
            self.calls += 1
            if self.calls == 1:
                raise ServiceError("first")
            entered.set()
            await gate.wait()
            return {"ok": True}

    service = Gated()
    guard = GuardedService("svc", service, breaker=breaker)
    with pytest.raises(ServiceError):
        await guard.call({})
    clock.now += 10
    probe = asyncio.create_task(guard.call({}))
    await asyncio.wait_for(entered.wait(), timeout=5)
    with pytest.raises(CircuitOpenError, match="probe busy"):
        await guard.call({})
    gate.set()
    assert await asyncio.wait_for(probe, timeout=5) == {"ok": True}
    assert breaker.state is BreakerState.CLOSED
    assert service.calls == 2


async def test_client_errors_do_not_count_against_the_breaker():
    breaker = CircuitBreaker("svc", failure_threshold=2, clock=FakeClock())
    service = Flaky(*(ServiceClientError("HTTP 400") for _ in range(5)))
    guard = GuardedService("svc", service, breaker=breaker)
    for _ in range(5):
        with pytest.raises(ServiceClientError):
            await guard.call({})
    assert breaker.state is BreakerState.CLOSED
    assert service.calls == 5
    assert await guard.call({}) == {"ok": True}


async def test_breaker_state_changes_are_reported():
    clock = FakeClock()
    changes: list[tuple[str, BreakerState]] = []
    breaker = CircuitBreaker(
        "svc",
        failure_threshold=1,
        reset_timeout_s=5,
        clock=clock,
        on_state_change=lambda name, state: changes.append((name, state)),
    )
    guard = GuardedService("svc", Flaky(ServiceError("x")), breaker=breaker)
    with pytest.raises(ServiceError):
        await guard.call({})
    clock.now += 5
    await guard.call({})
    assert changes == [
        ("svc", BreakerState.OPEN),
        ("svc", BreakerState.HALF_OPEN),
        ("svc", BreakerState.CLOSED),
    ]
