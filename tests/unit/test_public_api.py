"""The public API: what a user writing a custom rule or an application needs, from the package
itself; importing the package does not import the Kafka client."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stream_engine

PUBLIC = [
    "Client",
    "HttpClient",
    "SyncHttpClient",
    "ApiError",
    "load_pipeline",
    "register_rule",
    "register_service",
    "ConfiguredRule",
    "RuleParams",
    "RuleContext",
    "Verdict",
    "passed",
    "failed",
    "StreamEngineError",
    "ConfigError",
]


def test_every_public_name_imports_from_the_package_and_is_listed():
    namespace: dict[str, object] = {}
    exec(f"from stream_engine import {', '.join(PUBLIC)}", namespace)
    assert all(namespace[name] is not None for name in PUBLIC)
    assert set(PUBLIC) <= set(stream_engine.__all__)


def test_the_public_names_are_the_defining_modules_own():
    from stream_engine.core.result import passed
    from stream_engine.rules.base import register_rule

    assert stream_engine.passed is passed
    assert stream_engine.register_rule is register_rule


def test_a_custom_rule_written_with_the_public_api_runs():
    from stream_engine import ConfiguredRule, RuleContext, RuleParams, Verdict, failed, passed
    from stream_engine.rules import RULES

    class EvenParams(RuleParams):
        field: str = "n"

    @stream_engine.register_rule("TestEvenPublicApi")
    class Even(ConfiguredRule[EvenParams]):
        """FAIL unless the field is even."""

        Params = EvenParams

        def evaluate(self, ctx: RuleContext) -> Verdict:
            return passed() if ctx.data[self.params.field] % 2 == 0 else failed("odd")

    rule = RULES.get("TestEvenPublicApi").from_params({})
    assert (
        rule.evaluate(RuleContext(record_id="r", data={"n": 3}, results={})).outcome.value == "FAIL"
    )


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="nothing_here"):
        stream_engine.nothing_here  # noqa: B018


def test_importing_the_package_does_not_import_the_kafka_client():
    code = "import sys, stream_engine; print('aiokafka' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
