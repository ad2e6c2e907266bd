"""A record in flight: its data, every result so far, its cost and its audit trail."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stream_engine.core.outcome import DeadLetterReason, Route
from stream_engine.core.result import RuleResult

if TYPE_CHECKING:
    from stream_engine.core.stores import StoreView


def iso_time(epoch_s: float) -> str:
    """An epoch time as an ISO-8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class AuditEntry:
    """One stage's visit, as the audit trail records it."""

    stage: str
    started_at: float
    duration_ms: float
    route: Route
    worker: str
    #: The configuration that ran the stage (a rollout can mix them across stages).
    config_version: str = ""
    config_hash: str = ""
    #: The wire form it was read from (an earlier stage's visit): written back unchanged.
    wire: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The wire form (docs/ARCHITECTURE.md, envelope ``audit``)."""
        if self.wire is not None:
            return self.wire
        return {
            "stage": self.stage,
            "started_at": iso_time(self.started_at),
            "duration_ms": round(self.duration_ms, 3),
            "route": self.route.value,
            "worker": self.worker,
            "config_version": self.config_version,
            "config_hash": self.config_hash,
        }


@dataclass(slots=True)
class DeadLetter:
    """Why a record was dead-lettered: the facts the dead-letter headers carry."""

    reason: DeadLetterReason
    stage: str
    message: str
    rule: str = ""
    error_class: str = ""
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping of the facts, for the offline ``eval`` output."""
        return {
            "reason": self.reason.value,
            "stage": self.stage,
            "rule": self.rule,
            "error_class": self.error_class,
            "message": self.message,
            "attempts": self.attempts,
        }


@dataclass(slots=True)
class RecordState:
    """The record as it travels: everything the envelope carries between stages."""

    record_id: str
    data: dict[str, Any]
    results: dict[str, RuleResult] = field(default_factory=dict)
    cost_total: float = 0.0
    cost_by_rule: dict[str, float] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    tenant: str | None = None
    received_at: float = field(default_factory=time.time)
    #: What the runtime carries along unchanged (the input's source, a trace id...).
    extras: dict[str, Any] = field(default_factory=dict)
    #: Work rules may share within this process (a parsed phone number...); never serialised.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    #: The state stateful rules decide this record with (set by the stage; never serialised).
    stores: StoreView | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_input(
        cls,
        data: dict[str, Any],
        key_field: str | None = None,
        tenant_field: str | None = None,
        key: str | None = None,
        received_at: float | None = None,
    ) -> RecordState:
        """A new record: its id from ``key_field``, else ``key``, else a fresh UUID."""
        record_id: str | None = None
        if key_field is not None:
            value = data.get(key_field)
            if value is not None and value != "":
                record_id = str(value)
        if record_id is None:
            record_id = key or str(uuid.uuid4())
        tenant = data.get(tenant_field) if tenant_field else None
        return cls(
            record_id=record_id,
            data=data,
            tenant=None if tenant is None else str(tenant),
            received_at=time.time() if received_at is None else received_at,
        )
