"""Bytes on topics ↔ records in flight: plain JSON input, the envelope between stages, the
decision on the output topics, and the headers that explain a dead letter. orjson, once per
hop; no pydantic on the hot path (``contracts.py`` holds the reference models)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from stream_engine.config.schema import SchemaProblem, input_validator
from stream_engine.core.decision import Decision
from stream_engine.core.outcome import ROUTE_BY_VALUE, DeadLetterReason
from stream_engine.core.plan import PipelinePlan
from stream_engine.core.records import check_record
from stream_engine.core.result import RuleResult
from stream_engine.core.state import AuditEntry, DeadLetter, RecordState, iso_time
from stream_engine.errors import ConfigError

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

Headers = list[tuple[str, bytes]]

#: Headers of a dead letter (its value is the original bytes, untouched).
DLQ_PREFIX = "dlq."
TRACE_HEADER = "traceparent"
ATTEMPT_HEADER = "dlq.attempt"
STAGE_HEADER = "dlq.stage"
REASON_HEADER = "dlq.reason"
ORIGINAL_TOPIC_HEADER = "dlq.original.topic"
#: Set on a stand-in dead letter whose value was dropped: the original size in bytes.
DROPPED_HEADER = "dlq.value.dropped"
#: The authentication tag of what a worker writes (``runtime/integrity.py``).
AUTH_HEADER = "se.auth"
#: A dead letter's copy of the original message's tag.
ORIGINAL_AUTH_HEADER = "dlq.original.auth"


@dataclass(slots=True)
class Incoming:
    """A consumed Kafka message, independent of the client library that read it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)

    def header(self, name: str) -> bytes | None:
        """The last value of a header, or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


class EnvelopeError(ValueError):
    """An inter-stage message breaks the envelope contract; the message says how."""


@dataclass(slots=True)
class Rejected:
    """An incoming message that could not become a record: it goes to the dead-letter topic."""

    letter: DeadLetter
    record_id: str | None = None


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def stable_id(value: bytes) -> str:
    """The id of a record that names none (no id field, no key): a hash of its bytes, so a
    redelivery - or a replay - of the same message keeps it."""
    return "rec-" + hashlib.sha256(value).hexdigest()[:32]


def record_key(value: bytes, key_field: str | None) -> bytes | None:
    """The Kafka key for a record: its id field when it is a JSON object that has one."""
    if key_field is None:
        return None
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(payload, dict) and payload.get(key_field) not in (None, ""):
        return str(payload[key_field]).encode()
    return None


@dataclass(frozen=True, slots=True)
class TimestampWindow:
    """Producer timestamps believed for latency: at most ``ahead_s`` past the worker's clock
    and ``age_s`` before it (``input.timestamps``)."""

    ahead_s: float = 300.0
    age_s: float = 7 * 24 * 3600.0


class Codec:
    """Decodes and encodes one pipeline's messages."""

    def __init__(
        self,
        plan: PipelinePlan,
        max_message_bytes: int = 1_048_576,
        input_schema: dict[str, Any] | None = None,
        timestamps: TimestampWindow | None = None,
    ) -> None:
        self.plan = plan
        self.max_message_bytes = max_message_bytes
        self.timestamps = timestamps or TimestampWindow()
        self._schema: Any = None
        if input_schema is not None:
            try:
                self._schema = input_validator(input_schema)
            except SchemaProblem as exc:
                raise ConfigError("input.schema", str(exc)) from None

    @classmethod
    def for_pipeline(cls, pipeline: CompiledPipeline) -> Codec:
        """The codec of a compiled pipeline: its size limit, input schema and believed
        timestamps - the one every stage worker and the HTTP API's intake use."""
        config = pipeline.config
        stamps = config.input.timestamps
        return cls(
            pipeline.plan,
            config.runtime.max_message_bytes,
            config.input.schema_,
            TimestampWindow(stamps.max_ahead_s, stamps.max_age_s),
        )

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, message: Incoming, stage: str, first: bool) -> RecordState | Rejected:
        """The record a stage consumed, or why it cannot be one. The size limit applies to
        what users publish (the first stage); envelopes grow with results and are ours."""
        value = message.value
        if value is None or not value:
            return self._rejected(DeadLetterReason.DECODE_ERROR, stage, "empty message", message)
        if first and len(value) > self.max_message_bytes:
            return self._rejected(
                DeadLetterReason.TOO_LARGE,
                stage,
                f"message of {len(value)} bytes is over the limit of {self.max_message_bytes}",
                message,
            )
        try:
            payload = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return self._rejected(
                DeadLetterReason.DECODE_ERROR, stage, f"not valid JSON: {exc}", message
            )
        if not isinstance(payload, dict):
            return self._rejected(
                DeadLetterReason.DECODE_ERROR,
                stage,
                f"not a JSON object but {type(payload).__name__}",
                message,
            )
        if first:
            problem = check_record(value, payload, self.plan.limits)
            if problem is not None:
                return self._rejected(problem.reason, stage, problem.message, message)
            return self._input(payload, message, stage)
        try:
            state = self.read_envelope(payload)
        except EnvelopeError as exc:
            return self._rejected(
                DeadLetterReason.DECODE_ERROR, stage, f"not a valid envelope: {exc}", message
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            return self._rejected(
                DeadLetterReason.DECODE_ERROR, stage, f"not a valid envelope: {exc!r}", message
            )
        replayed = _attempt(message.header(ATTEMPT_HEADER))
        if replayed is not None:
            state.extras["attempt"] = replayed  # a replayed dead letter
        return state

    def _input(self, data: dict[str, Any], message: Incoming, stage: str) -> RecordState | Rejected:
        key = message.key.decode("utf-8", "replace") if message.key else None
        if not key and (self.plan.key_field is None or data.get(self.plan.key_field) in (None, "")):
            key = stable_id(message.value or b"")
        now = time.time()
        received, note = self._received(message.timestamp_ms, now)
        state = RecordState.from_input(
            data, self.plan.key_field, self.plan.tenant_field, key=key, received_at=received
        )
        if self._schema is not None:
            error = next(iter(self._schema.iter_errors(data)), None)
            if error is not None:
                where = ".".join(str(p) for p in error.absolute_path) or "(record)"
                text = f"{where}: fails '{error.validator}' {_brief(error.validator_value)}"
                return Rejected(
                    DeadLetter(
                        DeadLetterReason.SCHEMA_INVALID, stage, text, error_class="ValidationError"
                    ),
                    state.record_id,
                )
        source: dict[str, Any] = {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp_ms,
        }
        if note is not None:
            source["received"] = int(received * 1000)
            source["note"] = note
        state.extras["source"] = source
        trace = message.header(TRACE_HEADER)
        if trace:
            state.extras["trace"] = trace.decode("ascii", "replace")
        attempt = _attempt(message.header(ATTEMPT_HEADER))
        if attempt is not None:
            state.extras["attempt"] = attempt
        return state

    def _received(self, timestamp_ms: int, now: float) -> tuple[float, str | None]:
        """When the record counts as received: its producer timestamp, unless that is missing
        or outside the believed window - then the arrival time, with a note saying why."""
        if timestamp_ms <= 0:
            return now, "no producer timestamp; latency counted from arrival"
        stamped = timestamp_ms / 1000.0
        window = self.timestamps
        if stamped > now + window.ahead_s:
            return now, (
                f"producer timestamp {_moment(stamped)} is more than {window.ahead_s:g}s "
                "ahead of the worker's clock; latency counted from arrival"
            )
        if stamped < now - window.age_s:
            return now, (
                f"producer timestamp {_moment(stamped)} is more than {window.age_s:g}s "
                "old; latency counted from arrival"
            )
        return stamped, None

    def read_envelope(self, envelope: dict[str, Any]) -> RecordState:
        """A record as an earlier stage left it (``EnvelopeError`` when its record_id is
        missing, not a string or empty, as the envelope contract requires)."""
        if "record_id" not in envelope:
            raise EnvelopeError("record_id is missing")
        record_id = envelope["record_id"]
        if not isinstance(record_id, str):
            raise EnvelopeError(f"record_id must be a string, not {json_type(record_id)}")
        if not record_id:
            raise EnvelopeError("record_id is empty")
        cost = envelope.get("cost") or {}
        source = envelope.get("source")
        state = RecordState(
            record_id=record_id,
            data=envelope["data"],
            results={k: RuleResult.from_dict(v) for k, v in envelope["results"].items()},
            cost_total=float(cost.get("total", 0.0)),
            cost_by_rule={k: float(v) for k, v in (cost.get("by_rule") or {}).items()},
            audit=[
                AuditEntry(
                    a["stage"],
                    _epoch(a["started_at"]),
                    float(a["duration_ms"]),
                    ROUTE_BY_VALUE[a["route"]],
                    a["worker"],
                    str(a.get("config_version") or ""),
                    str(a.get("config_hash") or ""),
                    a,
                )
                for a in envelope.get("audit", [])
            ],
            tenant=envelope.get("tenant"),
            received_at=(source.get("received", source["timestamp"]) / 1000.0)
            if source
            else time.time(),
        )
        if not isinstance(state.data, dict):
            raise TypeError("data must be an object")
        if source:
            state.extras["source"] = source
        if envelope.get("trace"):
            state.extras["trace"] = envelope["trace"]
        if envelope.get("attempt"):
            state.extras["attempt"] = int(envelope["attempt"])
        return state

    def _rejected(
        self, reason: DeadLetterReason, stage: str, text: str, message: Incoming
    ) -> Rejected:
        record_id = message.key.decode("utf-8", "replace") if message.key else None
        return Rejected(DeadLetter(reason, stage, text, error_class=reason.value), record_id)

    # -- encoding ---------------------------------------------------------------------------

    def envelope(self, state: RecordState) -> bytes:
        """The envelope for the next stage's topic."""
        plan = self.plan
        cost: dict[str, Any] = {"total": round(state.cost_total, 6), "by_rule": state.cost_by_rule}
        if plan.budget is not None:
            cost["budget"] = plan.budget
        body: dict[str, Any] = {
            "record_id": state.record_id,
            "pipeline": plan.name,
            "config_version": plan.version,
            "config_hash": plan.config_hash,
            "data": state.data,
            "results": {rule: r.to_dict() for rule, r in state.results.items()},
            "audit": [entry.to_dict() for entry in state.audit],
            "cost": cost,
            "source": state.extras.get("source"),
            "tenant": state.tenant,
            "trace": state.extras.get("trace"),
        }
        if state.extras.get("attempt"):
            body["attempt"] = state.extras["attempt"]
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)

    def decision(self, decision: Decision, data: dict[str, Any] | None = None) -> bytes:
        """A decision for the decisions, rejected or review topic."""
        body = decision.to_dict(data)
        extras = decision.state.extras
        if extras.get("source"):
            body["source"] = extras["source"]
        if extras.get("trace"):
            body["trace"] = extras["trace"]
        if extras.get("attempt"):
            body["attempt"] = extras["attempt"]
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)

    def dead_letter_headers(
        self,
        letter: DeadLetter,
        message: Incoming,
        record_id: str | None,
        attempt: int,
        trace: str | None = None,
    ) -> Headers:
        """Headers that explain a dead letter (Kafka Connect / Spring Kafka style). Its
        ``traceparent`` is the message's, else the record's (an envelope carries it inside),
        so whoever waits for the record - the HTTP API - can tell its letter apart."""
        fields = {
            "original.topic": message.topic,
            "original.partition": str(message.partition),
            "original.offset": str(message.offset),
            "original.timestamp": str(message.timestamp_ms),
            "stage": letter.stage,
            "rule": letter.rule,
            "reason": letter.reason.value,
            "exception.class": letter.error_class,
            "exception.message": letter.message[:1000],
            "attempt": str(attempt),
            "record_id": record_id or "",
            "pipeline": self.plan.name,
            "config_hash": self.plan.config_hash,
            "failed_at": iso_time(time.time()),
        }
        headers = [(DLQ_PREFIX + name, value.encode()) for name, value in fields.items()]
        auth = message.header(AUTH_HEADER)
        if auth is not None:
            # The original tag, so ``dlq replay`` can send an envelope back to its topic as
            # it was written (the stage verifies it again there).
            headers.append((ORIGINAL_AUTH_HEADER, auth))
        traceparent = message.header(TRACE_HEADER) or (
            trace.encode("ascii", "replace") if trace else None
        )
        if traceparent:
            headers.append((TRACE_HEADER, traceparent))
        return headers


def _attempt(header: bytes | None) -> int | None:
    """A replay's attempt number from its header: 1 to 9 ASCII digits, else none."""
    if header and len(header) <= 9 and header.isdigit():
        return int(header)
    return None


def _moment(epoch_s: float) -> str:
    """An epoch time as ISO text, or as milliseconds where a calendar cannot show it."""
    try:
        return iso_time(epoch_s)
    except (OverflowError, OSError, ValueError):
        return f"{int(epoch_s * 1000)} ms"


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (null, boolean, number, string, array, object)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _brief(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."
