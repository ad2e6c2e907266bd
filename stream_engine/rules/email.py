"""E-mail syntax validation with ``email-validator`` (syntax only: no DNS lookups)."""

from __future__ import annotations

from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import Field

from stream_engine.core.result import Verdict, failed, passed, skipped
from stream_engine.core.rule import RuleContext
from stream_engine.rules.base import ConfiguredRule, RuleParams, field_param, register_rule

DISPOSABLE_DOMAINS = (
    "10minutemail.com",
    "guerrillamail.com",
    "mailinator.com",
    "maildrop.cc",
    "sharklasers.com",
    "tempmail.com",
    "temp-mail.org",
    "throwawaymail.com",
    "trashmail.com",
    "yopmail.com",
)


class EmailFormatParams(RuleParams):
    field: str = field_param()
    allow_disposable: bool = True
    disposable_domains: list[str] = Field(default_factory=lambda: list(DISPOSABLE_DOMAINS))
    allow_smtputf8: bool = True
    write_normalized: bool = False


@register_rule("EmailFormat")
class EmailFormat(ConfiguredRule[EmailFormatParams]):
    """FAIL unless the field is a syntactically valid address (and, if asked, not disposable)."""

    Params = EmailFormatParams

    def __init__(self, params: EmailFormatParams) -> None:
        super().__init__(params)
        self._disposable = frozenset(d.lower() for d in params.disposable_domains)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        params = self.params
        value: Any = ctx.data.get(params.field)
        if value is None or value == "":
            return skipped(f"no {params.field}")
        if not isinstance(value, str):
            return failed(f"{params.field} must be text, got {type(value).__name__}")
        try:
            info = validate_email(
                value, check_deliverability=False, allow_smtputf8=params.allow_smtputf8
            )
        except EmailNotValidError as exc:
            return failed(f"{params.field} is not a valid e-mail address: {exc}")
        domain = info.ascii_domain.lower()
        if not params.allow_disposable and domain in self._disposable:
            return failed(f"{params.field} uses a disposable e-mail domain", domain=domain)
        if params.write_normalized:
            ctx.data[params.field] = info.normalized
        return passed("valid e-mail address", domain=domain)
