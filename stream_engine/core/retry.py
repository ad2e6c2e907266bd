"""Retry policy: how many attempts, which error kinds retry, and the backoff between them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from stream_engine.core.outcome import ErrorKind

#: The error kinds retried when a policy does not say (``retry_on``).
DEFAULT_RETRY_ON = (ErrorKind.TIMEOUT, ErrorKind.SERVICE_ERROR)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts the first try; ``delay`` grows by ``multiplier`` up to
    ``max_backoff_s``, spread by +/- ``jitter`` (a fraction) to avoid retry storms."""

    attempts: int = 1
    backoff_s: float = 0.1
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    jitter: float = 0.0
    retry_on: frozenset[ErrorKind] = field(default_factory=lambda: frozenset(DEFAULT_RETRY_ON))

    def should_retry(self, kind: str, attempts_made: int) -> bool:
        """True when an error of ``kind`` after ``attempts_made`` attempts earns another try."""
        return attempts_made < self.attempts and kind in self.retry_on

    def delay(self, attempts_made: int, rng: random.Random) -> float:
        """Seconds to wait before the next attempt."""
        base = min(self.backoff_s * self.multiplier ** (attempts_made - 1), self.max_backoff_s)
        if self.jitter:
            base *= 1.0 + self.jitter * rng.uniform(-1.0, 1.0)
        return max(base, 0.0)
