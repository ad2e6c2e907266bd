"""Deterministic identifiers from hashed fields."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, field_validator

from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import Verdict, failed, passed
from stream_engine.core.rule import RuleContext
from stream_engine.rules.base import (
    ConfiguredRule,
    RuleParams,
    field_param,
    is_missing,
    register_rule,
)


class DeterministicIdParams(RuleParams):
    field: str = field_param("id_field", default="id", description="the field the id is written to")
    hash_fields: list[str] = Field(
        min_length=1, description="the fields whose values are hashed into the id, in order"
    )
    template: str = Field(
        "{hash}", description="the id's text around the hash, e.g. CUST-{hash}; only {hash}"
    )
    length: int = Field(16, ge=8, le=64, description="how many hex digits of the hash to keep")
    algorithm: Literal["sha256", "sha512", "blake2b"] = Field(
        "sha256", description="the hash function"
    )
    salt: str = Field(
        "",
        description="a secret mixed into the hash (use ${VAR}); without one a hashed PII value "
        "can be found again by trying every possible one",
    )
    require_all: bool = Field(
        True, description="true: FAIL when a hash field is missing; false: hash it as empty"
    )
    normalize: bool = Field(True, description="strip and lower-case each value before hashing")

    @field_validator("template")
    @classmethod
    def _has_hash(cls, value: str) -> str:
        if "{hash}" not in value:
            raise ValueError("the template must contain {hash}")
        try:
            value.format(hash="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{hash}} may appear in the template ({exc})") from None
        return value


@register_rule("DeterministicId")
class DeterministicId(ConfiguredRule[DeterministicIdParams]):
    """Write an id that is the same every time for the same field values (so a replayed or
    duplicated record gets the same id), e.g. ``CUST-{hash}`` over email, phone and ssn."""

    Params = DeterministicIdParams

    def provides(self) -> tuple[str, ...]:
        return (self.params.field,)

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Its message names fields only; but an unsalted hash of a PII value is reversible."""
        hashed = [name for name in self.params.hash_fields if pii.holds(name)]
        if not hashed or self.params.salt:
            return []
        return [
            f"hash_fields: the id hashes PII field(s) {', '.join(hashed)} without a salt: "
            "whoever knows the other fields finds the value again by hashing every possible "
            "one (an SSN has 10^9); set salt: ${VAR}"
        ]

    def evaluate(self, ctx: RuleContext) -> Verdict:
        p = self.params
        missing = [name for name in p.hash_fields if is_missing(ctx.data.get(name))]
        if missing and p.require_all:
            return failed("cannot build the id, missing: " + ", ".join(missing))
        parts = []
        for name in p.hash_fields:
            value = ctx.data.get(name)
            text = "" if value is None else str(value)
            parts.append(text.strip().lower() if p.normalize else text)
        digest = hashlib.new(p.algorithm, "\x1f".join([p.salt, *parts]).encode("utf-8"))
        ctx.data[p.field] = p.template.format(hash=digest.hexdigest()[: p.length].upper())
        return passed(f"set {p.field}")
