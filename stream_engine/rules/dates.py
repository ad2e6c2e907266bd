"""Date rules: parse a date of birth and check an age range."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import AliasChoices, Field

from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import Verdict, failed, passed, skipped
from stream_engine.core.rule import RuleContext
from stream_engine.rules.base import ConfiguredRule, RuleParams, field_param, register_rule

ISO_DATE = "%Y-%m-%d"
DEFAULT_FORMATS = (ISO_DATE, "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d")


def _iso_shaped(text: str) -> bool:
    """``YYYY-MM-DD`` in ASCII digits: the one shape where ``date.fromisoformat`` and
    ``strptime(text, "%Y-%m-%d")`` agree on every input."""
    return (
        len(text) == 10
        and text.isascii()
        and text[4] == "-"
        and text[7] == "-"
        and (text[:4] + text[5:7] + text[8:]).isdigit()
    )


def parse_date(value: Any, formats: tuple[str, ...] | list[str]) -> date | None:
    """A date from text in one of ``formats`` (ISO date-times accepted too); None if none fit."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    for fmt in formats:
        if fmt == ISO_DATE and _iso_shaped(text):
            try:
                return date.fromisoformat(text)  # strptime's answer, without its regex machinery
            except ValueError:
                pass
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def age_on(born: date, today: date) -> int:
    """Whole years between ``born`` and ``today`` (a birthday counts on the day itself)."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class MinimumAgeParams(RuleParams):
    field: str = field_param("date_field", description="the field holding the date of birth")
    minimum_age: int = Field(
        ge=0,
        le=150,
        validation_alias=AliasChoices("minimum_age", "min_age"),
        description="the youngest accepted age in whole years (also: min_age)",
    )
    maximum_age: int | None = Field(
        None, ge=0, le=200, description="the oldest accepted age (none: no upper bound)"
    )
    formats: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FORMATS),
        min_length=1,
        description="strptime formats tried in order (ISO date-times are accepted too)",
    )
    as_of: date | None = Field(
        None, description="the day ages are computed on (none: the decision date, UTC)"
    )
    age_field: str | None = Field(
        None, description="a field to write the computed age to (none: not written)"
    )
    verification_strict: bool = Field(
        True,
        description="true: a missing, unparsable or future date FAILs; false: it SKIPs",
    )


@register_rule("MinimumAge")
class MinimumAge(ConfiguredRule[MinimumAgeParams]):
    """Parse a date of birth and FAIL below ``minimum_age`` (or above ``maximum_age``).
    Strict (the default): an unparsable or future date FAILs; otherwise it SKIPs. The age is
    in the message and details unless the date is a PII field: an age next to the decision's
    time narrows the date of birth down to days (``pii.reveal_derived`` shows it anyway)."""

    Params = MinimumAgeParams
    #: Whether the age stays out of messages and details (set by ``learn_pii``).
    _hide_age = False

    def provides(self) -> tuple[str, ...]:
        return (self.params.age_field,) if self.params.age_field else ()

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Hide the age of a PII date; warn when ``age_field`` would carry it unprotected."""
        self._hide_age = pii.hides(self.params.field)
        age_field = self.params.age_field
        if self._hide_age and age_field and not pii.hides(age_field):
            return [
                f"age_field: '{age_field}' holds the age derived from PII field "
                f"'{self.params.field}' and is not protected (decisions' data, later rules' "
                "messages): list it in pii_fields"
            ]
        return []

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        value = ctx.data.get(params.field)
        if value is None or value == "":
            return (
                failed(f"no {params.field}")
                if params.verification_strict
                else skipped(f"no {params.field}")
            )
        born = parse_date(value, params.formats)
        today = params.as_of or ctx.now.date()  # the decision time: `now` in test cases
        if born is None or born > today:
            problem = "is not a date" if born is None else "is in the future"
            message = f"{params.field} {problem}"
            return failed(message) if params.verification_strict else skipped(message)
        age = age_on(born, today)
        if params.age_field:
            ctx.data[params.age_field] = age
        if age < params.minimum_age:
            message = f"applicant is under {params.minimum_age}"
        elif params.maximum_age is not None and age > params.maximum_age:
            message = f"applicant is over {params.maximum_age}"
        elif self._hide_age:
            return passed(f"applicant is at least {params.minimum_age}")
        else:
            return passed(f"age {age} is at least {params.minimum_age}", age=age)
        return failed(message) if self._hide_age else failed(message, age=age)
