"""The service registry and the base class of configurable services."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from stream_engine.core.registry import Registry
from stream_engine.core.rule import Placed

ENTRY_POINT_GROUP = "stream_engine.services"


class ServiceParams(BaseModel):
    """Base of every service's params model."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfiguredService:
    """A service built from a ``services:`` entry. Subclasses implement ``call``; ``close``
    releases connections when the pipeline stops."""

    Params: ClassVar[type[ServiceParams]] = ServiceParams
    #: False for services that answer without waiting (no I/O, no sleep): no timer needed.
    may_suspend: bool = True

    def __init__(self, name: str, params: Any) -> None:
        self.name = name
        self.params = params

    @classmethod
    def from_params(cls, name: str, raw: dict[str, Any]) -> ConfiguredService:
        """Validate ``raw`` (raises pydantic.ValidationError) and build the service."""
        return cls(name, cls.Params.model_validate(raw))

    def warnings(self) -> list[tuple[str, str]]:
        """Valid but risky params, as (param, message) pairs that ``validate`` prints; the
        messages never contain a secret."""
        return []

    def expressions(self) -> list[Placed]:
        """The service's CEL expressions with their places under ``params`` and scopes,
        checked when the configuration loads. The default: none."""
        return []

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release resources; the default has none."""


SERVICES: Registry[type[ConfiguredService]] = Registry("service", ENTRY_POINT_GROUP)


def register_service(name: str) -> Any:
    """Class decorator that makes a service nameable from configuration."""
    return SERVICES.register(name)
