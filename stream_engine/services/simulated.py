"""A deterministic simulated service for demos and tests: its answers are CEL expressions over
the request and a per-request pseudo-random number, so the same request always gets the same
answer; latency and a failure rate are configurable."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import orjson
from pydantic import Field, field_validator

from stream_engine.config.models import CelText
from stream_engine.core.expr import Expression, Scope
from stream_engine.core.records import NotJson, record_value
from stream_engine.core.rule import Placed
from stream_engine.errors import ExpressionError, ServiceError
from stream_engine.services.base import ConfiguredService, ServiceParams, register_service


class SimulatedParams(ServiceParams):
    latency_ms: float = Field(0.0, ge=0, description="how long each answer takes")
    jitter_ms: float = Field(
        0.0, ge=0, description="the latency varies by up to this much either way"
    )
    fail_rate: float = Field(
        0.0, ge=0, le=1, description="the share of calls that fail with a service error (0-1)"
    )
    seed: int = Field(0, description="seeds rand and the failures: same seed, same answers")
    key_fields: list[str] = Field(
        default_factory=list,
        description="request keys rand is drawn from (none: the whole request)",
    )
    fields: dict[str, CelText] = Field(
        default_factory=dict,
        description="response key → CEL over request and rand (a number in [0, 1))",
    )
    error_message: str = Field("simulated failure", description="the text of a simulated failure")

    @field_validator("fields")
    @classmethod
    def _compile(cls, value: dict[str, CelText]) -> dict[str, CelText]:
        for name, source in value.items():
            try:
                Expression(source)
            except ExpressionError as exc:
                raise ValueError(f"fields.{name}: {exc}") from None
        return value


def _digest(seed: int, key: Any) -> bytes:
    return hashlib.blake2b(
        orjson.dumps([seed, key], option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


def _unit(base: bytes, salt: bytes) -> float:
    """A number in [0, 1) from a request's digest and a field name (stable across runs)."""
    digest = hashlib.blake2b(salt, digest_size=8, key=base).digest()
    return int.from_bytes(digest, "big") / 2**64


@register_service("SimulatedService")
class SimulatedService(ConfiguredService):
    """Response fields are CEL over ``request`` and ``rand`` — a number in [0, 1) drawn from the
    seed, the field's name and the request's ``key_fields`` (all fields when none are named)."""

    Params = SimulatedParams

    def __init__(self, name: str, params: SimulatedParams) -> None:
        super().__init__(name, params)
        self.params: SimulatedParams = params
        self._fields = [
            (field, Expression(source), field.encode()) for field, source in params.fields.items()
        ]
        self._rng = random.Random(params.seed)
        self.calls = 0
        self.may_suspend = params.latency_ms > 0 or params.jitter_ms > 0

    def expressions(self) -> list[Placed]:
        """The answer's CEL fields, each over ``request``, ``response`` (the fields before
        it) and ``rand``; checked when the configuration loads."""
        scope = Scope(frozenset({"request", "response", "rand"}))
        return [(("fields", field), expression, scope) for field, expression, _ in self._fields]

    def _key(self, request: dict[str, Any]) -> Any:
        if self.params.key_fields:
            return [request.get(name) for name in self.params.key_fields]
        return request

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer after the configured latency, or raise ``ServiceError`` at ``fail_rate``."""
        self.calls += 1
        p = self.params
        delay = p.latency_ms + (self._rng.uniform(-p.jitter_ms, p.jitter_ms) if p.jitter_ms else 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        return self.answer(request)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer without the latency (what ``call`` returns after it): ``ServiceError``
        at ``fail_rate``."""
        p = self.params
        if p.fail_rate and self._rng.random() < p.fail_rate:
            raise ServiceError(f"{self.name}: {p.error_message}")
        base = _digest(p.seed, self._key(request))
        response: dict[str, Any] = {}
        env: dict[str, Any] = {"request": request, "response": response}
        for field, expression, salt in self._fields:
            env["rand"] = _unit(base, salt)
            try:
                response[field] = record_value(expression.evaluate_env(env))
            except (ExpressionError, NotJson) as exc:
                raise ServiceError(f"{self.name}: field {field}: {exc}") from exc
        return response
