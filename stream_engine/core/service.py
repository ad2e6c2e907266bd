"""The service interface rules call, and the guard that adds timeout, retry and a breaker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Protocol

from stream_engine.core.aio import await_with_timeout
from stream_engine.core.breaker import CircuitBreaker
from stream_engine.core.retry import RetryPolicy
from stream_engine.errors import RuleTimeoutError, ServiceError


class Service(Protocol):
    """An external call a rule can make: a JSON-like request in, a JSON-like response out."""

    async def call(self, request: dict[str, Any]) -> dict[str, Any]: ...


#: Told of every attempt: ``(service, outcome)`` with outcome ``ok``, ``timeout``,
#: ``service_error``, ``client_error`` or ``circuit_open`` - how metrics see services without
#: the core importing a metrics library.
CallObserver = Callable[[str, str], None]


class GuardedService:
    """Wraps a service with a per-call timeout, retries with backoff and a circuit breaker.

    Errors come out as ``ServiceError`` (or its ``CircuitOpenError``) or ``RuleTimeoutError``,
    so rules and the executor can tell a failing dependency from a rule bug.
    """

    observer: CallObserver | None = None

    def __init__(
        self,
        name: str,
        service: Service,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.service = service
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.breaker = breaker
        self._rng = rng or random.Random()
        self.calls = 0
        # A service that answers from memory never waits, so it cannot run past a timeout.
        self._may_suspend = getattr(service, "may_suspend", True) and timeout_s is not None

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Call the service, retrying retryable failures, failing fast when the breaker is open."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(request)
            except (ServiceError, RuleTimeoutError) as exc:
                if not self.retry.should_retry(exc.kind, attempt):
                    raise
            await asyncio.sleep(self.retry.delay(attempt, self._rng))

    async def _attempt(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._guarded(request)
        except (ServiceError, RuleTimeoutError) as exc:
            if self.observer is not None:
                self.observer(self.name, exc.kind)
            raise
        if self.observer is not None:
            self.observer(self.name, "ok")
        return response

    async def _guarded(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.breaker is not None:
            self.breaker.before_call()
        self.calls += 1
        try:
            if self._may_suspend:
                # Not inline: an HTTP client binds its timers to the task the call starts on.
                response = await await_with_timeout(
                    self.service.call(request), self.timeout_s, inline=False
                )
            else:
                response = await self.service.call(request)
        except TimeoutError as exc:
            self._failed()
            raise RuleTimeoutError(
                f"service '{self.name}' did not answer within {self.timeout_s}s"
            ) from exc
        except ServiceError as exc:
            if exc.counts_against_health:
                self._failed()
            elif self.breaker is not None:
                self.breaker.on_success()
            raise
        except (OSError, ValueError) as exc:
            self._failed()
            raise ServiceError(f"service '{self.name}': {type(exc).__name__}: {exc}") from exc
        if self.breaker is not None:
            self.breaker.on_success()
        return response

    def _failed(self) -> None:
        if self.breaker is not None:
            self.breaker.on_failure()
