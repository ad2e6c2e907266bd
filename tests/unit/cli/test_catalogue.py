"""`stream-engine rules` and `stream-engine services`: every class, its whole description,
and each param's type, default and meaning."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from stream_engine import cli
from stream_engine.catalogue import catalogue
from stream_engine.cli import main
from stream_engine.rules import RULES
from stream_engine.services import SERVICES


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal wide enough that no table cell folds."""
    monkeypatch.setattr(cli.out, "_width", 400)


def run(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.parametrize("registry", [RULES, SERVICES], ids=["rules", "services"])
def test_every_param_of_every_registered_class_has_a_description(registry):
    undescribed = [
        f"{name}.{param}"
        for name, info in catalogue(registry).items()
        for param, p in info["params"].items()
        if not p["description"].strip()
    ]
    assert undescribed == []


@pytest.mark.parametrize("registry", [RULES, SERVICES], ids=["rules", "services"])
def test_every_registered_class_has_a_description(registry):
    assert [name for name, info in catalogue(registry).items() if not info["description"]] == []


def test_rules_prints_a_whole_description_and_each_params_type_default_and_meaning(wide):
    result = run("rules")

    assert result.exit_code == 0
    text = result.stdout
    description = catalogue(RULES, "Regex")["Regex"]["description"]
    assert description.endswith("no lookarounds or backreferences).")
    assert description in text
    missing = next(
        line for line in text.splitlines() if line.startswith("missing ") and "skip" in line
    )
    assert "fail|skip|pass" in missing
    assert "SKIP, so rules that depend on this one SKIP too" in missing
    for name in RULES.names():
        assert f"{name} (rule class)" in text


def test_rules_as_json_gives_each_params_type_default_meaning_and_other_spellings():
    result = run("rules", "--format", "json")

    assert result.exit_code == 0
    rules = orjson.loads(result.stdout)
    assert set(rules) == set(RULES.names())
    missing = rules["NumericRange"]["params"]["missing"]
    assert missing["type"] == "fail|skip|pass"
    assert missing["default"] == "skip"
    assert missing["required"] is False
    assert "fail (FAIL)" in missing["description"]
    field = rules["NumericRange"]["params"]["field"]
    assert field["required"] is True
    assert "field_name" in field["aliases"]
    assert rules["NumericRange"]["required"] == ["field"]
    assert rules["CrossFieldCheck"]["params"]["checks[].expr"]["type"] == "CEL"
    assert rules["WeightedScore"]["params"]["components.<name>.weight"]["type"] == "number"


def test_rules_name_shows_that_one_class_only(wide):
    result = run("rules", "TrimWhitespace")

    assert result.exit_code == 0
    assert "TrimWhitespace (rule class)" in result.stdout
    assert "(rule class)" not in result.stdout.replace("TrimWhitespace (rule class)", "")
    assert "collapse_spaces" in result.stdout


def test_rules_name_of_an_unknown_class_is_one_line_with_a_suggestion():
    result = run("rules", "Regx")

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: unknown rule class 'Regx' (did you mean 'Regex'?)"


def test_services_lists_every_service_class_with_its_params(wide):
    result = run("services")

    assert result.exit_code == 0
    assert "HttpJsonService (service class)" in result.stdout
    assert "SimulatedService (service class)" in result.stdout
    assert catalogue(SERVICES, "HttpJsonService")["HttpJsonService"]["description"] in (
        result.stdout
    )
    assert "GET|POST|PUT" in result.stdout


def test_services_as_json_gives_each_params_type_default_and_meaning():
    result = run("services", "--format", "json")

    assert result.exit_code == 0
    services = orjson.loads(result.stdout)
    assert set(services) == set(SERVICES.names())
    latency = services["SimulatedService"]["params"]["latency_ms"]
    assert latency == {
        "type": "number",
        "required": False,
        "default": 0.0,
        "description": "how long each answer takes",
        "aliases": [],
    }
    assert services["HttpJsonService"]["required"] == ["url"]


def test_services_name_shows_that_one_class_only():
    result = run("services", "SimulatedService", "--format", "json")

    assert list(orjson.loads(result.stdout)) == ["SimulatedService"]
