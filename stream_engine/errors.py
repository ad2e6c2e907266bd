"""The one error hierarchy of stream_engine; every error the engine raises derives from it."""

from __future__ import annotations

import re

from stream_engine.core.outcome import ErrorKind

#: Control characters (a newline in a key or value, a terminal escape) are shown escaped, so a
#: configuration error is always one plain line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class StreamEngineError(Exception):
    """Root of every error stream_engine raises on purpose."""


class ConfigError(StreamEngineError):
    """A configuration problem, located by a dotted path such as ``stages.x.rules.y.params``."""

    def __init__(self, location: str, message: str, line: int | None = None) -> None:
        text = f"{location}: {message}" if location else message
        text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
        super().__init__(f"{text} (line {line})" if line else text)
        self.location = location
        self.message = message
        self.line = line


class ConfigErrors(StreamEngineError):
    """Every problem found in one configuration, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class ExpressionError(StreamEngineError):
    """A CEL expression failed to compile or to evaluate."""


class RegexError(StreamEngineError, ValueError):
    """A regular expression that RE2 refuses (bad syntax, lookarounds, backreferences...);
    a ``ValueError`` too, so a params validator reports it at the param's location."""


class RuleEvaluationError(StreamEngineError):
    """A rule could not reach a verdict; ``kind`` (an ``ErrorKind``) names the dead-letter
    reason."""

    kind: ErrorKind = ErrorKind.RULE_ERROR


class RuleTimeoutError(RuleEvaluationError):
    """A rule, a service call or a whole stage ran past its time limit."""

    kind = ErrorKind.TIMEOUT


class ServiceError(RuleEvaluationError):
    """A service call failed (transport error, bad status, bad response)."""

    kind = ErrorKind.SERVICE_ERROR
    #: Whether this failure says the service is unhealthy (counts towards its breaker).
    counts_against_health = True


class ServiceClientError(ServiceError):
    """The service refused the request itself (HTTP 4xx): retrying the same request will not
    help, and it says nothing about the service's health."""

    kind = ErrorKind.CLIENT_ERROR
    counts_against_health = False


class CircuitOpenError(ServiceError):
    """The service's circuit breaker is open: the call was not attempted."""

    kind = ErrorKind.CIRCUIT_OPEN


class RegistryError(StreamEngineError):
    """A rule or service class was looked up by a name nobody registered."""


class InputFileError(StreamEngineError):
    """A file of records to publish cannot be read (e.g. a CSV that is not UTF-8)."""


class BrokerError(StreamEngineError):
    """The Kafka cluster cannot be reached or refused a request; the message says which."""


class StateUnavailableError(RuleEvaluationError):
    """A rule that remembers across records was run without its store (no ``StoreView``, or
    not the store it was bound to): it cannot decide without state."""


class EventTimeError(RuleEvaluationError):
    """A record's event time is missing or not a time a stateful rule can place it at."""
