"""Field checks: presence, pattern, numeric range, accepted values, length.

Messages name fields, never their values, so they are safe to log even for PII fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from stream_engine.core.pii import PiiInputs
from stream_engine.core.regex import compile_regex
from stream_engine.core.result import Verdict, failed, passed, skipped
from stream_engine.core.rule import RuleContext
from stream_engine.rules.base import (
    ConfiguredRule,
    RuleParams,
    field_param,
    is_missing,
    one_field,
    register_rule,
)

Missing = Literal["fail", "skip", "pass"]


def _when_missing(policy: Missing, field: str) -> Verdict:
    if policy == "fail":
        return failed(f"{field} is missing")
    if policy == "pass":
        return passed(f"{field} is missing, which is allowed")
    return skipped(f"no {field}")


#: The meaning of every ``missing`` param (absent, null or blank text).
MISSING_HELP = (
    "what an absent, null or blank field gives: fail (FAIL), skip (SKIP, so rules that depend "
    "on this one SKIP too) or pass (PASS)"
)


class RequiredFieldsParams(RuleParams):
    fields: list[str] = Field(
        min_length=1,
        validation_alias=AliasChoices("fields", "required_fields"),
        description="the fields that must be present and not null or blank (also: "
        "required_fields; one field as field or field_name)",
    )
    field_descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="field → text shown in the details for that field when it is missing "
        "(default: \"Field 'x' is required\")",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_field(cls, raw: Any) -> Any:
        return one_field(raw, "fields")


@register_rule("RequiredFields")
class RequiredFields(ConfiguredRule[RequiredFieldsParams]):
    """FAIL when any listed field is absent, null or blank; details list what is missing."""

    Params = RequiredFieldsParams

    def evaluate(self, ctx: RuleContext) -> Verdict:
        data = ctx.data
        missing = [name for name in self.params.fields if is_missing(data.get(name))]
        if not missing:
            return passed("all required fields present")
        described = {
            name: self.params.field_descriptions.get(name, f"Field '{name}' is required")
            for name in missing
        }
        return failed(
            "missing required field(s): " + ", ".join(missing),
            missing_fields=missing,
            field_descriptions=described,
        )


def _regex(value: str) -> str:
    compile_regex(value)  # RegexError is a ValueError: reported at the param's location
    return value


class RegexParams(RuleParams):
    field: str = field_param(description="the field whose value (as text) is matched")
    pattern: str | None = Field(
        None, description="the RE2 pattern; give it, or select_by with patterns"
    )
    select_by: str | None = Field(
        None,
        description="a field whose value picks the pattern from patterns "
        "(e.g. the state, for zip codes)",
    )
    patterns: dict[str, str] = Field(
        default_factory=dict,
        description="value of the select_by field → RE2 pattern for records with that value",
    )
    unknown_selector: Missing = Field(
        "pass",
        description="what a record whose select_by value has no pattern gives: fail, skip or pass",
    )
    full_match: bool = Field(
        True, description="true: the whole value must match; false: a match anywhere in it"
    )
    ignore_case: bool = Field(False, description="match letters regardless of case")
    message: str | None = Field(
        None, description="the FAIL message (default: names the field and the pattern)"
    )
    missing: Missing = Field("skip", description=MISSING_HELP)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return None if value is None else _regex(value)

    @field_validator("patterns")
    @classmethod
    def _all_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _regex(pattern)
        return value

    @model_validator(mode="after")
    def _one_way(self) -> RegexParams:
        if (self.pattern is None) == (self.select_by is None):
            raise ValueError("give either pattern, or select_by with patterns")
        if self.select_by is not None and not self.patterns:
            raise ValueError("select_by needs patterns: {value of the selector field: regex}")
        return self


@register_rule("Regex")
class Regex(ConfiguredRule[RegexParams]):
    """FAIL unless the field (as text) matches a regular expression - one ``pattern``, or the
    pattern that ``patterns`` gives for the value of the ``select_by`` field (e.g. the zip code
    pattern of the record's state). Patterns are RE2 (linear time, no lookarounds or
    backreferences)."""

    Params = RegexParams

    def __init__(self, params: RegexParams) -> None:
        super().__init__(params)

        def matcher(pattern: str) -> Callable[[str], bool]:
            compiled = compile_regex(pattern, ignore_case=params.ignore_case)
            return compiled.fullmatch if params.full_match else compiled.search

        self._match = matcher(params.pattern) if params.pattern is not None else None
        self._by_selector = {key: matcher(p) for key, p in params.patterns.items()}

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        value = ctx.data.get(params.field)
        if is_missing(value):
            return _when_missing(params.missing, params.field)
        if isinstance(value, dict | list):
            return failed(f"{params.field} must be text, got {type(value).__name__}")
        match = self._match
        if params.select_by is not None:
            selector = ctx.data.get(params.select_by)
            match = self._by_selector.get(str(selector)) if selector is not None else None
            if match is None:
                return _when_missing(
                    params.unknown_selector, f"pattern for this {params.select_by}"
                )
        assert match is not None
        if match(str(value)):
            return passed(f"{params.field} matches")
        if params.message:
            return failed(params.message)
        if params.select_by is not None:
            return failed(f"{params.field} does not match the pattern for its {params.select_by}")
        return failed(f"{params.field} does not match {params.pattern}")


def as_number(value: Any) -> float | None:
    """A finite number from an int, a float or numeric text; None otherwise (bools excluded)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", ""))
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


class NumericRangeParams(RuleParams):
    field: str = field_param(description="the field holding the number")
    min: float | None = Field(
        None,
        validation_alias=AliasChoices("min", "minimum"),
        description="the lowest accepted value (none: no lower bound; also: minimum)",
    )
    max: float | None = Field(
        None,
        validation_alias=AliasChoices("max", "maximum"),
        description="the highest accepted value (none: no upper bound; also: maximum)",
    )
    exclusive_min: bool = Field(False, description="true: the value must be above min, not equal")
    exclusive_max: bool = Field(False, description="true: the value must be below max, not equal")
    allow_text: bool = Field(
        True, description='accept numeric text ("1,250.50"); false: text FAILs'
    )
    missing: Missing = Field("skip", description=MISSING_HELP)

    @model_validator(mode="after")
    def _bounds(self) -> NumericRangeParams:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        return self


@register_rule("NumericRange")
class NumericRange(ConfiguredRule[NumericRangeParams]):
    """FAIL unless the field is a number within [min, max] (bounds optional, or exclusive)."""

    Params = NumericRangeParams

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        value = ctx.data.get(params.field)
        if is_missing(value):
            return _when_missing(params.missing, params.field)
        if isinstance(value, str) and not params.allow_text:
            return failed(f"{params.field} must be a number, got text")
        number = as_number(value)
        if number is None:
            return failed(f"{params.field} is not a number")
        low, high = params.min, params.max
        if low is not None and (number <= low if params.exclusive_min else number < low):
            bound = "above" if params.exclusive_min else "at least"
            return failed(f"{params.field} must be {bound} {low:g}", minimum=low)
        if high is not None and (number >= high if params.exclusive_max else number > high):
            bound = "below" if params.exclusive_max else "at most"
            return failed(f"{params.field} must be {bound} {high:g}", maximum=high)
        return passed(f"{params.field} in range")


class AcceptedValuesParams(RuleParams):
    field: str = field_param(description="the field whose value is looked up")
    values: list[Any] = Field(
        min_length=1,
        validation_alias=AliasChoices("values", "allowed_values", "allowed_states"),
        description="the accepted values (also: allowed_values, allowed_states)",
    )
    case_sensitive: bool = Field(True, description="false: text is compared regardless of case")
    missing: Missing = Field("fail", description=MISSING_HELP)


@register_rule("AcceptedValues")
class AcceptedValues(ConfiguredRule[AcceptedValuesParams]):
    """FAIL unless the field holds one of the listed values."""

    Params = AcceptedValuesParams

    def __init__(self, params: AcceptedValuesParams) -> None:
        super().__init__(params)
        self._accepted = frozenset(self._fold(v) for v in params.values if _hashable(v))
        self._others = [v for v in params.values if not _hashable(v)]

    def _fold(self, value: Any) -> Any:
        if not self.params.case_sensitive and isinstance(value, str):
            return value.casefold()
        return value

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        value = ctx.data.get(params.field)
        if is_missing(value):
            return _when_missing(params.missing, params.field)
        folded = self._fold(value)
        accepted = folded in self._accepted if _hashable(folded) else folded in self._others
        if accepted:
            return passed(f"{params.field} is accepted")
        return failed(f"{params.field} is not an accepted value", accepted=len(params.values))


def _hashable(value: Any) -> bool:
    return not isinstance(value, dict | list)


class StringLengthParams(RuleParams):
    field: str = field_param(description="the text field whose length is checked")
    min_length: int | None = Field(
        None, ge=0, description="the fewest characters accepted (none: no lower bound)"
    )
    max_length: int | None = Field(
        None, ge=0, description="the most characters accepted (none: no upper bound)"
    )
    strip: bool = Field(True, description="count without leading and trailing whitespace")
    missing: Missing = Field("skip", description=MISSING_HELP)

    @model_validator(mode="after")
    def _bounds(self) -> StringLengthParams:
        if self.min_length is None and self.max_length is None:
            raise ValueError("give min_length, max_length or both")
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ValueError("min_length is greater than max_length")
        return self


@register_rule("StringLength")
class StringLength(ConfiguredRule[StringLengthParams]):
    """FAIL unless the field's text has between min_length and max_length characters. The
    length is in the details unless the field is a PII field."""

    Params = StringLengthParams
    #: Whether the length stays out of the details (set by ``learn_pii``).
    _hide_length = False

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Hide the length of a PII value."""
        self._hide_length = pii.hides(self.params.field)
        return []

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        value = ctx.data.get(params.field)
        if is_missing(value):
            return _when_missing(params.missing, params.field)
        if not isinstance(value, str):
            return failed(f"{params.field} must be text, got {type(value).__name__}")
        length = len(value.strip() if params.strip else value)
        if params.min_length is not None and length < params.min_length:
            message = f"{params.field} is shorter than {params.min_length} characters"
        elif params.max_length is not None and length > params.max_length:
            message = f"{params.field} is longer than {params.max_length} characters"
        else:
            message = ""
        details = {} if self._hide_length else {"length": length}
        return (
            failed(message, **details)
            if message
            else passed(f"{params.field} length ok", **details)
        )
