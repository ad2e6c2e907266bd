"""What a request body becomes before anything is published: records checked by the first
stage's own ``Codec.decode`` (size, JSON, input limits, input schema) - so the API refuses
exactly what the workers would dead-letter for its shape - each with its record id, Kafka
key and W3C ``traceparent``. A request with one bad record publishes nothing."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from stream_engine.api.problems import ApiProblem, ProblemKind
from stream_engine.core.outcome import DeadLetterReason
from stream_engine.runtime.stage.codec import Codec, Incoming, Rejected, json_type, record_key

#: The body of a batch: an object whose one member is this list of records.
BATCH_MEMBER = "records"
#: Where a record's decision can be polled.
DECISION_PATH = "/v1/decisions/{record_id}"
RECORD_ID_HEADER = "Record-Id"
#: A record id the client gives in ``Record-Id``: printable, no spaces, at most 256 bytes.
RECORD_ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,256}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

#: How the first stage's refusals read over HTTP.
REASON_KIND = {
    DeadLetterReason.TOO_LARGE: ProblemKind.TOO_LARGE,
    DeadLetterReason.DECODE_ERROR: ProblemKind.NOT_AN_OBJECT,
    DeadLetterReason.LIMIT_EXCEEDED: ProblemKind.LIMIT_EXCEEDED,
    DeadLetterReason.SCHEMA_INVALID: ProblemKind.SCHEMA_INVALID,
}


@dataclass(frozen=True, slots=True)
class Submission:
    """One accepted record, ready to publish: the bytes the first stage will decode."""

    record_id: str
    key: bytes
    value: bytes
    trace: str


class Intake:
    """Turns request bodies into submissions for one pipeline's input topic."""

    def __init__(self, codec: Codec, input_topic: str, stage: str, max_records: int) -> None:
        self.codec = codec
        self.topic = input_topic
        self.stage = stage
        self.max_records = max_records
        self.key_field = codec.plan.key_field

    def read(
        self, body: bytes, record_id: str | None = None, traceparent: str | None = None
    ) -> tuple[list[Submission], bool]:
        """The body's records and whether it was a batch; ``ApiProblem`` for the first
        problem of a single record, or every bad record of a batch (``errors``)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiProblem(ProblemKind.INVALID_JSON, f"not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiProblem(ProblemKind.NOT_AN_OBJECT, f"the body is a JSON {json_type(payload)}")
        trace_id = _trace_id(traceparent)
        if not is_batch(payload):
            if record_id is not None and not RECORD_ID_PATTERN.match(record_id):
                raise ApiProblem(
                    ProblemKind.INVALID_RECORD_ID,
                    f"{RECORD_ID_HEADER} must be 1 to 256 printable characters without spaces",
                )
            return [self._one(body, payload, record_id, trace_id)], False
        return self._batch(payload[BATCH_MEMBER], trace_id), True

    def _batch(self, records: list[Any], trace_id: str) -> list[Submission]:
        if not records:
            raise ApiProblem(ProblemKind.NOT_AN_OBJECT, "'records' holds no record")
        if len(records) > self.max_records:
            raise ApiProblem(
                ProblemKind.TOO_MANY_RECORDS,
                f"{len(records)} records; one request takes at most {self.max_records}",
            )
        accepted: list[Submission] = []
        errors: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            try:
                if not isinstance(record, dict):
                    raise ApiProblem(
                        ProblemKind.NOT_AN_OBJECT, f"the record is a JSON {json_type(record)}"
                    )
                accepted.append(self._one(orjson.dumps(record), record, None, trace_id))
            except ApiProblem as problem:
                errors.append(
                    {"pointer": f"/records/{index}", "kind": problem.kind.value,
                     "detail": problem.detail}
                )  # fmt: skip
        if errors:
            first = errors[0]
            raise ApiProblem(
                ProblemKind(first["kind"]),
                f"{len(errors)} of {len(records)} records refused; nothing was published "
                f"(first: {first['pointer']}: {first['detail']})",
                {"errors": errors},
            )
        return accepted

    def _one(
        self, value: bytes, payload: dict[str, Any], record_id: str | None, trace_id: str
    ) -> Submission:
        """One record through the first stage's decoder; its id, key and trace."""
        if self.key_field is not None:
            if payload.get(self.key_field) in (None, ""):
                raise ApiProblem(
                    ProblemKind.MISSING_KEY_FIELD,
                    f"the record has no value in its key field '{self.key_field}'",
                )
            key = record_key(value, self.key_field) or b""
        else:
            key = (record_id or f"rec-{uuid.uuid4().hex}").encode()
        message = Incoming(self.topic, 0, -1, int(time.time() * 1000), key, value)
        decoded = self.codec.decode(message, self.stage, first=True)
        if isinstance(decoded, Rejected):
            letter = decoded.letter
            kind = REASON_KIND.get(letter.reason, ProblemKind.NOT_AN_OBJECT)
            raise ApiProblem(kind, letter.message)
        trace = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        return Submission(decoded.record_id, key, value, trace)


def is_batch(payload: dict[str, Any]) -> bool:
    """Whether a body is ``{"records": [...]}`` (and nothing else) rather than one record."""
    return len(payload) == 1 and isinstance(payload.get(BATCH_MEMBER), list)


def decision_href(record_id: str) -> str:
    """The path where a record's decision is polled (its id URL-quoted)."""
    from urllib.parse import quote

    return DECISION_PATH.format(record_id=quote(record_id, safe=""))


def _trace_id(traceparent: str | None) -> str:
    """The caller's W3C trace id when it sent a valid ``traceparent``, else a new one."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return secrets.token_hex(16)
