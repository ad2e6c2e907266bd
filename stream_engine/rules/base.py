"""What every built-in rule shares: the registry, validated params, and field helpers."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic_core import PydanticUndefined

from stream_engine.config.models import CelSource as CelSource  # rules import it from here
from stream_engine.core.registry import Registry
from stream_engine.core.rule import Rule

ENTRY_POINT_GROUP = "stream_engine.rules"


class RuleParams(BaseModel):
    """Base of every rule's params model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


P = TypeVar("P", bound=RuleParams)


class ConfiguredRule(Rule[P], Generic[P]):
    """A rule built from configuration: ``Params`` validates its ``params:`` block."""

    Params: ClassVar[type[RuleParams]] = RuleParams

    @classmethod
    def from_params(cls, raw: dict[str, Any]) -> ConfiguredRule[Any]:
        """Validate ``raw`` (raises pydantic.ValidationError) and build the rule."""
        return cls(cls.Params.model_validate(raw))  # type: ignore[arg-type]


RULES: Registry[type[ConfiguredRule[Any]]] = Registry("rule", ENTRY_POINT_GROUP)


def register_rule(name: str) -> Any:
    """Class decorator that makes a rule nameable from configuration: ``@register_rule("X")``."""
    return RULES.register(name)


def text_value(data: dict[str, Any], field: str) -> str | None:
    """The field's value when it is a non-blank string, else None."""
    value = data.get(field)
    if isinstance(value, str) and value.strip():
        return value
    return None


def is_missing(value: Any) -> bool:
    """None, or a string that is blank: what ``RequiredFields`` counts as missing."""
    return value is None or (isinstance(value, str) and not value.strip())


#: The spellings of one field where a rule takes a list of them.
ONE_FIELD_KEYS = ("field", "field_name")


def one_field(raw: Any, target: str) -> Any:
    """Params whose one field is written ``field_name: name`` (seed 000 names one field per
    rule) as ``{target: [name]}``; the list spellings are left to the model."""
    if not isinstance(raw, dict):
        return raw
    given = [key for key in ONE_FIELD_KEYS if key in raw]
    if len(given) != 1 or target in raw:
        return raw
    out = dict(raw)
    value = out.pop(given[0])
    out[target] = [value] if isinstance(value, str) else value
    return out


def field_param(*aliases: str, description: str, default: Any = PydanticUndefined) -> Any:
    """A ``field`` param that also accepts seed 000's spelling (``field_name``) and others;
    the description says so."""
    names = ", ".join(("field_name", *aliases))
    return Field(
        default,
        validation_alias=AliasChoices("field", "field_name", *aliases),
        description=f"{description} (also: {names})",
    )
