"""Rule verdicts (what a rule returns) and rule results (what the engine records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_engine.core.outcome import OUTCOME_BY_VALUE, ROUTE_BY_VALUE, Outcome, Route

#: Significant digits a float keeps where people read it: enough for any real cost, too few
#: for binary noise (0.1 + 0.1 + 0.1 = 0.30000000000000004 is shown as 0.3).
DISPLAY_DIGITS = 12


def display_float(value: float) -> float:
    """``value`` as a decision or result shows it (rounded to ``DISPLAY_DIGITS`` significant
    digits); arithmetic keeps the exact value."""
    return float(f"{value:.{DISPLAY_DIGITS}g}") if value else value


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
        """The wire form (docs/ARCHITECTURE.md, envelope ``results``)."""
        if self.wire is not None:
            return self.wire
        out: dict[str, Any] = {
            "stage": self.stage,
            "outcome": self.outcome.value,
            "message": self.message,
            "details": self.details or {},
            "duration_ms": round(self.duration_ms, 3),
            "attempts": self.attempts,
            "cost": display_float(self.cost),
        }
        if self.error_kind is not None:
            out["error"] = self.error_kind
        if self.action is not None:
            out["action"] = self.action.value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RuleResult:
        """A result read back from an envelope. Later stages mostly pass earlier results
        through untouched, so only the outcome and action are checked now; the other fields
        are read from the wire form when first used (``WireResult``)."""
        if type(raw) is not dict:
            raise TypeError(f"a result must be an object, not {type(raw).__name__}")
        outcome = raw.get("outcome")
        if outcome not in OUTCOME_BY_VALUE:
            raise ValueError(f"unknown outcome {outcome!r}")
        action = raw.get("action")
        if action and action not in ROUTE_BY_VALUE:
            raise ValueError(f"unknown action {action!r}")
        result = WireResult.__new__(WireResult)
        result.wire = raw
        result.outcome = OUTCOME_BY_VALUE[outcome]  # looked up anyway, and the field read most
        return result


class WireResult(RuleResult):
    """An earlier stage's result as an envelope carried it: each field is read from the wire
    form on first access (an unset slot falls through to ``__getattr__``) and then kept."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuleResult):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _READERS)

    __hash__ = None  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        read = _READERS.get(name)
        if read is None:
            raise AttributeError(name)
        value = read(self.wire)
        setattr(self, name, value)
        return value


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key, "")
    return value if type(value) is str else str(value)


def _number(raw: dict[str, Any], key: str) -> float:
    value = raw.get(key, 0.0)
    return value if type(value) is float else float(value)


_READERS: dict[str, Any] = {
    "stage": lambda raw: _text(raw, "stage"),
    "outcome": lambda raw: OUTCOME_BY_VALUE[raw["outcome"]],
    "message": lambda raw: _text(raw, "message"),
    "details": lambda raw: raw.get("details") or None,
    "duration_ms": lambda raw: _number(raw, "duration_ms"),
    "attempts": lambda raw: int(raw.get("attempts", 0)),
    "cost": lambda raw: _number(raw, "cost"),
    "error_kind": lambda raw: raw.get("error"),
    "action": lambda raw: ROUTE_BY_VALUE[raw["action"]] if raw.get("action") else None,
}
