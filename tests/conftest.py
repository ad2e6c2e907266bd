"""Options for the whole test tree."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["broker_fixtures"]

BROKER_KINDS = ("embedded", "kafka")
DRIVERS = ("batch", "faust")
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

    parser.addoption(
        "--driver",
        dest="driver",
        choices=(*DRIVERS, "all"),
        default="all",
        help=(
            "the stage driver(s) the broker tests run with: 'batch', 'faust' or 'all' (default: "
            "every test that runs a pipeline runs once per driver)"
        ),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that run a pipeline (the ``driver`` fixture, via ``make_pipeline``) run once per
    stage driver."""
    if "driver" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("driver")
        metafunc.parametrize("driver", DRIVERS if chosen == "all" else (chosen,))


def pytest_configure(config: pytest.Config) -> None:
    """Settles the broker kind once: the option, else $STREAM_ENGINE_TEST_BROKER, else
    embedded. Fixtures read it as ``config.getoption("broker_kind")``."""
    kind = config.getoption("broker_kind") or os.environ.get(BROKER_ENV) or "embedded"
    if kind not in BROKER_KINDS:
        raise pytest.UsageError(f"{BROKER_ENV}={kind!r}: expected one of {', '.join(BROKER_KINDS)}")
    config.option.broker_kind = kind


def pytest_report_header(config: pytest.Config) -> str:
    return f"integration broker: {config.getoption('broker_kind')}"


#: Every worker the suites start (in process and as subprocesses, which inherit it) signs and
#: verifies envelopes with this key; tests of a missing key remove it with monkeypatch.
TEST_ENVELOPE_KEY = "test:" + "5e" * 32
os.environ.setdefault("STREAM_ENGINE_ENVELOPE_KEY", TEST_ENVELOPE_KEY)
