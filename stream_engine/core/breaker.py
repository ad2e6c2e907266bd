"""A circuit breaker: after enough consecutive failures calls fail fast, until a probe succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from stream_engine.errors import CircuitOpenError


class BreakerState(StrEnum):
    """The three states of a breaker (the runtime's metric gives each its number)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed: calls go through, consecutive failures are counted. ``failure_threshold`` of them
    open it. Open: calls raise ``CircuitOpenError`` until ``reset_timeout_s`` has passed, then it
    half-opens. Half-open: up to ``half_open_max_calls`` probes go through; a success closes it,
    a failure opens it again for another ``reset_timeout_s``."""

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self._clock = clock
        self._listeners = [on_state_change] if on_state_change is not None else []
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0

    def listen(self, listener: Callable[[str, BreakerState], None]) -> None:
        """Also call ``listener(name, state)`` on every state change (e.g. to set a gauge)."""
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        """The current state, half-opening first if the open period has run out."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout_s
        ):
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def before_call(self) -> None:
        """Let a call through or raise ``CircuitOpenError``."""
        state = self.state
        if state is BreakerState.OPEN:
            raise CircuitOpenError(f"circuit open for service '{self.name}'")
        if state is BreakerState.HALF_OPEN:
            if self._probes >= self.half_open_max_calls:
                raise CircuitOpenError(f"circuit half-open for service '{self.name}', probe busy")
            self._probes += 1

    def on_success(self) -> None:
        """Record a successful call."""
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def on_failure(self) -> None:
        """Record a failed call."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is BreakerState.OPEN and self._state is BreakerState.OPEN:
            return
        self._state = state
        self._probes = 0
        if state is BreakerState.CLOSED:
            self._failures = 0
        for listener in self._listeners:
            listener(self.name, state)
