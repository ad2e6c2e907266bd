"""The service interface rules call, and the guard that adds timeout, retry and a breaker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from stream_engine.core.aio import await_with_timeout
from stream_engine.core.breaker import BreakerState, CircuitBreaker
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
        #: It can answer synchronously: ``answer(request)``, never suspending.
        self._answers_now = not getattr(service, "may_suspend", True) and callable(
            getattr(service, "answer", None)
        )

    @property
    def immediate(self) -> bool:
        """The next call can be answered now, without a coroutine (``answer_now``): the
        service answers from memory and the breaker is closed."""
        return self._answers_now and (
            self.breaker is None or self.breaker.state is BreakerState.CLOSED
        )

    async def call(self, request: dict[str, Any], failed_attempts: int = 0) -> dict[str, Any]:
        """Call the service, retrying retryable failures, failing fast when the breaker is
        open. ``failed_attempts``: attempts already made and failed (by ``answer_now``)."""
        attempt = failed_attempts
        if attempt:
            await asyncio.sleep(self.retry.delay(attempt, self._rng))
        while True:
            attempt += 1
            try:
                return await self._attempt(request)
            except (ServiceError, RuleTimeoutError) as exc:
                if not self.retry.should_retry(exc.kind, attempt):
                    raise
            await asyncio.sleep(self.retry.delay(attempt, self._rng))

    def answer_now(self, request: dict[str, Any]) -> dict[str, Any]:
        """One attempt, answered synchronously (only when ``immediate``): the breaker and the
        observer see it as they see an attempt of ``call``; a failure is raised, not retried."""
        try:
            response = self._answer(request)
        except (ServiceError, RuleTimeoutError) as exc:
            self._observe(exc.kind)
            raise
        self._observe("ok")
        return response

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self._begin()
        try:
            response: dict[str, Any] = self.service.answer(request)  # type: ignore[attr-defined]
        except (ServiceError, OSError, ValueError) as exc:
            self._raise(exc)
        self._succeeded()
        return response

    def _observe(self, outcome: str) -> None:
        if self.observer is not None:
            self.observer(self.name, outcome)

    async def _attempt(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._guarded(request)
        except (ServiceError, RuleTimeoutError) as exc:
            self._observe(exc.kind)
            raise
        self._observe("ok")
        return response

    async def _guarded(self, request: dict[str, Any]) -> dict[str, Any]:
        self._begin()
        try:
            if self._may_suspend:
                # Not inline: an HTTP client binds its timers to the task the call starts on.
                response = await await_with_timeout(
                    self.service.call(request), self.timeout_s, inline=False
                )
            else:
                response = await self.service.call(request)
        except (TimeoutError, ServiceError, OSError, ValueError) as exc:
            self._raise(exc)
        self._succeeded()
        return response

    def _begin(self) -> None:
        """An attempt starts: the breaker may refuse it (``CircuitOpenError``)."""
        if self.breaker is not None:
            self.breaker.before_call()
        self.calls += 1

    def _raise(self, exc: Exception) -> NoReturn:
        """Book a failed attempt and raise it as a ``ServiceError`` or ``RuleTimeoutError``."""
        if isinstance(exc, ServiceError):
            self._service_failed(exc)
            raise exc
        self._failed()
        if isinstance(exc, TimeoutError):
            raise RuleTimeoutError(
                f"service '{self.name}' did not answer within {self.timeout_s}s"
            ) from exc
        raise ServiceError(f"service '{self.name}': {type(exc).__name__}: {exc}") from exc

    def _service_failed(self, exc: ServiceError) -> None:
        """A service error counts against the breaker unless it is the caller's fault."""
        if exc.counts_against_health:
            self._failed()
        elif self.breaker is not None:
            self.breaker.on_success()

    def _succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.on_success()

    def _failed(self) -> None:
        if self.breaker is not None:
            self.breaker.on_failure()
