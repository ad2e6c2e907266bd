"""The ``api.keys`` entries and the ``api`` limits as a pipeline file states them: a malformed
hash (never echoed: it may be a key pasted by mistake), a key id listed twice, a default wait
over the maximum, and a hash read from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_engine.api.security import key_hash, new_key
from stream_engine.errors import ConfigError, ConfigErrors
from stream_engine.pipeline import load_pipeline

HASH = key_hash("a key")


def pipeline(api: dict[str, Any]) -> dict[str, Any]:
    rule = {"class": "RequiredFields", "params": {"fields": ["name"]}}
    return {
        "pipeline": "keys_demo",
        "version": "1.0",
        "stages": {"checks": {"rules": {"required": rule}}},
        "api": api,
    }


def errors_of(tmp_path: Path, api: dict[str, Any]) -> list[str]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline(api), sort_keys=False))
    try:
        load_pipeline(path)
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    except ConfigError as exc:
        return [str(exc)]
    raise AssertionError("the configuration loaded without errors")


@pytest.mark.parametrize(
    "written", [new_key(), "sha256:" + "A" * 64, "sha256:abc", HASH.removeprefix("sha256:")]
)
def test_a_hash_that_is_not_sha256_and_64_lowercase_hex_is_refused_without_echoing_it(
    tmp_path: Path, written: str
):
    errors = errors_of(tmp_path, {"keys": [{"id": "web", "hash": written}]})

    assert len(errors) == 1
    assert errors[0].startswith("api.keys[0].hash: must be 'sha256:' and 64 lowercase hex")
    assert "stream-engine api-key" in errors[0]
    assert written not in errors[0]


def test_a_key_id_listed_twice_is_refused_naming_it(tmp_path: Path):
    keys = [
        {"id": "web", "hash": HASH},
        {"id": "web", "hash": key_hash("another")},
        {"id": "batch", "hash": key_hash("third")},
    ]

    errors = errors_of(tmp_path, {"keys": keys})

    assert len(errors) == 1
    assert errors[0].startswith("api: key ids must be unique; listed more than once: web")


def test_a_default_decide_wait_over_the_maximum_is_refused(tmp_path: Path):
    errors = errors_of(tmp_path, {"timeout_ms": 5000, "max_timeout_ms": 1000})

    assert len(errors) == 1
    assert errors[0].startswith("api: timeout_ms (5000) is over max_timeout_ms (1000)")


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"id": "web site", "hash": HASH}, "api.keys[0].id"),
        ({"id": "web", "hash": HASH, "scopes": []}, "api.keys[0].scopes"),
        ({"id": "web", "hash": HASH, "scopes": ["admin"]}, "api.keys[0].scopes[0]"),
        ({"id": "web", "hash": HASH, "rate_per_s": 0}, "api.keys[0].rate_per_s"),
        ({"id": "web", "hash": HASH, "burst": 0}, "api.keys[0].burst"),
    ],
)
def test_a_key_id_scope_or_rate_out_of_bounds_is_refused_at_its_place(
    tmp_path: Path, entry: dict[str, Any], where: str
):
    errors = errors_of(tmp_path, {"keys": [entry]})

    assert len(errors) == 1
    assert errors[0].startswith(f"{where}: ")


def test_a_hash_may_come_from_the_environment_and_is_not_shown_in_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WEB_KEY_HASH", HASH)
    path = tmp_path / "pipeline.yaml"
    api = {"keys": [{"id": "web", "hash": "${WEB_KEY_HASH}", "scopes": ["decide"]}]}
    path.write_text(yaml.safe_dump(pipeline(api), sort_keys=False))

    key = load_pipeline(path).config.api.keys[0]

    assert key.hash.get_secret_value() == HASH
    assert (key.id, key.scopes, key.rate_per_s) == ("web", ["decide"], None)
    assert HASH not in repr(key)
