"""Phone rules on Google's libphonenumber (the ``phonenumbers`` package)."""

from __future__ import annotations

from typing import Any, Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat
from pydantic import AliasChoices, Field

from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import Verdict, failed, passed, skipped
from stream_engine.core.rule import RuleContext
from stream_engine.rules.base import (
    ConfiguredRule,
    RuleParams,
    field_param,
    register_rule,
    text_value,
)

_FORMATS = {
    "E164": PhoneNumberFormat.E164,
    "INTERNATIONAL": PhoneNumberFormat.INTERNATIONAL,
    "NATIONAL": PhoneNumberFormat.NATIONAL,
}


def parse_phone(ctx: RuleContext, raw: str, region: str) -> PhoneNumber | None:
    """Parse once per record and value: the normalize and validate rules share the result."""
    key = ("phone", raw, region)
    if key in ctx.memo:
        parsed: PhoneNumber | None = ctx.memo[key]
        return parsed
    try:
        number: PhoneNumber | None = phonenumbers.parse(raw, region)
    except NumberParseException:
        number = None
    ctx.memo[key] = number
    return number


class _PhoneParams(RuleParams):
    field: str = field_param(description="the field holding the phone number")
    country_code: str = Field(
        "US",
        min_length=2,
        max_length=2,
        validation_alias=AliasChoices("country_code", "region", "default_region"),
        description="the ISO 3166 region of numbers written without +country prefix "
        "(also: region, default_region)",
    )


class NormalizePhoneParams(_PhoneParams):
    format: Literal["E164", "INTERNATIONAL", "NATIONAL"] = Field(
        "E164",
        description="how the number is rewritten: E164 (+14155550123), INTERNATIONAL "
        "(+1 415-555-0123) or NATIONAL ((415) 555-0123)",
    )
    on_invalid: Literal["skip", "fail"] = Field(
        "skip",
        description="what a value that is not a possible phone number gives (it is left as it "
        "is): skip or fail",
    )


@register_rule("NormalizePhone")
class NormalizePhone(ConfiguredRule[NormalizePhoneParams]):
    """Rewrite a phone number in E.164 (or another format); unparsable numbers are left as they
    are and SKIP (or FAIL, with ``on_invalid: fail``) so a validation rule can judge them."""

    Params = NormalizePhoneParams

    def provides(self) -> tuple[str, ...]:
        return (self.params.field,)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        raw = text_value(ctx.data, params.field)
        if raw is None:
            return skipped(f"no {params.field} to normalize")
        number = parse_phone(ctx, raw, params.country_code)
        if number is None or not phonenumbers.is_possible_number(number):
            message = f"{params.field} is not a phone number"
            return failed(message) if params.on_invalid == "fail" else skipped(message)
        formatted = phonenumbers.format_number(number, _FORMATS[params.format])
        ctx.data[params.field] = formatted
        ctx.memo[("phone", formatted, params.country_code)] = number
        return passed("normalized" if formatted != raw else "already normalized")


class PhoneFormatParams(_PhoneParams):
    allow_extensions: bool = Field(False, description="accept a number with an extension")
    allowed_regions: list[str] | None = Field(
        None, description="the ISO regions a number may belong to (none: any)"
    )
    allowed_types: list[Literal["mobile", "fixed_line", "fixed_line_or_mobile", "voip"]] | None = (
        Field(None, description="the line types accepted (none: any)")
    )


_TYPES: dict[int, str] = {
    phonenumbers.PhoneNumberType.MOBILE: "mobile",
    phonenumbers.PhoneNumberType.FIXED_LINE: "fixed_line",
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    phonenumbers.PhoneNumberType.VOIP: "voip",
}


@register_rule("PhoneFormat")
class PhoneFormat(ConfiguredRule[PhoneFormatParams]):
    """FAIL unless the field holds a valid phone number (libphonenumber's full validation).
    A refused number's region or type is named unless the field is a PII field."""

    Params = PhoneFormatParams
    #: Whether what the number reveals stays out of messages and details (``learn_pii``).
    _hide = False

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Hide the region and type of a PII number."""
        self._hide = pii.hides(self.params.field)
        return []

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        value: Any = ctx.data.get(params.field)
        if value is None or value == "":
            return skipped(f"no {params.field}")
        if not isinstance(value, str):
            return failed(f"{params.field} must be text, got {type(value).__name__}")
        number = parse_phone(ctx, value, params.country_code)
        if number is None:
            return failed(f"{params.field} is not a phone number")
        if not phonenumbers.is_valid_number(number):
            return failed(f"{params.field} is not a valid phone number")
        if number.extension and not params.allow_extensions:
            return failed(f"{params.field} has an extension, which is not allowed")
        if params.allowed_regions is not None:
            region = phonenumbers.region_code_for_number(number)
            if region not in params.allowed_regions:
                if self._hide:
                    return failed(f"{params.field} is not from an allowed region")
                return failed(f"{params.field} is a {region} number", region=region)
        if params.allowed_types is not None:
            kind = _TYPES.get(phonenumbers.number_type(number), "other")
            if kind not in params.allowed_types:
                if self._hide:
                    return failed(f"{params.field} is not of an allowed type")
                return failed(f"{params.field} is a {kind} number", type=kind)
        return passed("valid phone number")
