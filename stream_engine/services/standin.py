"""The stand-in for a configured service in a configuration test case (``stream-engine
test``): it answers what the case says, fails, or times out, behind the service's own timeout,
retry and circuit breaker. No pipeline file can name it: it is not in ``SERVICES``."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import model_validator

from stream_engine.core.registry import Registry
from stream_engine.errors import ServiceError
from stream_engine.services.base import SERVICES, ConfiguredService, ServiceParams

#: The service class a case's ``services`` entry compiles to; no pipeline file can name it.
STAND_IN_CLASS = "stream-engine test stand-in"

#: The keys a ``services`` entry of a case may use to fail or to answer explicitly; a mapping
#: with any other key is the answer itself.
STAND_IN_KEYS = frozenset({"answer", "error", "timeout"})


class StandInParams(ServiceParams):
    """What a service does in one case: answer ``answer``, fail with ``error``, or time out."""

    answer: dict[str, Any] | None = None
    error: str | None = None
    timeout: Literal[True] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """A mapping without the reserved keys is the answer itself (``{verified: false}``)."""
        if isinstance(value, dict) and not set(value) <= STAND_IN_KEYS:
            return {"answer": value}
        return value

    @model_validator(mode="after")
    def _one(self) -> StandInParams:
        given = [k for k in ("answer", "error", "timeout") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of answer, error or timeout: true")
        return self


class StandInService(ConfiguredService):
    """A case's stand-in for a configured service, behind that service's own timeout, retry
    and circuit breaker. It answers at once: a timeout is raised, not waited for."""

    Params = StandInParams
    may_suspend = False

    def __init__(self, name: str, params: StandInParams) -> None:
        super().__init__(name, params)
        self.params: StandInParams = params

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """The case's answer; its error as a ``ServiceError``; its timeout as ``TimeoutError``
        (which the guard reports exactly as a service that ran past ``timeout_s``)."""
        if self.params.timeout:
            raise TimeoutError("stand-in timeout")
        if self.params.error is not None:
            raise ServiceError(f"service '{self.name}': {self.params.error}")
        return copy.deepcopy(self.params.answer or {})


def case_registry() -> Registry[Any]:
    """The service classes a case's pipeline compiles with: the built-in and plugged-in ones,
    and the stand-in (which a pipeline file cannot name: it is not in ``SERVICES``)."""
    registry: Registry[Any] = Registry("service")
    for name in SERVICES.names():
        registry.add(name, SERVICES.get(name))
    registry.add(STAND_IN_CLASS, StandInService)
    return registry
