"""One path: what ``eval`` decides is what the workers decide on the broker, field by field
apart from times, latencies and positions - for every sample record of the example
pipelines (card_screening's velocity, merchant, spending and duplicate state included) and for
hostile lines (non-finite and huge numbers, numbers sent as text, records
over the size limit or nested too deep, repeated keys, odd Unicode, lines that are no
record at all)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from harness import read_outcomes, samples

from stream_engine.errors import ConfigErrors
from stream_engine.offline import OfflineEvaluator
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.topics import pipeline_topics

#: What differs between two runs of the same decision: clocks, timings, who and where.
VOLATILE = {"decided_at", "latency_ms", "source", "trace"}
VOLATILE_AUDIT = {"started_at", "duration_ms", "worker"}

#: Small enough that a hostile record is over it without a megabyte on the wire.
LIMITS = {
    "runtime.max_message_bytes": 16_384,
    "input.schema": {
        "type": "object",
        "properties": {"annual_income": {"type": "number"}, "email": {"type": "string"}},
    },
}


def hostile(base: dict[str, Any], prefix: str) -> list[bytes]:
    """Lines a producer can write: each with its own id where it has one at all."""
    id_field = "application_id" if "application_id" in base else "lead_id"

    def record(suffix: str, **changes: Any) -> bytes:
        return orjson.dumps(base | {id_field: f"{prefix}-{suffix}"} | changes)

    def bent(suffix: str, raw: bytes) -> bytes:
        """The text-number record with its number's bytes replaced and an id of its own."""
        return record(suffix, annual_income="75000").replace(b'"75000"', raw)

    return [
        record("TEXT", annual_income="75000"),
        record("BIG", notes="x" * 20_000),
        record("DEEP", extra=orjson.loads("[" * 40 + "]" * 40)),
        record("UNICODE", name="Zoë \u202eevil\u202c O\u2019Brien \u0000 🦄", city="İstanbul"),
        record("HUGE-DERIVED", annual_income=1.7e308, declared_monthly_debt=1.7e308),
        bent("INF", b"1e999"),  # not a number JSON can carry
        bent("INT", b"123456789012345678901234567890"),  # beyond 64 bits
        record("REPEATED").replace(b"{", b'{"email":"a@b.c",', 1),  # a repeated key
        b"not json at all",
        b"[1, 2, 3]",
    ]


async def both_ways(pipeline, lines: list[bytes], kafka, running, client_for):
    """The lines decided by ``eval`` and by workers on the broker: (answers, outcomes)."""
    twin = load_pipeline(pipeline.effective.path)  # the same file, services of its own
    offline = [a async for a in OfflineEvaluator(twin).decisions(lines)]
    assert len(offline) == len(lines)
    await running(pipeline, kafka)
    client = await client_for(pipeline)
    await client.publish_many(lines)
    found = await read_outcomes(kafka, pipeline_topics(pipeline), len(lines))
    assert len(found) == len(lines), "one outcome per line, no more"
    return offline, found


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """A decision without what two runs cannot share."""
    out = {k: v for k, v in answer.items() if k not in VOLATILE}
    out["audit"] = [{k: v for k, v in e.items() if k not in VOLATILE_AUDIT} for e in out["audit"]]
    out["results"] = {
        rule: {k: v for k, v in r.items() if k != "duration_ms"}
        for rule, r in out["results"].items()
    }
    return out


def letter_facts(headers: dict[str, str]) -> tuple[str, ...]:
    return tuple(
        headers.get(f"dlq.{k}", "")
        for k in ("stage", "reason", "rule", "exception.class", "exception.message")
    )


def offline_letter(answer: dict[str, Any]) -> tuple[str, ...]:
    letter = answer["dead_letter"]
    return (
        letter["stage"],
        letter["reason"],
        letter["rule"],
        letter["error_class"],
        letter["message"],
    )


async def compare_on_broker(base: str, make_pipeline, kafka, running, client_for) -> Counter[str]:
    lines = [orjson.dumps(r) for r in samples(base)]
    complete = [r for r in samples(base) if {"ssn", "phone", "date_of_birth"} <= set(r)]
    lines += hostile((complete or samples(base))[0], "H")  # a record that goes far
    pipeline = make_pipeline(base, **LIMITS)
    offline, found = await both_ways(pipeline, lines, kafka, running, client_for)

    decided = {o.record_id: o for o in found if o.kind != "dlq"}
    letters = {o.record_id: o for o in found if o.kind == "dlq" and o.record_id}
    anonymous = sorted(
        letter_facts(o.headers) for o in found if o.kind == "dlq" and not o.record_id
    )
    offline_anonymous = []
    for answer in offline:
        record_id = answer["record_id"]
        if answer["status"] != "dead_letter":
            assert comparable(decided[record_id].body) == comparable(answer), record_id
        elif record_id in letters:
            assert letter_facts(letters[record_id].headers) == offline_letter(answer), record_id
        else:
            assert record_id.startswith("line-"), record_id  # no id on Kafka either
            offline_anonymous.append(offline_letter(answer))
    assert anonymous == sorted(offline_anonymous)
    hostile_reasons = {
        a["dead_letter"]["reason"] for a in offline[-10:] if a["status"] == "dead_letter"
    }
    assert hostile_reasons == {"schema_invalid", "too_large", "limit_exceeded", "decode_error"}
    return Counter(answer["status"] for answer in offline)


async def test_onboarding_samples_and_hostile_lines_are_decided_alike_by_eval_and_workers(
    make_pipeline, kafka, running, client_for
):
    statuses = await compare_on_broker(
        "customer_onboarding", make_pipeline, kafka, running, client_for
    )
    assert statuses["approved"] > 100
    assert statuses["rejected"] > 30
    assert statuses["review"] > 5


async def test_lead_enrichment_samples_and_hostile_lines_are_decided_alike_by_eval_and_workers(
    make_pipeline, kafka, running, client_for
):
    statuses = await compare_on_broker("lead_enrichment", make_pipeline, kafka, running, client_for)
    assert statuses["completed"] > 0
    assert statuses["review"] > 0


#: card_screening's topics with one input partition: the samples are a timeline, and a card's
#: transactions reach the velocity stage in publication order only when nothing reorders them
#: before it (over several input partitions, arrival order is the broker's, as it would be in
#: production, and counts follow it).
ONE_INPUT_PARTITION = """
defaults: {partitions: 2, replication_factor: 1}
kinds: {input: {partitions: 1}}
"""


async def test_card_screening_velocity_and_duplicates_are_decided_alike_by_eval_and_workers(
    make_pipeline, kafka, running, client_for, tmp_path, driver
):
    (tmp_path / "one_input_partition.yaml").write_text(ONE_INPUT_PARTITION)
    if driver == "faust":  # the faust driver keeps no state: refused at load, located
        with pytest.raises(ConfigErrors, match=r"runtime\.driver"):
            make_pipeline("card_screening", topics__file="one_input_partition.yaml")
        return
    pipeline = make_pipeline("card_screening", topics__file="one_input_partition.yaml")
    lines = [orjson.dumps(r) for r in samples("card_screening")]
    offline, found = await both_ways(pipeline, lines, kafka, running, client_for)
    assert all(o.kind != "dlq" for o in found)
    on_kafka: dict[str, list[bytes]] = {}
    for outcome in found:
        on_kafka.setdefault(outcome.record_id, []).append(canonical(outcome.body))
    offline_by_id: dict[str, list[bytes]] = {}
    for answer in offline:
        offline_by_id.setdefault(answer["record_id"], []).append(canonical(answer))
    assert {k: sorted(v) for k, v in on_kafka.items()} == {
        k: sorted(v) for k, v in offline_by_id.items()
    }
    failed = Counter(
        rule for a in offline for rules in a["failed_rules"].values() for rule in rules
    )
    for rule in ("duplicate_transaction", "card_velocity", "merchant_spread", "hourly_spend_limit"):
        assert failed[rule] > 0, f"the samples exercise {rule}"


def canonical(answer: dict[str, Any]) -> bytes:
    return orjson.dumps(comparable(answer), option=orjson.OPT_SORT_KEYS)
