"""PII on the way through the onboarding pipeline (``pii_fields: [ssn, date_of_birth]``), stage
processor by stage processor, as the Kafka agents run it: SSNs and dates of birth quoted by
careless rules never reach a result, a reason, an audit entry, a dead-letter header, a metric or
a log line - while the inter-stage envelope's data (which later stages need), a dead letter's
original bytes (which replay needs) and, by default, the decisions' data keep them."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import generate_latest
from runtime_helpers import ONBOARDING, application, message

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.core.result import Verdict, failed, passed
from stream_engine.core.rule import RuleContext
from stream_engine.pipeline import load_pipeline
from stream_engine.rules import RULES, ConfiguredRule, RuleParams
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.observe.metrics import Metrics, new_registry
from stream_engine.runtime.stage.codec import Incoming
from stream_engine.runtime.stage.processor import BatchReport, Outgoing, StageProcessor

#: Passes every stage: approved.
GOOD = application(application_id="APP-GOOD")
#: Its SSN is on the block list: rejected in data_quality, by a rule that quotes it.
BLOCKED = application(application_id="APP-BLOCKED", ssn="078-05-1120", date_of_birth="1962-07-04")
#: A rule cannot read its date of birth and says so: dead-lettered in data_quality.
BROKEN = application(
    application_id="APP-BROKEN", ssn="219-09-9999", date_of_birth="1971-11-30", explode=True
)
RECORDS = (GOOD, BLOCKED, BROKEN)
PII = [value for record in RECORDS for value in (record["ssn"], record["date_of_birth"])]
DLQ = "customer_onboarding.dlq"
KEY = "pii-hash-key-from-the-environment"


class BlockListParams(RuleParams):
    field: str
    blocked: list[str]


class BlockList(ConfiguredRule[BlockListParams]):
    """A careless custom rule: its message and details quote the value it refuses."""

    Params = BlockListParams

    def evaluate(self, ctx: RuleContext) -> Verdict:
        value = ctx.data.get(self.params.field)
        if value in self.params.blocked:
            return failed(f"{self.params.field} {value} is on the block list", value=value)
        return passed(f"{self.params.field} is not blocked")


class ParseBirthDateParams(RuleParams):
    field: str


class ParseBirthDate(ConfiguredRule[ParseBirthDateParams]):
    """A buggy custom rule: raises, quoting the value, so the record is dead-lettered."""

    Params = ParseBirthDateParams

    def evaluate(self, ctx: RuleContext) -> Verdict:
        raise ValueError(f"cannot read {ctx.data.get(self.params.field)!r} as a date")


class QuoteFieldParams(RuleParams):
    field: str


class QuoteField(ConfiguredRule[QuoteFieldParams]):
    """A careless custom rule: quotes a whole field (an object, say) when it has one."""

    Params = QuoteFieldParams

    def evaluate(self, ctx: RuleContext) -> Verdict:
        value = ctx.data.get(self.params.field)
        return passed(f"{self.params.field} is {value}", seen=value) if value else passed()


@pytest.fixture
def careless_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    RULES.names()  # entry points first, so nothing registers over these later
    monkeypatch.setitem(RULES._classes, "BlockList", BlockList)
    monkeypatch.setitem(RULES._classes, "ParseBirthDate", ParseBirthDate)
    monkeypatch.setitem(RULES._classes, "QuoteField", QuoteField)


def onboarding_with_careless_rules(
    directory: Path,
    environ: dict[str, str] | None = None,
    pii_fields: list[str] | None = None,
    **pii: Any,
) -> CompiledPipeline:
    """configs/customer_onboarding.yaml plus a service echoing the SSN and date of birth into
    a result's details, and the careless rules above in data_quality."""
    config = yaml.safe_load(ONBOARDING.read_text())
    del config["topics"]["file"]  # the topic names are all these tests use
    del config["samples"]
    if pii:
        config["pii"] = pii
    if pii_fields is not None:
        config["pii_fields"] = pii_fields
    config["services"]["identity_echo"] = {
        "class": "SimulatedService",
        "params": {"fields": {"ssn_seen": "request.ssn", "born": "request.date_of_birth"}},
    }
    config["stages"]["preprocessing"]["rules"]["echo_identity"] = {
        "class": "ServiceCheck",
        "params": {
            "service": "identity_echo",
            "request_fields": ["ssn", "date_of_birth"],
            "details_fields": ["ssn_seen", "born"],
        },
    }
    data_quality = config["stages"]["data_quality"]["rules"]
    data_quality["ssn_block_list"] = {
        "class": "BlockList",
        "params": {"field": "ssn", "blocked": [BLOCKED["ssn"]]},
        "dependencies": ["required_personal_info"],
    }
    data_quality["co_applicant_echo"] = {
        "class": "QuoteField",
        "params": {"field": "co_applicant"},
    }
    data_quality["birth_date_parser"] = {
        "class": "ParseBirthDate",
        "params": {"field": "date_of_birth"},
        "when": "has(data.explode)",
    }
    path = directory / "customer_onboarding.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_pipeline(path, environ=environ or {})


def hop(out: Outgoing) -> Incoming:
    """What the next stage consumes of a message this stage produced."""
    return message(out.value, key=out.key, headers=out.headers, topic=out.topic)


async def through_pipeline(
    pipeline: CompiledPipeline, records: tuple[dict[str, Any], ...] = RECORDS
) -> tuple[list[tuple[str, BatchReport]], list[Outgoing]]:
    """Every record through every stage's processor in one batch per stage; the reports by
    stage and every message produced on the way."""
    topics = pipeline_topics(pipeline)
    batch = [message(record, offset=i) for i, record in enumerate(records)]
    reports: list[tuple[str, BatchReport]] = []
    produced: list[Outgoing] = []
    for stage in pipeline.plan.active_stages:
        processor = StageProcessor(pipeline, stage, topics, "w-1")
        report = await processor.process(batch)
        reports.append((stage.name, report))
        produced.extend(report.outgoing)
        batch = [hop(out) for out in report.outgoing if out.topic in topics.stage_inputs.values()]
    return reports, produced


def leaked(*texts: str | bytes) -> list[str]:
    """The PII values found in any of ``texts``."""
    blob = "\n".join(t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in texts)
    return [value for value in PII if value in blob]


def decisions_of(produced: list[Outgoing]) -> dict[str, dict[str, Any]]:
    return {
        out.key.decode(): orjson.loads(out.value)
        for out in produced
        if out.key and out.topic.split(".")[-1] in ("decisions", "rejected", "review")
    }


def dead_letters_of(produced: list[Outgoing]) -> list[Outgoing]:
    return [out for out in produced if out.topic == DLQ]


async def test_no_ssn_or_birth_date_leaves_the_pipeline_except_in_envelope_data(
    tmp_path, careless_rules, caplog
):
    pipeline = onboarding_with_careless_rules(tmp_path, mask_decisions=True)
    caplog.set_level(logging.DEBUG)
    reports, produced = await through_pipeline(pipeline)

    decisions = decisions_of(produced)
    assert {key: d["status"] for key, d in decisions.items()} == {
        "APP-GOOD": "approved",
        "APP-BLOCKED": "rejected",
    }
    assert [out.key for out in dead_letters_of(produced)] == [b"APP-BROKEN"]
    metrics = Metrics()
    for stage, report in reports:
        metrics.stage_batch("customer_onboarding", stage, *_counted(report), 0.01)
    everything: list[str | bytes] = [generate_latest(new_registry(metrics)), caplog.text]
    for _, report in reports:
        for outcome in report.outcomes:
            everything.append(orjson.dumps(outcome.reasons))
            everything.extend(orjson.dumps(r.to_dict()) for _, r in outcome.results)
            assert outcome.audit is not None
            everything.append(orjson.dumps(outcome.audit.to_dict()))
    for out in produced:
        everything.append(out.key or b"")
        everything.extend(value for _, value in out.headers)
        if out.topic == DLQ:
            continue  # the original bytes, for replay
        body = orjson.loads(out.value)
        if "decided_at" not in body:
            body.pop("data")  # an envelope: later stages need the real values
        everything.append(orjson.dumps(body))
    assert leaked(*everything) == []


async def test_dead_letter_headers_explain_the_error_without_the_value_it_quoted(
    tmp_path, careless_rules
):
    _, produced = await through_pipeline(onboarding_with_careless_rules(tmp_path))
    [letter] = dead_letters_of(produced)
    headers = dict(letter.headers)
    assert headers["dlq.rule"] == b"birth_date_parser"
    assert headers["dlq.exception.message"] == b"ValueError: cannot read '**********' as a date"
    assert leaked(*headers.values()) == []
    # the value is what data_quality consumed, untouched: replay needs the real values
    assert orjson.loads(letter.value)["data"]["date_of_birth"] == BROKEN["date_of_birth"]


async def test_envelopes_carry_the_real_values_in_data_and_scrubbed_ones_in_results(
    tmp_path, careless_rules
):
    pipeline = onboarding_with_careless_rules(tmp_path, mask_decisions=True)
    _, produced = await through_pipeline(pipeline, (GOOD,))
    envelope = orjson.loads(produced[0].value)
    assert produced[0].topic == "customer_onboarding.stage.data_quality"
    assert (envelope["data"]["ssn"], envelope["data"]["date_of_birth"]) == (
        "123-45-6789",
        "1985-03-15",
    )
    assert envelope["results"]["echo_identity"]["details"] == {
        "ssn_seen": "*******6789",
        "born": "**********",
    }


async def test_by_default_decisions_keep_real_data_but_never_quote_it_in_reasons_or_results(
    tmp_path, careless_rules
):
    _, produced = await through_pipeline(onboarding_with_careless_rules(tmp_path))
    decisions = decisions_of(produced)
    for key, record in (("APP-GOOD", GOOD), ("APP-BLOCKED", BLOCKED)):
        data = decisions[key]["data"]
        assert (data["ssn"], data["date_of_birth"]) == (record["ssn"], record["date_of_birth"])
        rest = {k: v for k, v in decisions[key].items() if k != "data"}
        assert leaked(orjson.dumps(rest)) == []
    assert decisions["APP-BLOCKED"]["reasons"] == [
        "ssn_block_list: ssn *******1120 is on the block list"
    ]


async def test_with_mask_decisions_the_decisions_data_is_masked(tmp_path, careless_rules):
    pipeline = onboarding_with_careless_rules(tmp_path, mask_decisions=True)
    _, produced = await through_pipeline(pipeline)
    decisions = decisions_of(produced)
    assert decisions["APP-GOOD"]["data"]["ssn"] == "*******6789"
    assert decisions["APP-GOOD"]["data"]["date_of_birth"] == "**********"
    assert leaked(*(orjson.dumps(d) for d in decisions.values())) == []


async def test_hash_mode_writes_keyed_hashes_in_decisions_and_reasons_alike(
    tmp_path, careless_rules
):
    pipeline = onboarding_with_careless_rules(
        tmp_path, {"PII_KEY": KEY}, mode="hash", hash_key="${PII_KEY}", mask_decisions=True
    )
    _, produced = await through_pipeline(pipeline, (BLOCKED,))
    [decision] = decisions_of(produced).values()
    digest = hmac.new(KEY.encode(), BLOCKED["ssn"].encode(), hashlib.sha256).hexdigest()[:16]
    assert decision["data"]["ssn"] == "sha256:" + digest
    assert decision["reasons"] == [f"ssn_block_list: ssn sha256:{digest} is on the block list"]


async def test_an_internal_error_is_logged_and_dead_lettered_without_the_values_it_quoted(
    tmp_path, careless_rules, caplog
):
    pipeline = onboarding_with_careless_rules(tmp_path)
    topics = pipeline_topics(pipeline)
    processor = StageProcessor(pipeline, pipeline.plan.stage("preprocessing"), topics, "w-1")

    async def broken(stage: Any, state: Any) -> Any:
        raise RuntimeError("internal bug on " + state.data["ssn"])

    processor.executor.run_stage = broken  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    report = await processor.process([message(GOOD), message(BLOCKED)])

    assert "internal error on record" in caplog.text
    assert "RuntimeError: internal bug on" in caplog.text
    assert leaked(caplog.text) == []
    messages = [dict(out.headers)["dlq.exception.message"] for out in report.outgoing]
    assert messages == [
        b"internal error on each of 3 attempts: RuntimeError: internal bug on *******6789",
        b"internal error on each of 3 attempts: RuntimeError: internal bug on *******1120",
    ]


def _counted(report: BatchReport) -> tuple[Any, Any, Any]:
    return report.outcomes, report.decisions, report.dead_letters


async def test_no_age_derived_from_the_date_of_birth_leaves_the_pipeline(tmp_path, careless_rules):
    _, produced = await through_pipeline(onboarding_with_careless_rules(tmp_path), (GOOD,))
    [decision] = decisions_of(produced).values()
    age = decision["results"]["age_verification"]
    assert (age["outcome"], age["message"]) == ("PASS", "applicant is at least 18")
    assert "details" not in age or not age["details"]
    rest = {k: v for k, v in decision.items() if k != "data"}
    assert "age " not in orjson.dumps(rest).decode()


async def test_a_nested_pii_field_is_protected_everywhere_a_top_level_one_is(
    tmp_path, careless_rules
):
    co_ssn = "524-71-3302"
    pipeline = onboarding_with_careless_rules(
        tmp_path, pii_fields=["ssn", "date_of_birth", "co_applicant.ssn"], mask_decisions=True
    )
    record = {**GOOD, "co_applicant": {"name": "Ann", "ssn": co_ssn}}
    _, produced = await through_pipeline(pipeline, (record,))
    [decision] = decisions_of(produced).values()
    assert decision["data"]["co_applicant"] == {"name": "Ann", "ssn": "*******3302"}
    assert decision["results"]["co_applicant_echo"]["details"] == {
        "seen": {"name": "Ann", "ssn": "*******3302"}
    }
    for out in produced:
        body = orjson.loads(out.value)
        if "decided_at" not in body:
            assert body["data"]["co_applicant"]["ssn"] == co_ssn  # later stages need it
            body.pop("data")
        assert co_ssn not in orjson.dumps(body).decode()
