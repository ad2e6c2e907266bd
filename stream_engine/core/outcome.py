"""The small vocabularies every layer shares: outcomes, policies, routes and statuses."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What one rule evaluation came to."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    ERROR = "ERROR"


class OnFail(StrEnum):
    """What a FAIL of a rule does to the record."""

    REJECT = "reject"
    REVIEW = "review"
    CONTINUE = "continue"
    COMPLETE = "complete"


class OnError(StrEnum):
    """What an ERROR of a rule (after its retries) does to the record."""

    DEAD_LETTER = "dead_letter"
    FAIL = "fail"
    #: The record goes to review (a vendor down → manual review), whatever ``on_fail`` says.
    REVIEW = "review"
    SKIP = "skip"


class Route(StrEnum):
    """Where a record goes after a stage (the stop conditions of docs/ARCHITECTURE.md)."""

    FORWARD = "forward"
    REJECT = "reject"
    REVIEW = "review"
    COMPLETE = "complete"
    DEAD_LETTER = "dead_letter"


#: Members by their wire text: a dict lookup, where calling the Enum costs a Python call.
OUTCOME_BY_VALUE = {outcome.value: outcome for outcome in Outcome}
ROUTE_BY_VALUE = {route.value: route for route in Route}


class Status(StrEnum):
    """The final status of a record, carried by its decision."""

    APPROVED = "approved"
    REJECTED = "rejected"
    REVIEW = "review"
    COMPLETED = "completed"
    DEAD_LETTER = "dead_letter"


class DeadLetterReason(StrEnum):
    """Why a record went to the dead-letter topic (the ``reason`` header)."""

    DECODE_ERROR = "decode_error"
    SCHEMA_INVALID = "schema_invalid"
    TOO_LARGE = "too_large"
    #: A record past one of ``input.limits`` (nesting, a string's or a list's size).
    LIMIT_EXCEEDED = "limit_exceeded"
    #: An inter-stage message (or a replayed letter) that is not authenticated, or altered.
    INTEGRITY = "integrity"
    #: The record's results cannot be written as JSON (a value JSON cannot carry, too deep).
    ENCODE_ERROR = "encode_error"
    RULE_ERROR = "rule_error"
    TIMEOUT = "timeout"
    CIRCUIT_OPEN = "circuit_open"
    BUDGET_EXCEEDED = "budget_exceeded"
    INTERNAL_ERROR = "internal_error"


class OutputKind(StrEnum):
    """The pipeline's output topics, by what they carry (``<pipeline>.<kind>`` by default)."""

    DECISIONS = "decisions"
    REJECTED = "rejected"
    REVIEW = "review"
    DLQ = "dlq"


#: The output topic each final status goes to (a dead letter: the dead-letter topic).
STATUS_OUTPUT = {
    Status.APPROVED: OutputKind.DECISIONS,
    Status.COMPLETED: OutputKind.DECISIONS,
    Status.REJECTED: OutputKind.REJECTED,
    Status.REVIEW: OutputKind.REVIEW,
    Status.DEAD_LETTER: OutputKind.DLQ,
}


class ErrorKind(StrEnum):
    """What made a rule or service call fail (``retry.on`` names them; errors carry one)."""

    TIMEOUT = "timeout"
    SERVICE_ERROR = "service_error"
    CLIENT_ERROR = "client_error"
    CIRCUIT_OPEN = "circuit_open"
    RULE_ERROR = "rule_error"
