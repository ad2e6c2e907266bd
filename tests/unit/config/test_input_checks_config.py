"""``input.schema``, ``input.limits``, ``execution.sync_limit_s`` and the envelope keys are
checked when the configuration loads: a schema that could fail at run time, a limit the wire
format cannot carry, a weak or unknown key - each a located error, reported with the others."""

from __future__ import annotations

import re

import pytest
from config_helpers import base_config, errors_of, load


def unlined(errors: list[str]) -> list[str]:
    return [re.sub(r" \(line \d+\)$", "", e) for e in errors]


def with_schema(schema: dict) -> dict:
    config = base_config()
    config["input"] = {"schema": schema}
    return config


def test_a_schema_ref_that_does_not_resolve_is_a_located_error(tmp_path):
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    assert unlined(errors_of(tmp_path, with_schema(schema))) == [
        "input.schema: properties.a.$ref: '$ref' '#/$defs/missing' does not resolve (remote "
        "schemas are never fetched: put the definition under $defs)"
    ]


def test_a_remote_schema_ref_is_refused_rather_than_fetched(tmp_path):
    schema = {"properties": {"a": {"$ref": "https://example.com/a.json"}}}
    [error] = errors_of(tmp_path, with_schema(schema))
    assert "'https://example.com/a.json' does not resolve" in error


def test_a_schema_pattern_re2_cannot_run_is_a_located_error(tmp_path):
    schema = {"properties": {"zip": {"type": "string", "pattern": "^(?=\\d)\\d{5}$"}}}
    [error] = unlined(errors_of(tmp_path, with_schema(schema)))
    assert error.startswith("input.schema: properties.zip.pattern: RE2 cannot run the pattern")


def test_a_schema_whose_refs_resolve_loads(tmp_path):
    schema = {
        "$defs": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
        "properties": {"zip": {"$ref": "#/$defs/zip"}},
    }
    assert load(tmp_path, with_schema(schema)).config.input.schema_ == schema


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("input", "limits", "max_depth"), 300, "input.limits.max_depth: Input should be less"),
        (("input", "limits", "max_items"), 0, "input.limits.max_items: Input should be greater"),
        (("execution", "sync_limit_s"), 0, "execution.sync_limit_s: Input should be greater"),
    ],
)
def test_limits_out_of_range_are_located_errors(tmp_path, path, value, says):
    config = base_config()
    node = config
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    [error] = errors_of(tmp_path, config)
    assert error.startswith(says)


def test_a_short_envelope_key_is_a_located_error_that_says_how_to_make_one(tmp_path):
    config = base_config()
    config["runtime"] = {"envelope_keys": {"k1": "short"}}
    assert unlined(errors_of(tmp_path, config)) == [
        "runtime.envelope_keys: key 'k1' is shorter than 16 bytes; use 32 random bytes, e.g. "
        "the output of 'openssl rand -hex 32'"
    ]


def test_a_signing_key_id_that_is_not_listed_is_a_located_error(tmp_path):
    config = base_config()
    config["runtime"] = {"envelope_keys": {"k1": "x" * 32}, "envelope_key_id": "k2"}
    assert unlined(errors_of(tmp_path, config)) == [
        "runtime.envelope_key_id: 'k2' is not a key of envelope_keys (listed: k1)"
    ]


def keyed(value: str) -> dict:
    config = base_config()
    config["runtime"] = {"envelope_keys": {"k1": value}}
    return config


def test_rotating_an_envelope_key_given_by_variable_keeps_the_config_hash(tmp_path):
    first = load(tmp_path, keyed("${KEY}"), environ={"KEY": "a" * 32})
    second = load(tmp_path, keyed("${KEY}"), environ={"KEY": "b" * 32})
    assert first.plan.config_hash == second.plan.config_hash
    assert first.warnings == []


def test_a_literal_envelope_key_is_never_hashed_and_draws_a_warning(tmp_path):
    first = load(tmp_path, keyed("a" * 32))
    second = load(tmp_path, keyed("b" * 32))
    assert first.plan.config_hash == second.plan.config_hash
    assert first.warnings == [
        "runtime.envelope_keys.k1: the key is written in the file; give it as ${VAR} (or "
        "$STREAM_ENGINE_ENVELOPE_KEY) so it stays out of the file"
    ]
