"""E-mail syntax validation with ``email-validator`` (syntax only: no DNS lookups)."""

from __future__ import annotations

from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import Field

from stream_engine.core.pii import PiiInputs
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
    field: str = field_param(description="the field holding the e-mail address")
    allow_disposable: bool = Field(
        True, description="false: an address at one of disposable_domains FAILs"
    )
    disposable_domains: list[str] = Field(
        default_factory=lambda: list(DISPOSABLE_DOMAINS),
        description="the domains allow_disposable: false refuses (default: ten well-known "
        "throw-away mail domains)",
    )
    allow_smtputf8: bool = Field(
        True, description="accept non-ASCII characters in the local part (SMTPUTF8)"
    )
    write_normalized: bool = Field(
        False, description="write the validator's normalized address back to the field"
    )


@register_rule("EmailFormat")
class EmailFormat(ConfiguredRule[EmailFormatParams]):
    """FAIL unless the field is a syntactically valid address (and, if asked, not disposable).
    The domain and the validator's explanation (which may quote part of the address) are in
    the message and details unless the field is a PII field."""

    Params = EmailFormatParams
    #: Whether what the address reveals stays out of messages and details (``learn_pii``).
    _hide = False

    def __init__(self, params: EmailFormatParams) -> None:
        super().__init__(params)
        self._disposable = frozenset(d.lower() for d in params.disposable_domains)

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Hide the domain of a PII address and the validator's words about it."""
        self._hide = pii.hides(self.params.field)
        return []

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
            why = "" if self._hide else f": {exc}"
            return failed(f"{params.field} is not a valid e-mail address{why}")
        domain = info.ascii_domain.lower()
        details = {} if self._hide else {"domain": domain}
        if not params.allow_disposable and domain in self._disposable:
            return failed(f"{params.field} uses a disposable e-mail domain", **details)
        if params.write_normalized:
            ctx.data[params.field] = info.normalized
        return passed("valid e-mail address", **details)
