"""Rule classes come only from the registry: built-ins, a decorator, or an entry point."""

from __future__ import annotations

import sys
import textwrap

import pytest

from stream_engine.config.compiler import compile_pipeline
from stream_engine.config.loader import resolve
from stream_engine.config.source import parse_text
from stream_engine.core.registry import Registry
from stream_engine.errors import ConfigErrors, RegistryError
from stream_engine.rules import RULES, ConfiguredRule, RuleParams
from stream_engine.services import SERVICES

CONFIG = """
pipeline: custom
stages:
  s:
    rules:
      check: {class: IbanChecksum, params: {field: iban}}
"""


def compile_with(rules: Registry) -> object:
    return compile_pipeline(resolve(parse_text(CONFIG), environ={}), rules, SERVICES)


def test_a_rule_registered_by_decorator_can_be_named_in_a_config():
    rules: Registry = Registry("rule")

    class IbanParams(RuleParams):
        field: str

    @rules.register("IbanChecksum")
    class IbanChecksum(ConfiguredRule[IbanParams]):
        Params = IbanParams

        def evaluate(self, ctx):
            return True

    compiled = compile_with(rules)
    assert type(compiled.plan.stages[0].rules[0].rule) is IbanChecksum


def test_a_rule_registered_through_an_entry_point_is_found(tmp_path, monkeypatch):
    package = tmp_path / "acme_rules"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from stream_engine.rules import ConfiguredRule, RuleParams

            class Params(RuleParams):
                field: str

            class IbanChecksum(ConfiguredRule[Params]):
                Params = Params

                def evaluate(self, ctx):
                    return True
            """
        )
    )
    info = tmp_path / "acme_rules-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rules\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[stream_engine.rules]\nIbanChecksum = acme_rules:IbanChecksum\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rules: Registry = Registry("rule", "stream_engine.rules")
    compiled = compile_with(rules)
    assert type(compiled.plan.stages[0].rules[0].rule).__module__ == "acme_rules"
    sys.modules.pop("acme_rules", None)


def test_an_unregistered_class_is_refused_even_if_importable():
    with pytest.raises(ConfigErrors) as caught:
        compile_with(RULES)
    assert "unknown rule class 'IbanChecksum'" in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "subprocess:Popen",
        "builtins.eval",
        "__import__('os')",
        "stream_engine.rules.fields.Regex",
    ],
)
def test_a_config_cannot_import_or_execute_python(name):
    with pytest.raises(RegistryError, match="unknown rule class"):
        RULES.get(name)


def test_two_classes_cannot_share_a_name():
    rules: Registry = Registry("rule")
    rules.add("X", int)
    with pytest.raises(RegistryError, match="already registered"):
        rules.add("X", str)
