"""The offline commands, driven as a user drives them: validate, plan, eval, test, rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from stream_engine.cli import main

ROOT = Path(__file__).resolve().parents[3]
ONBOARDING = str(ROOT / "configs/customer_onboarding.yaml")
LEADS = str(ROOT / "configs/lead_enrichment.yaml")

JOHN = {
    "application_id": "APP-1",
    "name": "  John Michael Smith  ",
    "email": "JOHN.SMITH@EXAMPLE.COM",
    "phone": "(212) 555-0147",
    "address": "123 Main St, Apt 2B",
    "city": "New York",
    "state": "NY",
    "zip_code": "10001",
    "date_of_birth": "1985-03-15",
    "ssn": "123-45-6789",
    "annual_income": 75000,
}
JANE = {
    "application_id": "APP-2",
    "name": "Jane Doe",
    "email": "jane.doe@example.com",
    "phone": "(310) 555-0142",
    "city": "Los Angeles",
    "state": "CA",
}


def run(*args: str, stdin: str | None = None):
    result = CliRunner().invoke(main, list(args), input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def jsonl(*records) -> str:
    return "\n".join(r if isinstance(r, str) else orjson.dumps(r).decode() for r in records) + "\n"


@pytest.mark.parametrize("command", ["", "validate", "plan", "eval", "test", "rules", "services"])
def test_every_command_explains_itself_with_help(command):
    result = run(*([command] if command else []), "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    assert len(result.stdout.splitlines()) > 5


def test_validate_accepts_the_example_pipelines_in_every_environment():
    for config in (ONBOARDING, LEADS):
        for env in ("", "development", "staging", "production"):
            result = run("validate", config, *(["--env", env] if env else []))
            assert result.exit_code == 0, result.stderr
            assert result.stdout.startswith("valid: ")


def test_validate_lists_every_error_on_its_own_line_and_exits_1(tmp_path):
    config = yaml.safe_load(Path(ONBOARDING).read_text())
    stages = config["stages"]
    stages["data_quality"]["timeout_s"] = -1
    stages["compliance"]["rules"]["pep_screening"]["dependencies"] = ["kyc_check"]
    stages["business_rules"]["rules"]["age_verification"]["class"] = "AgeRule"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run("validate", str(path))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert any(
        e.startswith(
            "error: stages.compliance.rules.pep_screening.dependencies[0]: unknown rule 'kyc_check'"
        )
        for e in errors
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_validate_can_answer_in_json(tmp_path):
    good = lines(run("validate", LEADS, "--format", "json").stdout)[0]
    assert good["valid"] is True
    assert good["pipeline"] == "lead_enrichment"
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline: x\nstages: {s: {rules: {r: {class: Nope}}}}\n")
    result = run("validate", str(path), "--format", "json")
    assert result.exit_code == 1
    bad = lines(result.stdout)[0]
    assert bad["valid"] is False
    assert bad["errors"][0]["location"] == "stages.s.rules.r.class"


def test_a_broken_config_exits_1_without_a_traceback_from_the_real_command(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "pipeline: x\nstages:\n  s:\n    rules:\n      r: {class: RequiredFields, params: {}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "stream_engine", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "error: stages.s.rules.r.params.fields: required (line 5)"
    assert "Traceback" not in proc.stderr


def test_plan_shows_stages_levels_and_topics():
    result = run("plan", ONBOARDING)
    assert result.exit_code == 0
    for name in (
        "preprocessing",
        "data_quality",
        "compliance",
        "business_rules",
        "post_processing",
    ):
        assert name in result.stdout
    assert "customer_onboarding.dlq" in result.stdout


def test_plan_as_json_lists_rules_by_level():
    plan = lines(run("plan", ONBOARDING, "--format", "json").stdout)[0]
    stages = {s["stage"]: s for s in plan["stages"]}
    assert stages["data_quality"]["levels"][0] == ["required_personal_info"]
    assert plan["topics"]["input"] == "customer_onboarding.input"


def test_plan_shows_the_topic_names_the_config_overrides(tmp_path):
    data = yaml.safe_load(Path(ONBOARDING).read_text())
    data["topics"] = {"names": {"input": "apps.in", "dlq": "apps.dead", "stages": {}}}
    config = tmp_path / "renamed.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))

    plan = lines(run("plan", str(config), "--format", "json").stdout)[0]
    text = run("plan", str(config), "--format", "mermaid").stdout

    assert plan["topics"]["input"] == "apps.in"
    assert plan["topics"]["dlq"] == "apps.dead"
    assert plan["stages"][0]["topic"] == "apps.in"
    assert 'input(["apps.in"])' in text


def test_plan_as_mermaid_draws_stages_and_cross_stage_dependencies():
    text = run("plan", ONBOARDING, "--format", "mermaid").stdout
    assert text.startswith("flowchart LR")
    assert "subgraph compliance" in text
    assert "data_quality__required_personal_info -.-> compliance__kyc_identity_verification" in text


def test_eval_approves_a_complete_application_and_rejects_an_incomplete_one():
    result = run("eval", ONBOARDING, stdin=jsonl(JOHN, JANE))
    assert result.exit_code == 0, result.stderr
    john, jane = lines(result.stdout)
    assert john["status"] == "approved"
    assert john["decided_by_stage"] == "post_processing"
    assert john["data"]["phone"] == "+12125550147"
    assert john["data"]["first_name"] == "John"
    assert jane["status"] == "rejected"
    assert jane["decided_by_stage"] == "data_quality"
    assert jane["failed_rules"] == {"data_quality": ["required_personal_info"]}
    assert not any(r["stage"] == "compliance" for r in jane["results"].values())


def test_eval_dead_letters_a_bad_line_and_keeps_going():
    result = run("eval", ONBOARDING, stdin=jsonl("not json", "[1, 2]", JOHN))
    assert result.exit_code == 0
    garbage, array, john = lines(result.stdout)
    assert garbage["status"] == array["status"] == "dead_letter"
    assert garbage["dead_letter"]["reason"] == "decode_error"
    assert "not a JSON object" in array["reasons"][0]
    assert john["status"] == "approved"


def test_eval_of_a_single_stage_returns_its_results_and_route():
    result = run("eval", ONBOARDING, "--stage", "data_quality", stdin=jsonl(JANE))
    answer = lines(result.stdout)[0]
    assert answer["stage"] == "data_quality"
    assert answer["route"] == "reject"
    assert set(answer["results"]) >= {"required_personal_info", "email_format_validation"}


def test_eval_refuses_an_unknown_stage():
    result = run("eval", ONBOARDING, "--stage", "nope", stdin="")
    assert result.exit_code == 1
    assert "unknown stage 'nope'" in result.stderr


def cases_file(tmp_path, status: str) -> str:
    path = tmp_path / "cases.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cases": [
                    {"name": "john is approved", "input": JOHN, "expect": {"status": "approved"}},
                    {
                        "name": "jane is stopped by data quality",
                        "input": JANE,
                        "expect": {
                            "status": status,
                            "decided_by_stage": "data_quality",
                            "failed_rules": ["required_personal_info"],
                            "not_evaluated": ["compliance"],
                        },
                    },
                ]
            }
        )
    )
    return str(path)


def test_test_command_passes_when_every_case_holds(tmp_path):
    result = run("test", ONBOARDING, cases_file(tmp_path, "rejected"))
    assert result.exit_code == 0, result.stdout
    assert "2 passed, 0 failed" in result.stdout


def test_test_command_fails_and_says_why_when_a_case_breaks(tmp_path):
    result = run("test", ONBOARDING, cases_file(tmp_path, "approved"))
    assert result.exit_code == 1
    assert "FAIL jane is stopped by data quality" in result.stdout
    assert "status: expected 'approved', got 'rejected'" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_rules_lists_the_built_in_rule_classes():
    catalogue = lines(run("rules", "--format", "json").stdout)[0]
    assert {"RequiredFields", "ServiceCheck", "WeightedScore", "NormalizePhone"} <= set(catalogue)
    assert "fields" in catalogue["RequiredFields"]["required"]


async def test_offline_evaluation_leaves_the_callers_records_unchanged():
    from stream_engine.offline import OfflineEvaluator
    from stream_engine.pipeline import load_pipeline

    pipeline = load_pipeline(ROOT / "configs" / "lead_enrichment.yaml")
    record = {"lead_id": "L-1", "first_name": " Ann ", "last_name": "Lee", "city": "Austin"}
    original = dict(record)

    decided = [d async for d in OfflineEvaluator(pipeline).decisions([record])]

    assert decided[0]["data"]["first_name"] == "Ann"
    assert record == original
