"""Options for the whole test tree."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["broker_fixtures"]

BROKER_KINDS = ("embedded", "kafka")
BROKER_ENV = "STREAM_ENGINE_TEST_BROKER"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker-kind",
        dest="broker_kind",
        choices=BROKER_KINDS,
        default=None,
        help=(
            "the broker of the integration tests: 'embedded' (Tansu, the default) or 'kafka' "
            f"(Apache Kafka 4.x from Maven Central, needs Java 17 and mvn); default ${BROKER_ENV}"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Settles the broker kind once: the option, else $STREAM_ENGINE_TEST_BROKER, else
    embedded. Fixtures read it as ``config.getoption("broker_kind")``."""
    kind = config.getoption("broker_kind") or os.environ.get(BROKER_ENV) or "embedded"
    if kind not in BROKER_KINDS:
        raise pytest.UsageError(f"{BROKER_ENV}={kind!r}: expected one of {', '.join(BROKER_KINDS)}")
    config.option.broker_kind = kind


def pytest_report_header(config: pytest.Config) -> str:
    return f"integration broker: {config.getoption('broker_kind')}"
