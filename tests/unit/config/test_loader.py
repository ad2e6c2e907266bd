"""Environment overlays, ${VAR} interpolation, version and content hash."""

from __future__ import annotations

import json

import pytest
from config_helpers import base_config, errors_of, load, write

from stream_engine.config.loader import hashed_part, load_effective


def with_environments(**environments):
    return base_config(environments=environments)


def test_an_overlay_is_deep_merged_over_the_base(tmp_path):
    config = with_environments(
        development={"stages": {"compliance": {"enabled": False}, "data_quality": {"timeout_s": 5}}}
    )
    compiled = load(tmp_path, config, environment="development")
    stages = {s.name: s for s in compiled.plan.stages}
    assert stages["compliance"].enabled is False
    assert stages["data_quality"].timeout_s == 5
    assert [r.rule_id for r in stages["data_quality"].rules] == ["required", "email"]
    assert compiled.plan.environment == "development"


def test_no_environment_means_the_base_configuration(tmp_path):
    config = with_environments(development={"stages": {"compliance": {"enabled": False}}})
    compiled = load(tmp_path, config, environ={})
    assert all(s.enabled for s in compiled.plan.stages)
    assert compiled.plan.environment is None


def test_the_environment_can_come_from_stream_engine_env(tmp_path):
    config = with_environments(staging={"execution": {"stop_on_stage_failure": False}})
    compiled = load(tmp_path, config, environ={"STREAM_ENGINE_ENV": "staging"})
    assert compiled.plan.stop_on_stage_failure is False


def test_an_unknown_environment_lists_the_known_ones(tmp_path):
    config = with_environments(development={}, production={})
    assert errors_of(tmp_path, config, environment="prod") == [
        "environments: unknown environment 'prod' (known: development, production)"
    ]


def test_overlay_values_replace_lists_rather_than_appending(tmp_path):
    config = with_environments(
        strict={
            "stages": {"data_quality": {"rules": {"required": {"params": {"fields": ["a", "b"]}}}}}
        }
    )
    compiled = load(tmp_path, config, environment="strict")
    required = compiled.plan.stage("data_quality").rules[0].rule
    assert required.params.fields == ["a", "b"]


def test_replace_marker_swaps_a_whole_mapping(tmp_path):
    config = with_environments(
        production={
            "services": {
                "kyc": {
                    "$replace": True,
                    "class": "HttpJsonService",
                    "params": {"url": "https://kyc.example/v1"},
                }
            }
        }
    )
    compiled = load(tmp_path, config, environment="production")
    assert type(compiled.services["kyc"].service).__name__ == "HttpJsonService"


def test_errors_in_an_overlay_point_at_the_overlay_line(tmp_path):
    text = """pipeline: demo
stages:
  dq:
    rules:
      r1: {class: RequiredFields, params: {fields: [a]}}
environments:
  broken:
    stages:
      dq:
        timeout_s: -1
"""
    assert errors_of(tmp_path, text, environment="broken") == [
        "stages.dq.timeout_s: Input should be greater than 0 (line 10)"
    ]


def test_variables_are_interpolated_with_defaults(tmp_path):
    config = base_config(version="${RELEASE}", description="${MISSING:-fallback} and $$literal")
    path = write(tmp_path, config)
    effective = load_effective(path, environ={"RELEASE": "3.1.4"})
    assert effective.data["version"] == "3.1.4"
    assert effective.data["description"] == "fallback and $literal"


def test_an_unset_variable_without_default_is_a_located_error(tmp_path):
    config = base_config()
    config["services"]["kyc"]["params"]["seed"] = "${KYC_SEED}"
    assert errors_of(tmp_path, config, environ={}) == [
        "services.kyc.params.seed: environment variable 'KYC_SEED' is not set"
    ]


def test_interpolated_numbers_are_validated_as_numbers(tmp_path):
    config = base_config()
    config["stages"]["data_quality"]["timeout_s"] = "${DQ_TIMEOUT:-2.5}"
    compiled = load(tmp_path, config, environ={})
    assert compiled.plan.stage("data_quality").timeout_s == 2.5


def test_content_hash_is_stable_and_ignores_key_order(tmp_path):
    config = base_config()
    reordered = dict(reversed(list(config.items())))
    first = load(tmp_path, config).plan.config_hash
    second = load(tmp_path, reordered).plan.config_hash
    assert first == second
    assert len(first) == 12


def test_content_hash_changes_with_the_effective_configuration(tmp_path):
    config = with_environments(development={"stages": {"compliance": {"enabled": False}}})
    base = load(tmp_path, config).plan.config_hash
    development = load(tmp_path, config, environment="development").plan.config_hash
    assert base != development


def test_a_json_pipeline_file_is_accepted(tmp_path):
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(base_config()))
    effective = load_effective(path, environ={})
    assert effective.data["pipeline"] == "demo"


def test_seed_000_spellings_of_stage_options_are_accepted(tmp_path):
    config = base_config(execution_settings={"stop_on_stage_failure": False, "default_timeout": 12})
    config["stages"]["data_quality"].update(parallel_execution=True, timeout_seconds=7)
    compiled = load(tmp_path, config)
    stage = compiled.plan.stage("data_quality")
    assert (stage.parallel, stage.timeout_s) == (True, 7)
    assert compiled.plan.stop_on_stage_failure is False


def test_a_missing_file_is_a_clear_error(tmp_path):
    from stream_engine.errors import ConfigError
    from stream_engine.pipeline import load_pipeline

    with pytest.raises(ConfigError, match="no such file"):
        load_pipeline(tmp_path / "absent.yaml")


def with_secrets():
    config = base_config()
    config["pii_fields"] = ["ssn"]
    config["pii"] = {"mode": "hash", "hash_key": "${PII_KEY}"}
    config["kafka"] = {"sasl_username": "svc", "sasl_password": "${KAFKA_PASSWORD}"}
    config["services"]["crm"] = {
        "class": "HttpJsonService",
        "params": {
            "url": "${CRM_URL}",
            "headers": {"Authorization": "Bearer ${CRM_TOKEN}"},
        },
    }
    return config


SECRETS = {
    "PII_KEY": "k-1",
    "KAFKA_PASSWORD": "p-1",
    "CRM_TOKEN": "t-1",
    "CRM_URL": "https://crm.example/v1",
}


@pytest.mark.parametrize("secret", ["PII_KEY", "KAFKA_PASSWORD", "CRM_TOKEN"])
def test_content_hash_does_not_depend_on_the_value_of_a_secret(tmp_path, secret):
    before = load(tmp_path, with_secrets(), environ=SECRETS).plan.config_hash
    after = load(tmp_path, with_secrets(), environ={**SECRETS, secret: "rotated"}).plan
    assert after.config_hash == before


def test_content_hash_still_follows_interpolated_values_that_are_not_secrets(tmp_path):
    before = load(tmp_path, with_secrets(), environ=SECRETS).plan.config_hash
    moved = {**SECRETS, "CRM_URL": "https://crm.example/v2"}
    assert load(tmp_path, with_secrets(), environ=moved).plan.config_hash != before


def test_content_hash_follows_which_variable_a_secret_is_read_from(tmp_path):
    before = load(tmp_path, with_secrets(), environ=SECRETS).plan.config_hash
    config = with_secrets()
    config["pii"]["hash_key"] = "${OTHER_KEY}"
    after = load(tmp_path, config, environ={**SECRETS, "OTHER_KEY": "k-1"}).plan.config_hash
    assert after != before


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a-literal-key-one", "a-literal-key-two"),
        ("${PII_KEY:-default-one}", "${PII_KEY:-default-two}"),
        ("one-${PII_KEY}", "two-${PII_KEY}"),
    ],
    ids=["literal", "default", "around a reference"],
)
def test_content_hash_never_covers_a_key_written_in_the_file(tmp_path, first, second):
    hashes = []
    for written in (first, second):
        config = with_secrets()
        config["pii"]["hash_key"] = written
        hashes.append(load(tmp_path, config, environ=SECRETS).plan.config_hash)
    assert hashes[0] == hashes[1]


def test_what_content_hash_covers_of_a_secret_is_its_references_only():
    data = {"pii": {"hash_key": "k-1"}, "services": {"crm": {"params": {"headers": {"A": "t"}}}}}
    written = {
        "pii": {"hash_key": "x${PII_KEY:-dev}"},
        "services": {"crm": {"params": {"headers": {"A": "Bearer ${TOKEN}"}}}},
    }
    part = hashed_part(data, written)
    assert part["pii"]["hash_key"] == "<secret>${PII_KEY:-<secret>}"
    assert part["services"]["crm"]["params"]["headers"] == {"A": "<secret>${TOKEN}"}


def test_the_api_and_kafka_sections_do_not_change_the_config_hash():
    base = {"pipeline": "p", "stages": {"s": {}}}
    served = {**base, "api": {"port": 9000, "keys": []}, "kafka": {"bootstrap_servers": "k:9092"}}
    assert hashed_part(served, served) == hashed_part(base, base)
