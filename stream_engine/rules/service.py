"""Call a configured service, copy fields of its answer into the record, judge it with CEL."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any

from pydantic import Field, field_validator, model_validator

from stream_engine.core.expr import NOW, RESULTS, STATE, Expression, Scope
from stream_engine.core.outcome import Outcome
from stream_engine.core.records import NotJson, record_value
from stream_engine.core.result import Verdict, complete, failed, needs_review, passed
from stream_engine.core.rule import Placed, RuleContext
from stream_engine.core.service import GuardedService
from stream_engine.errors import RuleEvaluationError
from stream_engine.rules.base import CelSource, ConfiguredRule, RuleParams, register_rule


def service_name(value: str) -> str:
    """``kyc`` or seed 000's ``service:kyc`` (also ``service:KYCService:kyc``) → ``kyc``."""
    if value.startswith("service:"):
        return value.split(":")[-1]
    return value


class ServiceCheckParams(RuleParams):
    service: str = Field(
        description="the name of a service in services: (seed 000's service:NAME accepted)"
    )
    request: dict[str, str] = Field(
        default_factory=dict, description="request key → record field it is read from"
    )
    request_fields: list[str] = Field(
        default_factory=list,
        description="record fields sent under their own names (with request and neither: "
        "the whole record is sent)",
    )
    request_static: dict[str, Any] = Field(
        default_factory=dict, description="constant keys and values added to every request"
    )
    response_fields: dict[str, str] = Field(
        default_factory=dict, description="response key → record field its value is copied to"
    )
    details_fields: list[str] = Field(
        default_factory=list, description="response keys copied into the result's details"
    )
    pass_when: CelSource | None = Field(
        None,
        description="CEL over response, data, results and state: PASS when true, else "
        "FAIL (none: any answer PASSes)",
    )
    review_when: CelSource | None = Field(
        None, description="CEL: when true the record goes to review"
    )
    complete_when: CelSource | None = Field(
        None, description="CEL: when true the record ends early, completed"
    )
    fail_message: str | None = Field(
        None, description="the FAIL message (default: names the service and pass_when)"
    )
    copy_on_fail: bool = Field(
        True, description="copy response_fields into the record even when the check FAILs"
    )

    @field_validator("service")
    @classmethod
    def _strip_prefix(cls, value: str) -> str:
        name = service_name(value)
        if not name:
            raise ValueError("name a service")
        return name

    @model_validator(mode="after")
    def _no_overlap(self) -> ServiceCheckParams:
        overlap = set(self.request) & set(self.request_fields)
        if overlap:
            raise ValueError(f"request keys given twice: {', '.join(sorted(overlap))}")
        return self


@register_rule("ServiceCheck")
class ServiceCheck(ConfiguredRule[ServiceCheckParams]):
    """Send chosen record fields to a service; copy ``response_fields`` into the record; PASS
    when ``pass_when`` (CEL over ``response`` and ``data``) holds, else FAIL. ``review_when``
    sends the record to review, ``complete_when`` ends it early as completed."""

    Params = ServiceCheckParams
    inline_safe = True
    may_await = True
    service_params = ("service",)

    def __init__(self, params: ServiceCheckParams) -> None:
        super().__init__(params)
        self._request_map = {**{f: f for f in params.request_fields}, **params.request}
        self._pass = Expression(params.pass_when) if params.pass_when else None
        self._review = Expression(params.review_when) if params.review_when else None
        self._complete = Expression(params.complete_when) if params.complete_when else None

    @classmethod
    def service_names(cls, params: Mapping[str, Any]) -> dict[str, str]:
        """The service the raw params name, with seed 000's prefix taken off."""
        return {p: service_name(name) for p, name in super().service_names(params).items()}

    def provides(self) -> tuple[str, ...]:
        return tuple(self.params.response_fields.values())

    def expressions(self) -> list[Placed]:
        scope = Scope(frozenset({"data", RESULTS, STATE, "response", NOW}))
        named = (("pass_when", self._pass), ("review_when", self._review))
        return [
            ((param,), expression, scope)
            for param, expression in (*named, ("complete_when", self._complete))
            if expression is not None
        ]

    def _request(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self._request_map:
            body = dict(data)
        else:
            body = {key: data.get(field) for key, field in self._request_map.items()}
        body.update(self.params.request_static)
        return body

    def evaluate(self, ctx: RuleContext) -> Verdict | Coroutine[Any, Any, Verdict]:
        """A verdict at once when the service answers from memory (no coroutine, no timer);
        otherwise a coroutine that awaits the call."""
        guarded = self.services[self.params.service]
        request = self._request(ctx.data)
        if isinstance(guarded, GuardedService) and guarded.immediate:
            try:
                response = guarded.answer_now(request)
            except RuleEvaluationError as exc:
                if not guarded.retry.should_retry(exc.kind, 1):
                    raise
                return self._judged(ctx, guarded.call(request, failed_attempts=1))
            return self._judge(ctx, response)
        return self._judged(ctx, guarded.call(request))

    async def _judged(
        self, ctx: RuleContext, pending: Coroutine[Any, Any, dict[str, Any]]
    ) -> Verdict:
        return self._judge(ctx, await pending)

    def _judge(self, ctx: RuleContext, response: dict[str, Any]) -> Verdict:
        p = self.params
        extra = {"response": response}
        verdict_ok = self._pass is None or self._pass.is_true(ctx.data, ctx.results, extra, ctx.now)
        if verdict_ok or p.copy_on_fail:
            for key, field in p.response_fields.items():
                if key in response:
                    ctx.data[field] = _carried(p.service, key, response[key])
        details = {
            key: _carried(p.service, key, response[key])
            for key in p.details_fields
            if key in response
        }
        if self._complete is not None and self._complete.is_true(
            ctx.data, ctx.results, extra, ctx.now
        ):
            return complete(f"{p.service}: completed early", **details)
        if self._review is not None and self._review.is_true(ctx.data, ctx.results, extra, ctx.now):
            outcome = Outcome.PASS if verdict_ok else Outcome.FAIL
            return needs_review(f"{p.service}: needs manual review", outcome, **details)
        if verdict_ok:
            return passed(f"{p.service}: ok", **details)
        return failed(p.fail_message or f"{p.service}: check failed ({p.pass_when})", **details)


def _carried(service: str, key: str, value: Any) -> Any:
    """An answer's value as the next stage will read it; one JSON cannot carry (a simulated
    answer's ``inf``) is an error of the rule, not a silent ``null``."""
    try:
        return record_value(value)
    except NotJson as exc:
        raise RuleEvaluationError(f"{service}: {key} of the answer: {exc}") from None
