"""The decision: the final word on a record, as published on decisions/rejected/review."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stream_engine.core.outcome import Route, Status
from stream_engine.core.result import RuleResult, display_float
from stream_engine.core.state import AuditEntry, DeadLetter, RecordState, iso_time


@dataclass(slots=True)
class StageOutcome:
    """What one stage did to one record: the route it chose and why."""

    stage: str
    route: Route
    reasons: list[str] = field(default_factory=list)
    results: list[tuple[str, RuleResult]] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    audit: AuditEntry | None = None
    budget_exceeded: bool = False
    #: The engine's own error on this record (an ``internal_error`` dead letter), if any.
    error: Exception | None = None


@dataclass(slots=True)
class Decision:
    """A record's final status with everything needed to explain it."""

    state: RecordState
    status: Status
    decided_by_stage: str
    reasons: list[str]
    failed_rules: dict[str, list[str]]
    decided_at: float
    pipeline: str
    config_version: str
    config_hash: str
    budget: float | None = None
    dead_letter: DeadLetter | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The data to publish when it is not the record's own (PII-masked, ``pii.mask_decisions``).
    data: dict[str, Any] | None = None
    #: Hashes of other configurations that ran a stage of this record (a rollout): worked
    #: out once, when the decision is made (``other_configs``).
    foreign_configs: frozenset[str] = frozenset()

    @property
    def record_id(self) -> str:
        """The record's stable id."""
        return self.state.record_id

    @property
    def latency_ms(self) -> float:
        """Milliseconds from the record's arrival (its input timestamp) to this decision."""
        return max((self.decided_at - self.state.received_at) * 1000.0, 0.0)

    def to_dict(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The wire form (docs/ARCHITECTURE.md, decision); ``data`` replaces the record's data,
        e.g. with a PII-masked copy (by default: ``self.data``, else the record's own)."""
        state = self.state
        if data is None:
            data = state.data if self.data is None else self.data
        cost: dict[str, Any] = {
            "total": display_float(state.cost_total),
            "by_rule": {k: display_float(v) for k, v in state.cost_by_rule.items()},
        }
        if self.budget is not None:
            cost["budget"] = self.budget
        out: dict[str, Any] = {
            "record_id": state.record_id,
            "status": self.status.value,
            "decided_at": iso_time(self.decided_at),
            "decided_by_stage": self.decided_by_stage,
            "reasons": self.reasons,
            "failed_rules": self.failed_rules,
            "results": {rule_id: r.to_dict() for rule_id, r in state.results.items()},
            "data": data,
            "audit": [entry.to_dict() for entry in state.audit],
            "cost": cost,
            "latency_ms": round(self.latency_ms, 3),
            "pipeline": self.pipeline,
            "config_version": self.config_version,
            "config_hash": self.config_hash,
            "config_mixed": bool(self.foreign_configs),
        }
        if state.tenant is not None:
            out["tenant"] = state.tenant
        if self.dead_letter is not None:
            out["dead_letter"] = self.dead_letter.to_dict()
        out.update(self.extra)
        return out


def other_configs(audit: Iterable[AuditEntry], own: str) -> frozenset[str]:
    """The configuration hashes in an audit trail other than ``own``."""
    return frozenset(e.config_hash for e in audit if e.config_hash and e.config_hash != own)
