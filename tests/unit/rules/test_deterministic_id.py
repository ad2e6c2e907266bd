"""DeterministicId: the same field values always give the same id."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules.ids import DeterministicId

PERSON = {"email": "ada@example.com", "phone": "+12125551234", "ssn": "123-45-6789"}


def run(rule: Any, data: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results={})
    return rule.evaluate(ctx), ctx.data


def id_rule(**params: Any) -> Any:
    return DeterministicId.from_params(
        {"field": "customer_id", "hash_fields": ["email", "phone", "ssn"], **params}
    )


def id_of(rule: Any, data: dict[str, Any]) -> str:
    verdict, record = run(rule, dict(data))
    assert verdict.outcome is Outcome.PASS
    value: str = record["customer_id"]
    return value


def test_the_same_input_gives_the_same_id():
    assert id_of(id_rule(), PERSON) == id_of(id_rule(), dict(PERSON))


def test_the_id_does_not_depend_on_other_fields_or_key_order():
    reordered = {"ssn": PERSON["ssn"], "name": "Ada", **PERSON}
    assert id_of(id_rule(), reordered) == id_of(id_rule(), PERSON)


@pytest.mark.parametrize("field", ["email", "phone", "ssn"])
def test_a_different_input_gives_a_different_id(field: str):
    changed = {**PERSON, field: PERSON[field] + "0"}
    assert id_of(id_rule(), changed) != id_of(id_rule(), PERSON)


def test_values_are_not_simply_concatenated():
    # "ab" + "c" and "a" + "bc" must not collide.
    rule = DeterministicId.from_params({"hash_fields": ["x", "y"]})
    first = run(rule, {"x": "ab", "y": "c"})[1]["id"]
    second = run(rule, {"x": "a", "y": "bc"})[1]["id"]
    assert first != second


def test_the_default_id_is_sixteen_upper_case_hex_digits_of_sha256():
    _, data = run(DeterministicId.from_params({"hash_fields": ["email"]}), {"email": "a@b.c"})
    expected = hashlib.sha256(b"\x1fa@b.c").hexdigest()[:16].upper()
    assert data["id"] == expected
    assert re.fullmatch(r"[0-9A-F]{16}", data["id"])


def test_the_template_wraps_the_hash():
    value = id_of(id_rule(template="CUST-{hash}-X"), PERSON)
    assert re.fullmatch(r"CUST-[0-9A-F]{16}-X", value)
    assert value[5:-2] == id_of(id_rule(), PERSON)


@pytest.mark.parametrize("length", [8, 32, 64])
def test_length_sets_the_number_of_hash_digits(length: int):
    assert len(id_of(id_rule(length=length), PERSON)) == length


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "blake2b"])
def test_each_algorithm_is_deterministic_and_distinct(algorithm: str):
    value = id_of(id_rule(algorithm=algorithm), PERSON)
    assert value == id_of(id_rule(algorithm=algorithm), PERSON)
    others = {id_of(id_rule(algorithm=a), PERSON) for a in ("sha256", "sha512", "blake2b")}
    assert len(others) == 3


def test_a_missing_field_fails_with_require_all_and_names_it():
    verdict, data = run(id_rule(), {"email": "ada@example.com", "phone": "  "})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "cannot build the id, missing: phone, ssn"
    assert "customer_id" not in data


def test_a_missing_field_is_hashed_as_empty_without_require_all():
    rule = id_rule(require_all=False)
    partial = id_of(rule, {"email": "ada@example.com"})
    explicit_empty = id_of(rule, {"email": "ada@example.com", "phone": "", "ssn": None})
    assert partial == explicit_empty
    assert partial != id_of(rule, PERSON)


def test_the_salt_changes_the_id():
    plain = id_of(id_rule(), PERSON)
    salted = id_of(id_rule(salt="pepper"), PERSON)
    assert salted != plain
    assert salted == id_of(id_rule(salt="pepper"), PERSON)
    assert salted != id_of(id_rule(salt="other"), PERSON)


def test_values_are_normalised_by_default():
    messy = {**PERSON, "email": "  ADA@Example.COM "}
    assert id_of(id_rule(), messy) == id_of(id_rule(), PERSON)


def test_normalize_false_hashes_values_exactly():
    messy = {**PERSON, "email": "ADA@example.com"}
    assert id_of(id_rule(normalize=False), messy) != id_of(id_rule(normalize=False), PERSON)


def test_non_text_values_are_hashed_as_their_text():
    rule = DeterministicId.from_params({"hash_fields": ["n"]})
    assert run(rule, {"n": 42})[1]["id"] == run(rule, {"n": "42"})[1]["id"]


def test_the_id_field_accepts_the_id_field_alias_and_is_provided():
    rule = DeterministicId.from_params({"id_field": "cid", "hash_fields": ["email"]})
    assert rule.provides() == ("cid",)
    _, data = run(rule, {"email": "a@b.c"})
    assert "cid" in data


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"hash_fields": []}, "at least 1"),
        ({"hash_fields": ["a"], "template": "CUST"}, "must contain {hash}"),
        ({"hash_fields": ["a"], "template": "{hash}-{other}"}, "only {hash} may appear"),
        ({"hash_fields": ["a"], "length": 7}, "greater than or equal to 8"),
        ({"hash_fields": ["a"], "length": 65}, "less than or equal to 64"),
        ({"hash_fields": ["a"], "algorithm": "md5"}, "algorithm"),
    ],
)
def test_bad_params_are_rejected(params: dict[str, Any], error: str):
    with pytest.raises(ValidationError, match=re.escape(error)):
        DeterministicId.from_params(params)
