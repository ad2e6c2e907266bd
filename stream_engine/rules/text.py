"""Preprocessing rules that clean text fields in place."""

from __future__ import annotations

import re
from typing import Any

from pydantic import AliasChoices, Field, model_validator

from stream_engine.core.result import Verdict, passed, skipped
from stream_engine.core.rule import RuleContext
from stream_engine.rules.base import (
    ConfiguredRule,
    RuleParams,
    field_param,
    one_field,
    register_rule,
)

_SPACES = re.compile(r"\s+")


class TrimParams(RuleParams):
    fields: list[str] = Field(
        min_length=1,
        validation_alias=AliasChoices("fields", "field_names"),
        description="the text fields to trim (also: field_names; one field as field or field_name)",
    )
    collapse_spaces: bool = Field(
        False, description="also replace every inner run of whitespace by one space"
    )
    uppercase: list[str] = Field(
        default_factory=list, description="fields to upper-case too (trimmed as well)"
    )
    lowercase: list[str] = Field(
        default_factory=list, description="fields to lower-case too (trimmed as well)"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_field(cls, raw: Any) -> Any:
        return one_field(raw, "fields")


@register_rule("TrimWhitespace")
class TrimWhitespace(ConfiguredRule[TrimParams]):
    """Strip leading and trailing whitespace in many fields; optionally collapse inner runs of
    whitespace, and upper- or lower-case some of the fields (state codes, say)."""

    Params = TrimParams

    def __init__(self, params: TrimParams) -> None:
        super().__init__(params)
        self._upper = frozenset(params.uppercase)
        self._lower = frozenset(params.lowercase)

    def provides(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.params.fields, *self._upper, *self._lower]))

    def evaluate(self, ctx: RuleContext) -> Verdict:
        data = ctx.data
        changed = []
        for name in self.provides():
            value = data.get(name)
            if not isinstance(value, str):
                continue
            clean = value.strip()
            if self.params.collapse_spaces:
                clean = _SPACES.sub(" ", clean)
            if name in self._upper:
                clean = clean.upper()
            elif name in self._lower:
                clean = clean.lower()
            if clean != value:
                data[name] = clean
                changed.append(name)
        if changed:
            return passed(f"trimmed {', '.join(changed)}", trimmed=changed)
        return passed("nothing to trim")


class NormalizeEmailParams(RuleParams):
    field: str = field_param(description="the field holding the e-mail address")
    lowercase: bool = Field(True, description="lower-case the whole address")
    remove_dots: bool = Field(
        False, description="drop the dots of the local part (Gmail ignores them)"
    )
    remove_plus_tag: bool = Field(
        False, description="drop a +tag from the local part (jane+news@ → jane@)"
    )


@register_rule("NormalizeEmail")
class NormalizeEmail(ConfiguredRule[NormalizeEmailParams]):
    """Lowercase an e-mail address (and, if asked, drop dots or a +tag from the local part)."""

    Params = NormalizeEmailParams

    def provides(self) -> tuple[str, ...]:
        return (self.params.field,)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        value: Any = ctx.data.get(self.params.field)
        if not isinstance(value, str) or not value.strip():
            return skipped(f"no {self.params.field} to normalize")
        email = value.strip()
        if self.params.lowercase:
            email = email.lower()
        local, at, domain = email.rpartition("@")
        if at and (self.params.remove_dots or self.params.remove_plus_tag):
            if self.params.remove_plus_tag:
                local = local.split("+", 1)[0]
            if self.params.remove_dots:
                local = local.replace(".", "")
            email = f"{local}@{domain}"
        ctx.data[self.params.field] = email
        return passed("normalized" if email != value else "already normalized")
