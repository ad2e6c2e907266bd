"""Envelopes that cannot be forged: what a worker writes carries an HMAC tag over its topic and
bytes, a stage verifies it before trusting earlier results, and whatever does not verify - no
tag, an altered envelope, one moved to another stage's topic, an unknown key - is dead-lettered
``integrity`` while the batch goes on."""

from __future__ import annotations

import orjson
import pytest
import yaml
from runtime_helpers import (
    ONBOARDING,
    application,
    auth,
    message,
    onboarding,
    signed,
    write_pipeline,
)

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.core.outcome import DeadLetterReason
from stream_engine.errors import ConfigError
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.integrity import AUTH_HEADER, KEY_ENV, EnvelopeAuth, envelope_auth
from stream_engine.runtime.stage.processor import BatchReport, Outgoing, StageProcessor

STAGE = "customer_onboarding.stage.{}"
BUSINESS = STAGE.format("business_rules")
COMPLIANCE = STAGE.format("compliance")
DLQ = "customer_onboarding.dlq"


@pytest.fixture
def pipeline() -> CompiledPipeline:
    return onboarding()


def processor(pipeline: CompiledPipeline, stage: str, keys: EnvelopeAuth | None = None):
    topics = pipeline_topics(pipeline)
    return StageProcessor(pipeline, pipeline.plan.stage(stage), topics, "w-1", keys or auth())


async def envelope_for(pipeline: CompiledPipeline, stage: str) -> Outgoing:
    """A good application's envelope as it is written to ``stage``'s topic."""
    topics = pipeline_topics(pipeline)
    order = list(topics.stage_inputs)
    pending = message(application())
    for name in order[: order.index(stage)]:
        report = await processor(pipeline, name).process([pending])
        [out] = report.outgoing
        pending = message(out.value, key=out.key, headers=out.headers, topic=out.topic)
    return out


def letters(report: BatchReport) -> list[dict[str, bytes]]:
    return [dict(out.headers) for out in report.outgoing if out.topic == DLQ]


def forged_approval(body: dict) -> dict:
    """The review's forgery: every earlier compliance rule claims PASS, audit names a worker."""
    forged = dict(body)
    forged["results"] = {
        **body["results"],
        "sanctions_screening": {"stage": "compliance", "outcome": "PASS", "message": "clear",
                                "details": {}, "duration_ms": 1.0, "attempts": 1, "cost": 0.0},
    }  # fmt: skip
    return forged


async def test_an_unsigned_envelope_claiming_compliance_passed_is_dead_lettered_integrity(
    pipeline,
):
    good = await envelope_for(pipeline, "business_rules")
    forged = orjson.dumps(forged_approval(orjson.loads(good.value)))
    genuine = message(good.value, key=good.key, headers=good.headers, topic=BUSINESS, offset=1)
    report = await processor(pipeline, "business_rules").process(
        [message(forged, key=b"APP-1", topic=BUSINESS), genuine]
    )
    [letter] = letters(report)
    assert letter["dlq.reason"] == b"integrity"
    assert letter["dlq.exception.message"].startswith(b"no se.auth header")
    assert [d.reason for d in report.dead_letters] == [DeadLetterReason.INTEGRITY]
    assert len(report.outcomes) == 1, "only the genuine envelope ran"
    assert [o.topic for o in report.outgoing if o.topic != DLQ] == [STAGE.format("post_processing")]


async def test_an_altered_envelope_with_the_old_tag_is_dead_lettered_integrity(pipeline):
    good = await envelope_for(pipeline, "business_rules")
    altered = orjson.dumps(forged_approval(orjson.loads(good.value)))
    report = await processor(pipeline, "business_rules").process(
        [message(altered, key=b"APP-1", headers=good.headers, topic=BUSINESS)]
    )
    [letter] = letters(report)
    assert letter["dlq.reason"] == b"integrity"
    assert b"does not match" in letter["dlq.exception.message"]


async def test_an_envelope_moved_to_a_later_stage_topic_does_not_verify(pipeline):
    compliance_bound = await envelope_for(pipeline, "compliance")
    report = await processor(pipeline, "business_rules").process(
        [message(compliance_bound.value, key=b"APP-1", headers=compliance_bound.headers,
                 topic=BUSINESS)]
    )  # fmt: skip
    [letter] = letters(report)
    assert letter["dlq.reason"] == b"integrity"


async def test_a_signed_envelope_verifies_and_is_decided(pipeline):
    good = await envelope_for(pipeline, "compliance")
    report = await processor(pipeline, "compliance").process(
        [message(good.value, key=good.key, headers=good.headers, topic=COMPLIANCE)]
    )
    assert letters(report) == []
    [out] = report.outgoing
    assert out.topic == BUSINESS
    assert auth().verify(BUSINESS, out.value, out.headers) is None


async def test_an_envelope_signed_with_an_unknown_key_id_is_refused(pipeline):
    good = await envelope_for(pipeline, "compliance")
    stranger = EnvelopeAuth({"k9": b"s" * 32}, "k9")
    headers = stranger.seal(COMPLIANCE, good.value, [])
    report = await processor(pipeline, "compliance").process(
        [message(good.value, key=good.key, headers=headers, topic=COMPLIANCE)]
    )
    [letter] = letters(report)
    assert b"unknown key id 'k9'" in letter["dlq.exception.message"]


async def test_after_a_key_rotation_envelopes_signed_with_the_old_key_still_verify(pipeline):
    old = EnvelopeAuth({"k1": b"1" * 32}, "k1")
    rotated = EnvelopeAuth({"k2": b"2" * 32, "k1": b"1" * 32}, "k2")
    first = await processor(pipeline, "preprocessing", old).process([message(application())])
    [out] = first.outgoing
    report = await processor(pipeline, "data_quality", rotated).process(
        [message(out.value, key=out.key, headers=out.headers, topic=out.topic)]
    )
    assert letters(report) == []
    assert [o.headers[-1][1].split(b":")[0] for o in report.outgoing] == [b"k2"]


async def test_a_dead_letter_is_tagged_over_its_headers_and_a_changed_header_breaks_it(pipeline):
    report = await processor(pipeline, "preprocessing").process([message(b"not json", key=b"X")])
    [out] = report.outgoing
    keys = auth()
    assert keys.verify(DLQ, out.value, out.headers, bind=True) is None
    forged = [(k, b"business_rules" if k == "dlq.stage" else v) for k, v in out.headers]
    assert keys.verify(DLQ, out.value, forged, bind=True) is not None


async def test_a_dead_letter_of_an_envelope_keeps_its_original_tag_for_replay(pipeline):
    good = await envelope_for(pipeline, "compliance")
    broken = orjson.loads(good.value)
    broken["results"] = []
    report = await processor(pipeline, "compliance").process([signed(broken, COMPLIANCE, b"APP-1")])
    [letter] = letters(report)
    assert letter["dlq.reason"] == b"decode_error"
    original = [(AUTH_HEADER, letter["dlq.original.auth"])]
    assert auth().verify(COMPLIANCE, orjson.dumps(broken), original) is None


async def test_with_envelope_auth_off_nothing_is_signed_or_verified(tmp_path):
    config = yaml.safe_load(ONBOARDING.read_text())
    del config["topics"]["file"]
    del config["samples"]
    config.setdefault("runtime", {})["envelope_auth"] = False
    unsigned = load_pipeline(write_pipeline(tmp_path, config))
    assert envelope_auth(unsigned) is None
    first = await StageProcessor(
        unsigned, unsigned.plan.stage("preprocessing"), pipeline_topics(unsigned), "w"
    ).process([message(application())])
    [out] = first.outgoing
    assert AUTH_HEADER not in dict(out.headers)
    report = await StageProcessor(
        unsigned, unsigned.plan.stage("data_quality"), pipeline_topics(unsigned), "w"
    ).process([message(out.value, key=out.key, topic=out.topic)])
    assert letters(report) == []
    assert all(AUTH_HEADER not in dict(o.headers) for o in report.outgoing)


def test_without_a_key_a_worker_refuses_to_start_and_says_how_to_fix_it(pipeline, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError) as raised:
        envelope_auth(pipeline)
    assert "runtime.envelope_keys" in str(raised.value)
    assert "runtime.envelope_auth: off" in str(raised.value)


def test_a_key_from_the_environment_signs_and_the_configured_ones_still_verify(pipeline):
    keys = envelope_auth(pipeline, {KEY_ENV: "env-key:" + "e" * 32})
    assert keys is not None
    assert keys.signing == "env-key"
    assert keys.keys["env-key"] == b"e" * 32


@pytest.mark.parametrize("value", ["no-colon", ":" + "e" * 32, "k:short"])
def test_a_malformed_key_in_the_environment_is_a_config_error(pipeline, value):
    with pytest.raises(ConfigError, match=KEY_ENV):
        envelope_auth(pipeline, {KEY_ENV: value})
