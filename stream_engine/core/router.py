"""Where a record goes: what one rule result asks for, the route of a stage, the decision
after it and the final decision - the ``Router`` decides all of them, in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from stream_engine.core.decision import Decision, StageOutcome, other_configs
from stream_engine.core.outcome import DeadLetterReason, OnError, OnFail, Outcome, Route, Status
from stream_engine.core.plan import PipelinePlan, RuleSpec
from stream_engine.core.result import RuleResult
from stream_engine.core.state import DeadLetter, RecordState

if TYPE_CHECKING:
    from stream_engine.core.pii import Masker

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


class Router:
    """Decides where a record goes: the route of each stage it ran, the decision after a
    stage (or None: on to the next stage), and the final decision with its reasons."""

    __slots__ = ("_followed", "clock", "masker", "plan", "specs")

    def __init__(
        self,
        plan: PipelinePlan,
        specs: Mapping[str, RuleSpec],
        masker: Masker | None,
        clock: Callable[[], float],
    ) -> None:
        self.plan = plan
        self.specs = specs
        self.masker = masker
        self.clock = clock
        #: The enabled stages another one follows (``PipelinePlan.next_stage``), looked up
        #: once here rather than per record.
        self._followed = frozenset(
            stage.name for stage in plan.active_stages if plan.next_stage(stage.name) is not None
        )

    def route(
        self,
        stage: str,
        pairs: list[tuple[str, RuleResult]],
        dead_letter: DeadLetter | None,
        budget_note: str | None,
    ) -> StageOutcome:
        """The route of one stage on one record, from its results (``pairs``, in evaluation
        order), the dead letter that stopped it and the budget stop, if any."""
        if dead_letter is not None:
            return StageOutcome(stage, Route.DEAD_LETTER, [dead_letter.message], pairs, dead_letter)
        reasons: list[str] = []
        routes: list[Route] = []
        for rule_id, result in pairs:
            if result.outcome is Outcome.PASS and result.action is None:
                continue
            asked = requested_route(self.specs[rule_id], result)
            if asked is not Route.FORWARD:
                routes.append(asked)
                reasons.append(reason_for(rule_id, result))
        route = strongest(routes)
        plan = self.plan
        if budget_note is not None:
            route = strongest((route, plan.budget_route))
            reasons.append(f"budget_exceeded: {budget_note}")
            if route is Route.DEAD_LETTER:
                letter = DeadLetter(DeadLetterReason.BUDGET_EXCEEDED, stage, reasons[-1])
                return StageOutcome(stage, route, reasons, pairs, letter, None, True)
            return StageOutcome(stage, route, reasons, pairs, None, None, True)
        if not plan.stop_on_stage_failure:
            # rejects and reviews are judged at the end (``decide``); a complete still stops
            route = strongest(r for r in routes if r not in (Route.REJECT, Route.REVIEW))
        return StageOutcome(stage, route, reasons, pairs)

    def decide(self, state: RecordState, outcome: StageOutcome) -> Decision | None:
        """The decision after a stage, or None when the record moves on to the next stage."""
        if outcome.route is Route.FORWARD:
            if outcome.stage in self._followed:
                return None
            return self.final(state, outcome.stage)
        if not self.plan.stop_on_stage_failure and outcome.route is not Route.DEAD_LETTER:
            return self.final(state, outcome.stage, outcome)
        return self.decision(
            state, outcome.route, outcome.stage, outcome.reasons, outcome.dead_letter
        )

    def final(
        self, state: RecordState, last_stage: str, stop: StageOutcome | None = None
    ) -> Decision:
        """The decision of a record that ran to the end, or that ``stop`` (a complete or a
        budget stop) ended early. Collecting all violations, every reject or review of every
        stage counts: the strongest route wins and every reason is kept."""
        route: Route = Route.FORWARD
        first_stage: str | None = None
        reasons: list[str] = []
        if not self.plan.stop_on_stage_failure:
            route, first_stage, reasons = deferred_route(self.specs, state.results)
        if stop is not None:
            reasons += [reason for reason in stop.reasons if reason not in reasons]
            if ROUTE_PRIORITY[stop.route] > ROUTE_PRIORITY[route]:
                route, first_stage = stop.route, stop.stage
        return self.decision(state, route, first_stage or last_stage, reasons, None)

    def decision(
        self,
        state: RecordState,
        route: Route,
        stage: str,
        reasons: list[str],
        dead_letter: DeadLetter | None,
    ) -> Decision:
        """The ``Decision`` of a record routed ``route`` by ``stage``, with its reasons."""
        plan = self.plan
        masker = self.masker
        return Decision(
            state=state,
            status=ROUTE_STATUS[route],
            decided_by_stage=stage,
            reasons=reasons,
            failed_rules=failed_rules(self.specs, state.results),
            decided_at=self.clock(),
            pipeline=plan.name,
            config_version=plan.version,
            config_hash=plan.config_hash,
            budget=plan.budget,
            dead_letter=dead_letter,
            data=masker.data(state.data) if masker is not None and masker.mask_decisions else None,
            foreign_configs=other_configs(state.audit, plan.config_hash),
        )
