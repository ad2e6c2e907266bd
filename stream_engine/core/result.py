"""Rule verdicts (what a rule returns) and rule results (what the engine records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_engine.core.outcome import Outcome, Route


@dataclass(slots=True)
class Verdict:
    """A rule's answer: an outcome, a human-readable message, details, and an optional
    request to stop the record (``Route.REVIEW`` or ``Route.COMPLETE``)."""

    outcome: Outcome
    message: str = ""
    details: dict[str, Any] | None = None
    action: Route | None = None


def passed(message: str = "", **details: Any) -> Verdict:
    """A PASS verdict."""
    return Verdict(Outcome.PASS, message, details or None)


def failed(message: str, **details: Any) -> Verdict:
    """A FAIL verdict; the rule's ``on_fail`` decides what it does to the record."""
    return Verdict(Outcome.FAIL, message, details or None)


def skipped(message: str, **details: Any) -> Verdict:
    """A SKIP verdict: the rule did not apply to this record."""
    return Verdict(Outcome.SKIP, message, details or None)


def needs_review(message: str, outcome: Outcome = Outcome.FAIL, **details: Any) -> Verdict:
    """A verdict that sends the record to manual review whatever the rule's ``on_fail``."""
    return Verdict(outcome, message, details or None, Route.REVIEW)


def complete(message: str, **details: Any) -> Verdict:
    """A PASS that ends the record early with its current data (seed 002's skip-remaining)."""
    return Verdict(Outcome.PASS, message, details or None, Route.COMPLETE)


@dataclass(slots=True)
class RuleResult:
    """One rule evaluation as recorded in the envelope's ``results``."""

    stage: str
    outcome: Outcome
    message: str = ""
    details: dict[str, Any] | None = None
    duration_ms: float = 0.0
    attempts: int = 0
    cost: float = 0.0
    error_kind: str | None = None
    action: Route | None = None
    #: The wire form it was read from (an earlier stage's result): written back unchanged.
    wire: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The wire form (ARCHITECTURE.md, envelope ``results``)."""
        if self.wire is not None:
            return self.wire
        out: dict[str, Any] = {
            "stage": self.stage,
            "outcome": self.outcome.value,
            "message": self.message,
            "details": self.details or {},
            "duration_ms": round(self.duration_ms, 3),
            "attempts": self.attempts,
            "cost": self.cost,
        }
        if self.error_kind is not None:
            out["error"] = self.error_kind
        if self.action is not None:
            out["action"] = self.action.value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RuleResult:
        """Rebuild a result read back from an envelope (once per result per hop: positional
        arguments, and numbers converted only when they are not numbers already)."""
        action = raw.get("action")
        duration = raw.get("duration_ms", 0.0)
        attempts = raw.get("attempts", 0)
        cost = raw.get("cost", 0.0)
        message = raw.get("message", "")
        stage = raw.get("stage", "")
        return cls(
            stage if type(stage) is str else str(stage),
            _OUTCOMES[raw["outcome"]],
            message if type(message) is str else str(message),
            raw.get("details") or None,
            duration if type(duration) is float else float(duration),
            attempts if type(attempts) is int else int(attempts),
            cost if type(cost) is float else float(cost),
            raw.get("error"),
            _ROUTES[action] if action else None,
            raw,
        )


_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
_ROUTES = {route.value: route for route in Route}
