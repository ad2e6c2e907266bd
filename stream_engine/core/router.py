"""Route decisions: what one rule result asks for, and where a record goes after a stage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stream_engine.core.outcome import OnError, OnFail, Outcome, Route, Status
from stream_engine.core.plan import RuleSpec
from stream_engine.core.result import RuleResult

#: Higher wins when a stage's results ask for different routes.
ROUTE_PRIORITY = {
    Route.FORWARD: 0,
    Route.COMPLETE: 1,
    Route.REVIEW: 2,
    Route.REJECT: 3,
    Route.DEAD_LETTER: 4,
}

#: The ``on_error`` policies under which an ERROR counts as a failure of the rule.
_ERROR_FAILS = frozenset({OnError.FAIL, OnError.REVIEW})

_ON_FAIL_ROUTE = {
    OnFail.REJECT: Route.REJECT,
    OnFail.REVIEW: Route.REVIEW,
    OnFail.COMPLETE: Route.COMPLETE,
    OnFail.CONTINUE: Route.FORWARD,
}


def counts_as_failure(spec: RuleSpec, result: RuleResult) -> bool:
    """A FAIL, or an ERROR whose ``on_error`` is ``fail`` or ``review``."""
    return result.outcome is Outcome.FAIL or (
        result.outcome is Outcome.ERROR and spec.on_error in _ERROR_FAILS
    )


def requested_route(spec: RuleSpec, result: RuleResult) -> Route:
    """The route one result asks for: its explicit action, else review for an ERROR with
    ``on_error: review``, else its ``on_fail`` if it failed."""
    if result.action is not None:
        return result.action
    if result.outcome is Outcome.ERROR and spec.on_error is OnError.REVIEW:
        return Route.REVIEW
    if counts_as_failure(spec, result):
        return _ON_FAIL_ROUTE[spec.on_fail]
    return Route.FORWARD


def strongest(routes: Iterable[Route]) -> Route:
    """The route that wins among several (dead_letter > reject > review > complete > forward)."""
    return max(routes, key=ROUTE_PRIORITY.__getitem__, default=Route.FORWARD)


def reason_for(rule_id: str, result: RuleResult) -> str:
    """A human-readable reason line for a result that stopped or marked the record."""
    message = result.message or result.outcome.value.lower()
    return f"{rule_id}: {message}"


def failed_rules(
    specs: Mapping[str, RuleSpec], results: Mapping[str, RuleResult]
) -> dict[str, list[str]]:
    """Every failed rule of the record, grouped by stage, in evaluation order."""
    by_stage: dict[str, list[str]] = {}
    for rule_id, result in results.items():
        if result.outcome is Outcome.PASS or result.outcome is Outcome.SKIP:
            continue
        spec = specs.get(rule_id)
        if spec is not None and counts_as_failure(spec, result):
            by_stage.setdefault(result.stage, []).append(rule_id)
    return by_stage


def deferred_route(
    specs: Mapping[str, RuleSpec], results: Mapping[str, RuleResult]
) -> tuple[Route, str | None, list[str]]:
    """With ``stop_on_stage_failure: false`` a record runs to the end and is then judged on
    every result: the strongest reject/review, the stage that first asked for it, the reasons."""
    route = Route.FORWARD
    first_stage: str | None = None
    reasons: list[str] = []
    for rule_id, result in results.items():
        spec = specs.get(rule_id)
        if spec is None:
            continue
        asked = requested_route(spec, result)
        if asked in (Route.REJECT, Route.REVIEW):
            reasons.append(reason_for(rule_id, result))
            first_stage = first_stage or result.stage
            route = strongest((route, asked))
    return route, first_stage, reasons


ROUTE_STATUS = {
    Route.FORWARD: Status.APPROVED,
    Route.REJECT: Status.REJECTED,
    Route.REVIEW: Status.REVIEW,
    Route.COMPLETE: Status.COMPLETED,
    Route.DEAD_LETTER: Status.DEAD_LETTER,
}
