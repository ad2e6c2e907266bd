"""The ``pii:`` section: how ``pii_fields`` are protected. Mistakes are located like every other
configuration error; weak choices load with a warning."""

from __future__ import annotations

import re

from config_helpers import base_config, errors_of, load

LOCATED = re.compile(r"^[\w.\[\]-]+: .+ \(line \d+\)$")
KEY = "a-long-random-secret"


def test_pii_fields_alone_mask_without_touching_decisions(tmp_path):
    plan = load(tmp_path, base_config(pii_fields=["ssn", "date_of_birth"])).plan
    assert plan.pii_fields == ("ssn", "date_of_birth")
    assert (plan.pii.mode, plan.pii.hash_key, plan.pii.mask_decisions) == ("mask", None, False)


def test_a_hash_key_comes_from_the_environment_and_is_kept_out_of_reprs(tmp_path):
    config = base_config(
        pii_fields=["ssn"],
        pii={"mode": "hash", "hash_key": "${PII_KEY}", "mask_decisions": True},
    )
    compiled = load(tmp_path, config, environ={"PII_KEY": KEY})
    assert compiled.plan.pii.hash_key == KEY.encode()
    assert compiled.plan.pii.mask_decisions is True
    assert KEY not in repr(compiled.plan) + repr(compiled.config)
    assert compiled.warnings == []


def test_pii_mistakes_are_each_located(tmp_path):
    config = base_config(
        pii_fields=["ssn", "", "ssn"],
        pii={"mode": "redact", "hash_key": "${PII_KEY}", "mask_decision": True},
    )
    errors = errors_of(tmp_path, config, environ={"PII_KEY": ""})
    assert all(LOCATED.match(e) for e in errors), errors
    located = {e.split(":")[0]: e for e in errors}
    assert set(located) == {
        "pii_fields[1]",
        "pii_fields[2]",
        "pii.mode",
        "pii.hash_key",
        "pii.mask_decision",
    }
    assert "'ssn' is listed twice" in located["pii_fields[2]"]
    assert "'mask' or 'hash'" in located["pii.mode"]
    assert "must not be empty" in located["pii.hash_key"]
    assert "did you mean 'mask_decisions'" in located["pii.mask_decision"]


def test_hashing_without_a_key_warns_that_it_can_be_reversed(tmp_path):
    compiled = load(tmp_path, base_config(pii_fields=["ssn"], pii={"mode": "hash"}))
    [warning] = compiled.warnings
    assert warning.startswith("pii.mode: hash without pii.hash_key is plain SHA-256")


def test_a_record_id_taken_from_a_pii_field_is_a_warning(tmp_path):
    config = base_config(pii_fields=["ssn"], input={"key_field": "ssn"})
    [warning] = load(tmp_path, config).warnings
    assert warning.startswith("input.key_field: 'ssn' is a PII field")


def test_a_pii_section_without_pii_fields_warns_that_nothing_is_protected(tmp_path):
    [warning] = load(tmp_path, base_config(pii={"mask_decisions": True})).warnings
    assert warning == "pii: no pii_fields are listed, so nothing is protected"
