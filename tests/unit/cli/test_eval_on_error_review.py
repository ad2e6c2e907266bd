"""``on_error: review`` from a pipeline file: a service that errors sends the record to review."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml
from click.testing import CliRunner

from stream_engine.cli import main

PIPELINE = {
    "pipeline": "screening",
    "version": "1",
    "input": {"key_field": "id"},
    "services": {
        "vendor": {
            "class": "SimulatedService",
            "params": {"fail_rate": 1.0, "error_message": "vendor unavailable"},
            "retry": {"attempts": 1},
        }
    },
    "stages": {
        "screening": {
            "rules": {
                "sanctions": {
                    "class": "ServiceCheck",
                    "params": {"service": "vendor", "pass_when": "response.clear"},
                    "on_error": "review",
                }
            }
        }
    },
}


def test_a_service_rule_whose_service_errors_with_on_error_review_is_decided_review(
    tmp_path: Path,
):
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(PIPELINE))

    result = CliRunner().invoke(main, ["eval", str(config)], input='{"id": "T-1"}\n')

    assert result.exit_code == 0, result.output
    decision = orjson.loads(result.stdout)
    assert decision["status"] == "review"
    assert decision["decided_by_stage"] == "screening"
    assert decision["results"]["sanctions"]["outcome"] == "ERROR"
    assert decision["reasons"] == ["sanctions: ServiceError: vendor: vendor unavailable"]
    assert "dead_letter" not in decision


def test_validate_accepts_on_error_review(tmp_path: Path):
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(PIPELINE))

    assert CliRunner().invoke(main, ["validate", str(config)]).exit_code == 0
