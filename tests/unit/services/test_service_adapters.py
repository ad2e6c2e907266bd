"""Service adapters and the guard around them: the simulated service, the HTTP JSON adapter
against a real local HTTP server, ServiceCheck, timeouts, retries and the circuit breaker."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from pydantic import ValidationError

from stream_engine.core.breaker import BreakerState, CircuitBreaker
from stream_engine.core.outcome import Outcome, Route
from stream_engine.core.retry import RetryPolicy
from stream_engine.core.rule import RuleContext
from stream_engine.core.service import GuardedService
from stream_engine.errors import (
    CircuitOpenError,
    RuleTimeoutError,
    ServiceClientError,
    ServiceError,
)
from stream_engine.rules import RULES
from stream_engine.services import SERVICES

FIELDS = {"verified": "request.last_name != 'Mallory'", "score": "int(rand * 1000.0)"}


def simulated(**params):
    return SERVICES.get("SimulatedService").from_params("sim", {"fields": FIELDS, **params})


async def test_simulated_answers_are_deterministic_for_a_request():
    request = {"last_name": "Lee", "ssn": "1"}
    first = await simulated(seed=3).call(request)
    second = await simulated(seed=3).call(dict(request))
    assert first == second
    assert first["verified"] is True
    assert (await simulated(seed=3).call({"last_name": "Mallory", "ssn": "1"}))["verified"] is False


async def test_a_different_seed_gives_different_answers():
    answers = {(await simulated(seed=s).call({"last_name": "Lee"}))["score"] for s in range(5)}
    assert len(answers) > 1


async def test_key_fields_decide_which_request_fields_matter():
    service = simulated(key_fields=["ssn"])
    a = await service.call({"ssn": "1", "noise": "x", "last_name": "Lee"})
    b = await service.call({"ssn": "1", "noise": "y", "last_name": "Lee"})
    c = await service.call({"ssn": "2", "noise": "x", "last_name": "Lee"})
    assert a["score"] == b["score"]
    assert a["score"] != c["score"]


async def test_simulated_failure_rate_and_latency():
    with pytest.raises(ServiceError, match="simulated failure"):
        await simulated(fail_rate=1.0).call({"last_name": "Lee"})
    slow = simulated(latency_ms=30)
    started = time.perf_counter()
    await slow.call({"last_name": "Lee"})
    assert time.perf_counter() - started >= 0.03
    assert slow.may_suspend is True
    assert simulated().may_suspend is False


def test_simulated_fields_must_be_valid_cel():
    with pytest.raises(ValidationError, match=r"fields\.bad"):
        SERVICES.get("SimulatedService").from_params("s", {"fields": {"bad": "request.x &&"}})


@pytest.fixture
async def http_server():
    """A real HTTP server on loopback; tests set its behaviour and read what it received."""
    state = {"status": 200, "body": b'{"verified": true, "data": {"score": 7}}', "seen": []}

    async def handle(request: web.Request) -> web.Response:
        state["seen"].append(
            {
                "method": request.method,
                "query": dict(request.query),
                "json": await request.json() if request.can_read_body else None,
                "auth": request.headers.get("Authorization"),
            }
        )
        return web.Response(
            status=state["status"], body=state["body"], content_type="application/json"
        )

    app = web.Application()
    app.router.add_route("*", "/check", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state["url"] = f"http://127.0.0.1:{port}/check"
    yield state
    await runner.cleanup()


def http(url, **params):
    return SERVICES.get("HttpJsonService").from_params("kyc", {"url": url, **params})


async def test_http_service_posts_the_request_as_json_and_returns_the_object(http_server):
    service = http(http_server["url"], headers={"Authorization": "Bearer s3cret"})
    try:
        answer = await service.call({"last_name": "Lee", "age": 40})
    finally:
        await service.close()
    assert answer == {"verified": True, "data": {"score": 7}}
    assert http_server["seen"] == [
        {
            "method": "POST",
            "query": {},
            "json": {"last_name": "Lee", "age": 40},
            "auth": "Bearer s3cret",
        }
    ]


async def test_http_service_can_use_get_and_a_response_path(http_server):
    service = http(http_server["url"], method="GET", response_path=["data"])
    try:
        assert await service.call({"id": 5}) == {"score": 7}
    finally:
        await service.close()
    assert http_server["seen"][0]["query"] == {"id": "5"}


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (500, b"{}", ServiceError, "HTTP 500"),
        (400, b"{}", ServiceClientError, "HTTP 400"),
        (200, b"<html>", ServiceError, "not JSON"),
        (200, b"[1, 2]", ServiceError, "not a JSON object"),
    ],
)
async def test_http_service_turns_bad_answers_into_service_errors(
    http_server, status, body, error, text
):
    http_server.update(status=status, body=body)
    service = http(http_server["url"], headers={"Authorization": "Bearer s3cret"})
    try:
        with pytest.raises(error, match=text) as caught:
            await service.call({})
    finally:
        await service.close()
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(service.params)


async def test_http_service_unreachable_is_a_service_error():
    service = http("http://127.0.0.1:9/nothing")
    try:
        with pytest.raises(ServiceError):
            await service.call({})
    finally:
        await service.close()


class Flaky:
    """Fails the first ``failures`` calls, then answers; counts calls."""

    def __init__(self, failures: int, error: Exception | None = None, delay: float = 0.0) -> None:
        self.failures = failures
        self.error = error or ServiceError("down")
        self.delay = delay
        self.calls = 0

    async def call(self, request):
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.calls <= self.failures:
            raise self.error
        return {"ok": True}


async def test_guard_retries_retryable_failures_until_success():
    flaky = Flaky(2)
    guard = GuardedService("svc", flaky, retry=RetryPolicy(attempts=3, backoff_s=0))
    assert await guard.call({}) == {"ok": True}
    assert flaky.calls == 3


async def test_guard_gives_up_after_its_attempts():
    flaky = Flaky(5)
    guard = GuardedService("svc", flaky, retry=RetryPolicy(attempts=2, backoff_s=0))
    with pytest.raises(ServiceError):
        await guard.call({})
    assert flaky.calls == 2


async def test_guard_does_not_retry_client_errors():
    flaky = Flaky(5, ServiceClientError("HTTP 404"))
    guard = GuardedService("svc", flaky, retry=RetryPolicy(attempts=3, backoff_s=0))
    with pytest.raises(ServiceClientError):
        await guard.call({})
    assert flaky.calls == 1


async def test_guard_times_out_a_slow_service():
    guard = GuardedService("svc", Flaky(0, delay=5.0), timeout_s=0.05)
    with pytest.raises(RuleTimeoutError, match=r"did not answer within 0\.05s"):
        await asyncio.wait_for(guard.call({}), 2.0)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_fails_fast_half_opens_and_closes():
    clock = Clock()
    states: list[BreakerState] = []
    breaker = CircuitBreaker(
        "svc", 2, 10.0, clock=clock, on_state_change=lambda _, s: states.append(s)
    )
    flaky = Flaky(2)
    guard = GuardedService("svc", flaky, breaker=breaker)
    for _ in range(2):
        with pytest.raises(ServiceError):
            await guard.call({})
    with pytest.raises(CircuitOpenError):
        await guard.call({})
    assert flaky.calls == 2  # the open breaker did not call the service
    clock.now += 10.0
    assert await guard.call({}) == {"ok": True}
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_client_errors_do_not_open_the_breaker():
    breaker = CircuitBreaker("svc", 1, 10.0)
    guard = GuardedService("svc", Flaky(3, ServiceClientError("HTTP 422")), breaker=breaker)
    for _ in range(3):
        with pytest.raises(ServiceClientError):
            await guard.call({})
    assert breaker.state is BreakerState.CLOSED


def service_check(service, **params):
    rule = RULES.get("ServiceCheck").from_params({"service": "service:kyc", **params})
    rule.bind_services({"kyc": service})
    return rule


async def run(rule, data):
    ctx = RuleContext("r", dict(data), {})
    return await rule.evaluate(ctx), ctx.data


async def test_service_check_builds_the_request_and_copies_the_answer():
    seen = []

    class Echo:
        async def call(self, request):
            seen.append(request)
            return {"verified": True, "id": "K-1", "extra": 1}

    rule = service_check(
        Echo(),
        request={"surname": "last_name"},
        request_fields=["ssn"],
        request_static={"level": "enhanced"},
        response_fields={"id": "kyc_id"},
        details_fields=["id"],
        pass_when="response.verified && data.age >= 18",
    )
    verdict, data = await run(rule, {"last_name": "Lee", "ssn": "1", "age": 30, "secret": "x"})
    assert seen == [{"ssn": "1", "surname": "Lee", "level": "enhanced"}]
    assert (verdict.outcome, verdict.details) == (Outcome.PASS, {"id": "K-1"})
    assert data["kyc_id"] == "K-1"


async def test_service_check_fails_reviews_or_completes_by_its_expressions():
    rule = service_check(simulated(), request_fields=["last_name"], pass_when="response.verified")
    verdict, _ = await run(rule, {"last_name": "Mallory"})
    assert verdict.outcome is Outcome.FAIL
    review = service_check(
        simulated(), request_fields=["last_name"], review_when="!response.verified"
    )
    verdict, _ = await run(review, {"last_name": "Mallory"})
    assert verdict.action is Route.REVIEW
    done = service_check(
        simulated(), request_fields=["last_name"], complete_when="response.verified"
    )
    verdict, _ = await run(done, {"last_name": "Lee"})
    assert (verdict.outcome, verdict.action) == (Outcome.PASS, Route.COMPLETE)


async def test_service_check_lets_service_errors_through_for_the_executor_to_judge():
    rule = service_check(simulated(fail_rate=1.0), request_fields=["last_name"])
    with pytest.raises(ServiceError):
        await run(rule, {"last_name": "Lee"})
