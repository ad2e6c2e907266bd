"""The example pipeline, hand-built Kafka messages and the committed wire schemas, for the
runtime tests (no broker: every runtime piece under test is a pure function of its input)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema import Draft202012Validator

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.stage.codec import Headers, Incoming
from stream_engine.runtime.stage.integrity import EnvelopeAuth, envelope_auth

ROOT = Path(__file__).resolve().parents[3]
ONBOARDING = ROOT / "configs" / "customer_onboarding.yaml"
SCHEMAS = ROOT / "topics" / "schemas"
REGENERATE = "python -m stream_engine.runtime.stage.contracts"

INPUT_TOPIC = "customer_onboarding.input"
#: A producer timestamp a minute before the tests started: inside the believed window.
TIMESTAMP_MS = int(time.time() * 1000) - 60_000
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

#: A complete application that passes preprocessing and data quality.
APPLICATION: dict[str, Any] = {
    "application_id": "APP-1",
    "tenant": "retail",
    "name": "John Michael Smith",
    "email": "  JOHN.SMITH@EXAMPLE.COM ",
    "phone": "(212) 555-0147",
    "address": "123 Main St",
    "city": "New York",
    "state": "NY",
    "zip_code": "10001",
    "date_of_birth": "1985-03-15",
    "ssn": "123-45-6789",
    "annual_income": 75000,
}


def onboarding(environment: str | None = None) -> CompiledPipeline:
    """configs/customer_onboarding.yaml, compiled (a fresh copy: services keep state)."""
    return load_pipeline(ONBOARDING, environment)


def application(**changes: Any) -> dict[str, Any]:
    """The complete application with some fields changed (None removes a field)."""
    record = {**APPLICATION, **changes}
    return {k: v for k, v in record.items() if v is not None}


def message(
    value: bytes | dict[str, Any] | list[Any] | None,
    key: bytes | None = None,
    offset: int = 0,
    headers: Headers | None = None,
    topic: str = INPUT_TOPIC,
    partition: int = 0,
    timestamp_ms: int = TIMESTAMP_MS,
) -> Incoming:
    """A consumed message; dicts and lists are encoded as JSON."""
    raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
    return Incoming(topic, partition, offset, timestamp_ms, key, raw, list(headers or []))


def auth() -> EnvelopeAuth:
    """The envelope keys the test suite's workers use (tests/conftest.py sets them)."""
    found = envelope_auth(onboarding())
    assert found is not None
    return found


def signed(
    value: bytes | dict[str, Any],
    topic: str,
    key: bytes | None = None,
    offset: int = 0,
    headers: Headers | None = None,
) -> Incoming:
    """A message on ``topic`` as a worker of the pipeline would have written it: tagged."""
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    sealed = auth().seal(topic, raw, list(headers or []))
    return message(raw, key=key, offset=offset, headers=sealed, topic=topic)


def schema_validator(name: str) -> Draft202012Validator:
    """A validator for a committed schema of ``topics/schemas/`` (``envelope``, ``decision``)."""
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return Draft202012Validator(schema)


def schema_errors(name: str, document: bytes | dict[str, Any]) -> list[str]:
    """Every way a document breaks a committed schema (empty: it conforms)."""
    body = orjson.loads(document) if isinstance(document, bytes) else document
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(document)'}: {e.message}"
        for e in schema_validator(name).iter_errors(body)
    ]


def small_config(**overrides: Any) -> dict[str, Any]:
    """A small valid pipeline of two stages, keyed by ``id``."""
    config: dict[str, Any] = {
        "pipeline": "demo",
        "version": "1.0",
        "input": {"key_field": "id"},
        "stages": {
            "checks": {
                "rules": {"required": {"class": "RequiredFields", "params": {"fields": ["name"]}}}
            },
            "scoring": {
                "rules": {
                    "score": {
                        "class": "DerivedField",
                        "params": {"field": "score", "expr": "size(data.name)"},
                    }
                }
            },
        },
    }
    config.update(overrides)
    return config


def write_pipeline(directory: Path, config: dict[str, Any], name: str = "pipeline.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_small(directory: Path, **overrides: Any) -> CompiledPipeline:
    """``small_config`` with ``overrides``, written under ``directory`` and compiled."""
    return load_pipeline(write_pipeline(directory, small_config(**overrides)))
