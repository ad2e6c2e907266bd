"""EmailFormat: syntax validation (no DNS), disposable domains, normalised write-back."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules.email import DISPOSABLE_DOMAINS, EmailFormat


def run(rule: Any, data: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results={})
    return rule.evaluate(ctx), ctx.data


@pytest.mark.parametrize(
    ("address", "domain"),
    [
        ("ada@example.com", "example.com"),
        ("ada.lovelace+tag@mail.example.co.uk", "mail.example.co.uk"),
        ("Ada@Example.COM", "example.com"),
        ("ü@bücher.de", "xn--bcher-kva.de"),
    ],
)
def test_a_valid_address_passes_and_reports_its_ascii_domain(address: str, domain: str):
    rule = EmailFormat.from_params({"field": "email"})
    verdict, _ = run(rule, {"email": address})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"domain": domain}


@pytest.mark.parametrize(
    "address",
    ["plainaddress", "a@@example.com", "@example.com", "ada@", "ada@localhost", "a b@example.com"],
)
def test_an_invalid_address_fails_with_the_reason(address: str):
    rule = EmailFormat.from_params({"field": "email"})
    verdict, _ = run(rule, {"email": address})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message.startswith("email is not a valid e-mail address: ")
    assert len(verdict.message) > len("email is not a valid e-mail address: ")


def test_a_disposable_domain_is_refused_when_allow_disposable_is_false():
    rule = EmailFormat.from_params({"field": "email", "allow_disposable": False})
    verdict, _ = run(rule, {"email": "someone@Mailinator.com"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "email uses a disposable e-mail domain"
    assert verdict.details == {"domain": "mailinator.com"}


def test_a_disposable_domain_is_accepted_by_default():
    rule = EmailFormat.from_params({"field": "email"})
    verdict, _ = run(rule, {"email": "someone@mailinator.com"})
    assert verdict.outcome is Outcome.PASS


def test_every_built_in_disposable_domain_is_refused():
    rule = EmailFormat.from_params({"field": "email", "allow_disposable": False})
    for domain in DISPOSABLE_DOMAINS:
        verdict, _ = run(rule, {"email": f"x@{domain}"})
        assert verdict.outcome is Outcome.FAIL, domain


def test_a_custom_disposable_list_replaces_the_built_in_one_case_insensitively():
    rule = EmailFormat.from_params(
        {"field": "email", "allow_disposable": False, "disposable_domains": ["Burner.Example"]}
    )
    assert run(rule, {"email": "x@burner.example"})[0].outcome is Outcome.FAIL
    assert run(rule, {"email": "x@mailinator.com"})[0].outcome is Outcome.PASS


def test_an_ordinary_domain_passes_when_disposable_domains_are_refused():
    rule = EmailFormat.from_params({"field": "email", "allow_disposable": False})
    verdict, _ = run(rule, {"email": "ada@example.com"})
    assert verdict.outcome is Outcome.PASS


@pytest.mark.parametrize("value", [42, 4.2, True, ["ada@example.com"], {"a": "b"}])
def test_a_non_string_value_fails_naming_its_type(value: Any):
    rule = EmailFormat.from_params({"field": "email"})
    verdict, _ = run(rule, {"email": value})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == f"email must be text, got {type(value).__name__}"


@pytest.mark.parametrize("data", [{}, {"email": None}, {"email": ""}])
def test_an_absent_or_empty_value_skips(data: dict[str, Any]):
    rule = EmailFormat.from_params({"field": "email"})
    verdict, _ = run(rule, data)
    assert verdict.outcome is Outcome.SKIP


def test_the_record_is_left_alone_unless_write_normalized_is_set():
    keep = EmailFormat.from_params({"field": "email"})
    write = EmailFormat.from_params({"field": "email", "write_normalized": True})
    _, kept = run(keep, {"email": "Ada@Example.COM"})
    _, written = run(write, {"email": "Ada@Example.COM"})
    assert kept["email"] == "Ada@Example.COM"
    assert written["email"] == "Ada@example.com"


def test_an_internationalised_local_part_fails_when_smtputf8_is_not_allowed():
    rule = EmailFormat.from_params({"field": "email", "allow_smtputf8": False})
    verdict, _ = run(rule, {"email": "ü@example.com"})
    assert verdict.outcome is Outcome.FAIL


def test_email_format_rejects_unknown_params():
    with pytest.raises(ValidationError):
        EmailFormat.from_params({"field": "email", "check_dns": True})
