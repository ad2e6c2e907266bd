"""Refusals as RFC 9457 problem details: one ``ProblemKind`` per way a request can fail, its
HTTP status and title defined here once, and ``ApiProblem`` to raise from anywhere below a
handler (the app's middleware turns it into ``application/problem+json``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from stream_engine.errors import StreamEngineError

PROBLEM_TYPE = "application/problem+json"
#: Where a problem's ``type`` URI points: the README's section on API errors.
TYPE_BASE = "https://stream-engine.dev/problems/"


class ProblemKind(StrEnum):
    """Why a request was refused; the last part of the problem's ``type``."""

    INVALID_JSON = "invalid-json"
    NOT_AN_OBJECT = "not-an-object"
    TOO_LARGE = "too-large"
    TOO_MANY_RECORDS = "too-many-records"
    LIMIT_EXCEEDED = "limit-exceeded"
    SCHEMA_INVALID = "schema-invalid"
    MISSING_KEY_FIELD = "missing-key-field"
    INVALID_RECORD_ID = "invalid-record-id"
    INVALID_PARAMETER = "invalid-parameter"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate-limited"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    OVERLOADED = "overloaded"
    NOT_READY = "not-ready"
    BROKER_UNAVAILABLE = "broker-unavailable"


#: Each kind's HTTP status and title.
KIND_STATUS: dict[ProblemKind, tuple[int, str]] = {
    ProblemKind.INVALID_JSON: (400, "The body is not valid JSON"),
    ProblemKind.NOT_AN_OBJECT: (400, "The body is not a JSON object"),
    ProblemKind.TOO_LARGE: (413, "The body or a record is over the size limit"),
    ProblemKind.TOO_MANY_RECORDS: (413, "Too many records in one request"),
    ProblemKind.LIMIT_EXCEEDED: (422, "A record is past one of the input limits"),
    ProblemKind.SCHEMA_INVALID: (422, "A record fails the input schema"),
    ProblemKind.MISSING_KEY_FIELD: (422, "A record has no value in the key field"),
    ProblemKind.INVALID_RECORD_ID: (400, "The record id given is not usable"),
    ProblemKind.INVALID_PARAMETER: (400, "A query parameter is not valid"),
    ProblemKind.UNAUTHORIZED: (401, "No valid API key or bearer token"),
    ProblemKind.FORBIDDEN: (403, "The key lacks the scope this endpoint needs"),
    ProblemKind.RATE_LIMITED: (429, "The key's request rate is exceeded"),
    ProblemKind.NOT_FOUND: (404, "Not found"),
    ProblemKind.METHOD_NOT_ALLOWED: (405, "Method not allowed"),
    ProblemKind.OVERLOADED: (503, "Too many decide calls are waiting"),
    ProblemKind.NOT_READY: (503, "The API is not ready yet"),
    ProblemKind.BROKER_UNAVAILABLE: (503, "The broker did not acknowledge the records"),
}


class ApiProblem(StreamEngineError):
    """A refused request: its kind, a detail for the caller (never a record's values beyond
    what the caller sent), extra members (``errors``) and response headers (``Retry-After``)."""

    def __init__(
        self,
        kind: ProblemKind,
        detail: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.extra = extra
        self.headers = headers

    @property
    def status(self) -> int:
        """The HTTP status of this kind of problem."""
        return KIND_STATUS[self.kind][0]

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem details object (RFC 9457)."""
        status, title = KIND_STATUS[self.kind]
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.kind.value,
            "title": title,
            "status": status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        if self.extra:
            body.update(self.extra)
        return body
