"""``stream-engine eval`` prints decisions as the pipeline publishes them: with
``pii.mask_decisions: true`` no SSN or date of birth appears in its output, also with
``--stage``; without it (the default) the decision's data keeps the real values."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml
from click.testing import CliRunner

from stream_engine.cli import main

ROOT = Path(__file__).resolve().parents[3]
ONBOARDING = ROOT / "configs" / "customer_onboarding.yaml"
SSN, DOB = "123-45-6789", "1985-03-15"
JOHN = {
    "application_id": "APP-1",
    "name": "John Michael Smith",
    "email": "john.smith@example.com",
    "phone": "(212) 555-0147",
    "address": "123 Main St",
    "city": "New York",
    "state": "NY",
    "zip_code": "10001",
    "date_of_birth": DOB,
    "ssn": SSN,
    "annual_income": 75000,
}


def evaluate(config: Path, *options: str) -> list[dict]:
    result = CliRunner().invoke(
        main, ["eval", str(config), *options], input=orjson.dumps(JOHN).decode() + "\n"
    )
    assert result.exit_code == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def masking_decisions(tmp_path: Path) -> Path:
    config = yaml.safe_load(ONBOARDING.read_text())
    config["pii"] = {"mask_decisions": True}
    path = tmp_path / "customer_onboarding.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_eval_masks_the_decision_data_when_mask_decisions_is_on(tmp_path):
    [decision] = evaluate(masking_decisions(tmp_path))
    assert decision["status"] == "approved"
    assert decision["data"]["ssn"] == "*******6789"
    assert decision["data"]["date_of_birth"] == "**********"
    assert SSN not in orjson.dumps(decision).decode()
    assert DOB not in orjson.dumps(decision).decode()


def test_eval_of_one_stage_masks_its_data_too_when_mask_decisions_is_on(tmp_path):
    [answer] = evaluate(masking_decisions(tmp_path), "--stage", "preprocessing")
    assert answer["route"] == "forward"
    assert answer["data"]["ssn"] == "*******6789"
    assert SSN not in orjson.dumps(answer).decode()


def test_eval_keeps_the_real_values_in_decision_data_unless_asked_to_mask_them(tmp_path):
    [default] = evaluate(ONBOARDING)
    [masked] = evaluate(masking_decisions(tmp_path))
    assert (default["data"]["ssn"], default["data"]["date_of_birth"]) == (SSN, DOB)
    assert (masked["data"]["ssn"], masked["data"]["date_of_birth"]) == ("*******6789", "**********")
    assert default["status"] == masked["status"] == "approved"


def test_configuration_test_cases_see_data_as_eval_prints_it(tmp_path):
    expect = {"data": {"ssn": "*******6789", "date_of_birth": "**********"}}
    cases = {
        "cases": [
            {"name": "whole pipeline", "input": JOHN, "expect": {"status": "approved", **expect}},
            {"name": "one stage", "stage": "preprocessing", "input": JOHN, "expect": expect},
        ]
    }
    path = tmp_path / "pii.cases.yaml"
    path.write_text(yaml.safe_dump(cases, sort_keys=False))
    result = CliRunner().invoke(main, ["test", str(masking_decisions(tmp_path)), str(path)])
    assert result.exit_code == 0, result.stdout
    assert "2 passed, 0 failed" in result.stdout
