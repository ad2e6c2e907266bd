"""``stream-engine test``: cases are isolated from each other, name only what the pipeline
defines, can stand in for services and fix the decision time; driven through the CLI."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stream_engine.casetest import Expect, load_cases, run_cases
from stream_engine.cli import main
from stream_engine.pipeline import load_pipeline

PIPELINE = {
    "pipeline": "screening",
    "version": "1",
    "input": {"key_field": "id"},
    "services": {
        "kyc": {
            "class": "SimulatedService",
            # a name of DOWN makes the simulated service fail (the CEL trick this file's
            # ``services:`` entries make unnecessary)
            "params": {"fields": {"verified": "request.name == 'DOWN' ? int('x') > 0 : true"}},
            "timeout_s": 2,
            "retry": {"attempts": 2, "backoff_s": 0.001},
            "circuit_breaker": {"failure_threshold": 3, "reset_timeout_s": 600},
        },
        "sanctions": {
            "class": "SimulatedService",
            "params": {"fields": {"hit": "false"}},
        },
    },
    "stages": {
        "intake": {
            "rules": {
                "has_name": {"class": "RequiredFields", "params": {"fields": ["name"]}},
            }
        },
        "screening": {
            "rules": {
                "kyc_check": {
                    "class": "ServiceCheck",
                    "params": {
                        "service": "kyc",
                        "request_fields": ["name"],
                        "pass_when": "response.verified",
                        "response_fields": {"verified": "kyc_verified"},
                    },
                },
                "flag": {
                    "class": "DerivedField",
                    "dependencies": ["kyc_check"],
                    "params": {"field": "screened", "expr": "true"},
                },
            }
        },
    },
}

ALICE = {"id": "A-1", "name": "Alice"}
DOWN = {"id": "D-1", "name": "DOWN"}


def write(tmp_path, cases, **top) -> tuple[str, str]:
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(PIPELINE))
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({**top, "cases": cases}, sort_keys=False))
    return str(config), str(path)


def run_test(tmp_path, cases, **top):
    config, path = write(tmp_path, cases, **top)
    result = CliRunner().invoke(main, ["test", config, path])
    assert not result.exception or isinstance(result.exception, SystemExit), result.exception
    return result


def case(name, record, **expect):
    return {"name": name, "input": record, "expect": expect}


# -- isolation ------------------------------------------------------------------------------


def test_a_healthy_case_after_four_outage_cases_is_decided_on_a_closed_breaker(tmp_path):
    outages = [
        case(f"outage {i}", {**DOWN, "id": f"D-{i}"}, status="dead_letter") for i in range(4)
    ]
    healthy = case("healthy", ALICE, status="approved", outcomes={"kyc_check": "PASS"})
    result = run_test(tmp_path, [*outages, healthy])
    assert result.exit_code == 0, result.stdout
    assert "5 passed, 0 failed" in result.stdout


async def test_each_case_runs_on_its_own_compiled_pipeline(tmp_path):
    config, path = write(
        tmp_path, [case(f"outage {i}", DOWN) for i in range(4)] + [case("healthy", ALICE)]
    )
    pipeline = load_pipeline(config)
    try:
        results = await run_cases(pipeline, load_cases(path))
    finally:
        await pipeline.close()
    assert all(r.passed for r in results)
    assert pipeline.breakers["kyc"].state.value == "closed"  # the loaded pipeline never ran


# -- names an expectation uses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expect", "message"),
    [
        ({}, {"not_evaluated": ["kyc_chek"]}, "unknown rule or stage 'kyc_chek'"),
        ({}, {"outcomes": {"nonexistent_rule": "PASS"}}, "unknown rule 'nonexistent_rule'"),
        ({}, {"failed_rules": ["kyc_chek"]}, "unknown rule 'kyc_chek' (did you mean 'kyc_check'?)"),
        ({}, {"failed_rules": {"screenin": ["kyc_check"]}}, "unknown stage 'screenin'"),
        ({}, {"failed_rules": {"intake": ["kyc_check"]}}, "unknown rule of stage intake"),
        ({}, {"decided_by_stage": "screenin"}, "unknown stage 'screenin'"),
        ({"stage": "nowhere"}, {}, "unknown stage 'nowhere'"),
        ({"services": {"kyk": {"verified": True}}}, {}, "unknown service 'kyk'"),
    ],
)
def test_an_expectation_naming_what_the_pipeline_lacks_is_an_error_of_the_file(
    tmp_path, extra, expect, message
):
    result = run_test(tmp_path, [{**case("first", ALICE, **expect), **extra}])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert message in result.stderr
    assert "cases[0]." in result.stderr
    assert "(line " in result.stderr
    assert "passed" not in result.stdout  # no case ran


def test_a_timeout_of_a_service_without_a_time_limit_is_an_error_of_the_file(tmp_path):
    unlimited = {**PIPELINE, "execution": {"default_timeout_s": None}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(unlimited))
    cases = tmp_path / "cases.yaml"
    bad = {**case("slow", ALICE), "services": {"sanctions": {"timeout": True}}}
    cases.write_text(yaml.safe_dump({"cases": [bad]}))
    result = CliRunner().invoke(main, ["test", str(tmp_path / "pipeline.yaml"), str(cases)])
    assert result.exit_code == 1
    assert "cases[0].services.sanctions.timeout: service 'sanctions' has no timeout_s" in (
        result.stderr
    )


def test_every_bad_name_of_the_file_is_reported_before_any_case_runs(tmp_path):
    cases = [
        case("good", ALICE, status="approved"),
        case("bad one", ALICE, not_evaluated=["fraud_chek"]),
        case("bad two", ALICE, outcomes={"nope": "PASS"}),
    ]
    result = run_test(tmp_path, cases)
    assert result.exit_code == 1
    assert "cases[1].expect.not_evaluated[0]: unknown rule or stage 'fraud_chek'" in result.stderr
    assert "cases[2].expect.outcomes.nope: unknown rule 'nope'" in result.stderr
    assert "2 error(s)" in result.stderr
    assert "PASS good" not in result.stdout


def test_a_disabled_rule_may_be_named_as_not_evaluated(tmp_path):
    PIPELINE_OFF = yaml.safe_load(yaml.safe_dump(PIPELINE))
    PIPELINE_OFF["stages"]["screening"]["rules"]["flag"]["enabled"] = False
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(PIPELINE_OFF))
    cases = tmp_path / "cases.yaml"
    cases.write_text(yaml.safe_dump({"cases": [case("off", ALICE, not_evaluated=["flag"])]}))
    result = CliRunner().invoke(main, ["test", str(tmp_path / "pipeline.yaml"), str(cases)])
    assert result.exit_code == 0, result.output


def test_an_absent_field_no_input_or_rule_could_hold_draws_a_warning(tmp_path):
    result = run_test(tmp_path, [case("typo", DOWN, absent_fields=["nmae", "screened"])])
    assert result.exit_code == 0
    assert "cases[0].expect.absent_fields[0]: 'nmae' is neither in the case's input" in (
        result.stderr
    )
    assert "'screened'" not in result.stderr  # DerivedField provides it


# -- documented keys, record_id --------------------------------------------------------------


def test_every_expect_key_is_documented_in_the_help():
    text = CliRunner().invoke(main, ["test", "--help"]).stdout
    for key in Expect.model_fields:
        assert f"\n    {key} " in text, key
    for key in ("services", "now", "environment", "stage", "{timeout: true}", "{error:"):
        assert key in text


def test_every_expect_key_and_case_key_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("### Configuration tests") :]
    for key in Expect.model_fields:
        assert f"| `{key}` |" in section, key
    for key in ("`services`", "`now`", "`stage`", "`environment`", "{timeout: true}"):
        assert key in section, key


def test_the_record_id_can_be_checked(tmp_path):
    result = run_test(
        tmp_path, [case("right", ALICE, record_id="A-1"), case("wrong", ALICE, record_id="A-2")]
    )
    assert result.exit_code == 1
    assert "PASS right" in result.stdout
    assert "record_id: expected 'A-2', got 'A-1'" in result.stdout


# -- per-case services ------------------------------------------------------------------------


def test_a_case_gives_the_service_answer_for_that_case_alone(tmp_path):
    refused = {
        **case("kyc refuses", ALICE, status="rejected", failed_rules=["kyc_check"]),
        "services": {"kyc": {"verified": False}},
    }
    explicit = {
        **case("kyc answers", ALICE, status="approved", data={"kyc_verified": "yes"}),
        "services": {"kyc": {"answer": {"verified": True, "error": None}}},
    }
    explicit["expect"]["data"] = {"kyc_verified": True}
    after = case("the next case calls the configured service", ALICE, status="approved")
    result = run_test(tmp_path, [refused, explicit, after])
    assert result.exit_code == 0, result.stdout
    assert "3 passed" in result.stdout


def test_a_case_can_make_a_service_fail(tmp_path):
    failing = {
        **case(
            "kyc down",
            ALICE,
            status="dead_letter",
            dead_letter_reason="rule_error",
            reasons_contain=["connection refused"],
            outcomes={"kyc_check": "ERROR", "flag": "SKIP"},
        ),
        "services": {"kyc": {"error": "connection refused"}},
    }
    result = run_test(tmp_path, [failing])
    assert result.exit_code == 0, result.stdout


def test_a_case_can_make_a_service_time_out_without_waiting_for_it(tmp_path):
    timing_out = {
        **case(
            "kyc times out",
            ALICE,
            status="dead_letter",
            dead_letter_reason="timeout",
            reasons_contain=["did not answer within 2.0s"],
        ),
        "services": {"kyc": {"timeout": True}},
    }
    began = time.perf_counter()
    result = run_test(tmp_path, [timing_out])
    assert result.exit_code == 0, result.stdout
    assert time.perf_counter() - began < 2.0  # the service's timeout_s is 2 s, twice (retry)


def test_the_retries_of_a_stand_in_are_not_waited_for(tmp_path):
    patient = yaml.safe_load(yaml.safe_dump(PIPELINE))
    patient["services"]["kyc"]["retry"] = {"attempts": 3, "backoff_s": 10}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(patient))
    cases = tmp_path / "cases.yaml"
    down = {
        **case("down", ALICE, status="dead_letter", reasons_contain=["refused"]),
        "services": {"kyc": {"error": "refused"}},
    }
    cases.write_text(yaml.safe_dump({"cases": [down]}))
    began = time.perf_counter()
    result = CliRunner().invoke(main, ["test", str(tmp_path / "pipeline.yaml"), str(cases)])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - began < 10


def test_a_service_entry_with_both_an_error_and_a_timeout_is_refused(tmp_path):
    bad = {**case("both", ALICE), "services": {"kyc": {"error": "x", "timeout": True}}}
    result = run_test(tmp_path, [bad])
    assert result.exit_code == 1
    assert "cases[0].services.kyc: give exactly one of answer, error or timeout" in result.stderr


# -- now -------------------------------------------------------------------------------------


def test_a_case_fixes_the_decision_time_and_the_file_gives_a_default(tmp_path, monkeypatch):
    seen: list[str] = []
    import stream_engine.casetest as casetest

    original = casetest.compare

    def spy(expect, answer, stages):
        seen.append(answer["decided_at"])
        seen.extend(entry["started_at"] for entry in answer["audit"])
        return original(expect, answer, stages)

    monkeypatch.setattr(casetest, "compare", spy)
    own = {**case("own time", ALICE), "now": "2026-03-02T10:00:00Z"}
    result = run_test(tmp_path, [own, case("file time", ALICE)], now="2025-12-31T23:00:00-01:00")
    assert result.exit_code == 0, result.output
    own_times, file_times = seen[: len(seen) // 2], seen[len(seen) // 2 :]
    assert set(own_times) == {"2026-03-02T10:00:00.000+00:00"}
    assert set(file_times) == {"2026-01-01T00:00:00.000+00:00"}


def test_a_now_without_a_time_zone_is_refused(tmp_path):
    result = run_test(tmp_path, [{**case("naive", ALICE), "now": "2026-03-02T10:00:00"}])
    assert result.exit_code == 1
    assert "cases[0].now:" in result.stderr
    assert "timezone" in result.stderr


def test_without_now_a_case_is_decided_at_the_current_time(tmp_path, monkeypatch):
    seen: list[str] = []
    import stream_engine.casetest as casetest

    original = casetest.compare
    monkeypatch.setattr(
        casetest, "compare", lambda e, a, s: seen.append(a["decided_at"]) or original(e, a, s)
    )
    assert run_test(tmp_path, [case("now", ALICE)]).exit_code == 0
    decided = datetime.fromisoformat(seen[0])
    assert abs((datetime.now(UTC) - decided).total_seconds()) < 60


def test_a_time_rule_is_testable_by_fixing_now_per_case(tmp_path, monkeypatch):
    hours = {
        "class": "CrossFieldCheck",
        "params": {
            "expr": "now.getHours('Europe/London') >= 9 && now.getHours('Europe/London') < 17",
            "message": "outside business hours",
        },
    }
    monkeypatch.setitem(PIPELINE["stages"]["intake"]["rules"], "business_hours", hours)
    cases = [
        {**case("in hours", ALICE, status="approved"), "now": "2026-03-02T10:00:00Z"},
        {
            **case("after hours", ALICE, status="rejected", failed_rules=["business_hours"]),
            "now": "2026-03-02T18:30:00Z",
        },
        # 08:30 UTC is 09:30 in London in summer
        {**case("summer morning", ALICE, status="approved"), "now": "2026-07-01T08:30:00Z"},
    ]
    result = run_test(tmp_path, cases)
    assert result.exit_code == 0, result.stdout
    assert "3 passed, 0 failed" in result.stdout
