"""The offline tools with a rule that remembers: ``test`` cases give earlier records as
``history`` (decided first, each case from empty state), ``eval`` keeps state across all its
input lines and batches, and ``plan`` shows what each stage's records are keyed by and the
stores it keeps with their changelog topics."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner, Result
from pydantic import Field

from stream_engine.cli import main
from stream_engine.core.result import Verdict, passed
from stream_engine.core.rule import RuleContext
from stream_engine.offline import OfflineEvaluator
from stream_engine.rules.base import RULES, ConfiguredRule, RuleParams


class CountParams(RuleParams):
    key: str = Field("customer", description="the field whose values are counted")


class CountPerKey(ConfiguredRule[CountParams]):
    """Test only: counts the records of each value of ``key`` in its store; the count so
    far, this record included, goes in details["state"]."""

    Params = CountParams

    def state_key(self) -> tuple[str, ...] | None:
        return (self.params.key,)

    def state_names(self) -> tuple[str, ...] | None:
        return ("count",)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        assert ctx.stores is not None
        store = ctx.stores.state(self.store_name)
        key = str(ctx.data[self.params.key])
        count = (store.get(key) or 0) + 1
        store.put(key, count, ctx.stores.time_ms + 3_600_000)
        return passed(f"record {count} of {key}", state={"count": count})


@pytest.fixture(autouse=True)
def counting_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    RULES.names()  # entry points first, so nothing registers over this later
    monkeypatch.setitem(RULES._classes, "TestCountPerKey", CountPerKey)


#: Records keyed by id; the second stage counts them per customer and rejects the third.
PIPELINE: dict[str, Any] = {
    "pipeline": "pay",
    "version": "1",
    "input": {"key_field": "id"},
    "stages": {
        "intake": {
            "rules": {"has_id": {"class": "RequiredFields", "params": {"fields": ["id"]}}},
        },
        "velocity": {
            "rules": {
                "counter": {"class": "TestCountPerKey"},
                "limit": {
                    "class": "CrossFieldCheck",
                    "dependencies": ["counter"],
                    "params": {"expr": "state.counter.count < 3", "message": "too many"},
                },
            }
        },
    },
}


def record(n: int, customer: str = "C-1") -> dict[str, Any]:
    return {"id": f"P-{n}", "customer": customer}


def invoke(*args: str, stdin: bytes | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=stdin)
    assert not result.exception or isinstance(result.exception, SystemExit), result.exception
    return result


def write_pipeline(tmp_path: Path, config: dict[str, Any] | None = None) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config or PIPELINE, sort_keys=False))
    return str(path)


def run_cases(tmp_path: Path, cases: list[dict[str, Any]]) -> Result:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({"cases": cases}, sort_keys=False))
    return invoke("test", write_pipeline(tmp_path), str(path))


def wide_table(path: str) -> str:
    """``plan``'s table, wide enough that no cell folds."""
    result = CliRunner().invoke(main, ["plan", path], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


# -- test cases with history ----------------------------------------------------------------


def test_a_cases_history_builds_the_state_its_input_is_decided_with(tmp_path):
    third = {
        "name": "the third payment of a customer is refused",
        "history": [record(1), record(2), record(3, "C-2")],
        "input": record(4),
        "expect": {"status": "rejected", "failed_rules": ["limit"], "reasons_contain": ["many"]},
    }

    result = run_cases(tmp_path, [third])

    assert result.exit_code == 0, result.stdout
    assert "PASS the third payment of a customer is refused" in result.stdout


def test_each_case_starts_from_empty_state(tmp_path):
    cases = [
        {
            "name": "after two",
            "history": [record(1), record(2)],
            "input": record(3),
            "expect": {"status": "rejected"},
        },
        {"name": "a first payment", "input": record(4), "expect": {"status": "approved"}},
        {
            "name": "after one",
            "history": [record(5)],
            "input": record(6),
            "expect": {"status": "approved"},
        },
    ]

    result = run_cases(tmp_path, cases)

    assert result.exit_code == 0, result.stdout
    assert "3 passed, 0 failed" in result.stdout


def test_a_stage_run_alone_is_given_its_history_too(tmp_path):
    case = {
        "name": "velocity alone",
        "stage": "velocity",
        "history": [record(1), record(2)],
        "input": record(3),
        "expect": {"route": "reject", "outcomes": {"limit": "FAIL"}},
    }

    result = run_cases(tmp_path, [case])

    assert result.exit_code == 0, result.stdout


def test_a_failing_case_names_the_history_records_that_dead_lettered(tmp_path):
    case = {
        "name": "history with a broken record",
        "history": [record(1), {"id": "P-2"}],  # no customer: the counter errors
        "input": record(3),
        "expect": {"status": "rejected"},
    }

    result = run_cases(tmp_path, [case])

    assert result.exit_code == 1
    assert "status: expected 'rejected', got 'approved'" in result.stdout
    assert "history[1] was dead-lettered by counter: rule_error: KeyError" in result.stdout
    assert "history[0]" not in result.stdout


def test_a_passing_case_says_nothing_of_its_history(tmp_path):
    case = {
        "name": "history with a broken record",
        "history": [{"id": "P-2"}],
        "input": record(3),
        "expect": {"status": "approved"},
    }

    result = run_cases(tmp_path, [case])

    assert result.exit_code == 0
    assert "history" not in result.stdout.replace("history with a broken record", "")


def test_history_must_be_a_list_of_records(tmp_path):
    case = {"name": "bad", "history": ["P-1"], "input": record(1), "expect": {}}

    result = run_cases(tmp_path, [case])

    assert result.exit_code == 1
    assert "cases[0].history[0]: Input should be a valid dictionary (line 4)" in result.output


def test_test_help_documents_history():
    assert "history (earlier records" in invoke("test", "--help").stdout


# -- eval -----------------------------------------------------------------------------------


def test_eval_keeps_state_across_its_input_lines_and_batches(tmp_path):
    batch = inspect.signature(OfflineEvaluator).parameters["batch_size"].default
    lines = [record(n, f"other-{n}") for n in range(1, batch + 11)]
    # C-1 on the first two lines and on the first line of the second batch
    for n in (1, 2, batch + 1):
        lines[n - 1] = record(n)
    stdin = b"".join(orjson.dumps(line) + b"\n" for line in lines)

    result = invoke("eval", write_pipeline(tmp_path), stdin=stdin)

    assert result.exit_code == 0, result.output
    decisions = [orjson.loads(line) for line in result.stdout.splitlines()]
    counts = [d["results"]["counter"]["details"]["state"]["count"] for d in decisions]
    assert len(decisions) == len(lines)
    assert (counts[0], counts[1], counts[batch]) == (1, 2, 3)
    assert decisions[batch]["status"] == "rejected"
    assert [d["status"] for d in decisions].count("rejected") == 1


# -- plan -----------------------------------------------------------------------------------


def test_plan_as_json_shows_each_stages_key_and_stores(tmp_path):
    result = invoke("plan", write_pipeline(tmp_path), "--format", "json")

    stages = {s["stage"]: s for s in orjson.loads(result.stdout)["stages"]}
    assert stages["intake"]["key"] == {"by": "record_id", "key_field": "id"}
    assert stages["intake"]["stores"] == []
    assert stages["velocity"]["key"] == {"by": "fields", "fields": ["customer"], "hashed": False}
    assert stages["velocity"]["stores"] == [
        {"rule": "counter", "changelog": "pay.state.velocity.counter"}
    ]


def test_plan_says_a_pii_key_is_hashed(tmp_path):
    config = {**PIPELINE, "pii_fields": ["customer"]}
    path = write_pipeline(tmp_path, config)

    as_json = orjson.loads(invoke("plan", path, "--format", "json").stdout)
    table = wide_table(path)

    assert as_json["stages"][1]["key"]["hashed"] is True
    assert "customer (hashed)" in table


def test_plan_table_shows_the_key_and_each_store_with_its_changelog(tmp_path):
    table = wide_table(write_pipeline(tmp_path))

    assert "key and state" in table
    assert "record id (input.key_field id)" in table
    assert "state counter → pay.state.velocity.counter" in table


def test_plan_table_of_a_pipeline_without_state_says_the_key_in_one_line(tmp_path):
    config = {**PIPELINE, "stages": {"intake": PIPELINE["stages"]["intake"]}}

    table = wide_table(write_pipeline(tmp_path, config))

    assert "key and state" not in table
    assert (
        "keys: every stage's records are keyed by record id (input.key_field id): none keeps"
        in table
    )


def test_plan_without_a_key_field_keys_by_record_id(tmp_path):
    config = {k: v for k, v in PIPELINE.items() if k != "input"}
    config["stages"] = {"intake": PIPELINE["stages"]["intake"]}

    result = invoke("plan", write_pipeline(tmp_path, config), "--format", "json")

    assert orjson.loads(result.stdout)["stages"][0]["key"] == {"by": "record_id", "key_field": None}
