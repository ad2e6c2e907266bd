"""A stage that keeps state, through the processor: records reach it keyed by its state key,
it decides them with its partition's stores, and every change leaves as a changelog message to
that partition; the compiler refuses stages whose state cannot be partitioned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import Field
from runtime_helpers import auth, message, small_config, write_pipeline

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.core.result import Verdict, failed, passed
from stream_engine.core.rule import RuleContext
from stream_engine.core.stores import decode_entry
from stream_engine.errors import ConfigErrors
from stream_engine.pipeline import load_pipeline
from stream_engine.rules.base import ConfiguredRule, RuleParams, register_rule
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.codec import Incoming
from stream_engine.runtime.stage.processor import StageProcessor


class CountParams(RuleParams):
    """Count records per ``key``."""

    key: str = Field("card", description="the field records are counted by")


@register_rule("TestCountPerKey")
class CountPerKey(ConfiguredRule[CountParams]):
    """Counts each delivery once per key; FAIL from the third."""

    Params = CountParams

    def state_key(self) -> tuple[str, ...]:
        return (self.params.key,)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        assert ctx.stores is not None
        state = ctx.stores.state(self.store_name)
        key = str(ctx.data[self.params.key])
        seen: list[str] = state.get(key) or []
        if ctx.stores.identity not in seen:
            seen = [*seen, ctx.stores.identity]
            state.put(key, seen, 10**13)
        if len(seen) < 3:
            return passed(count=len(seen))
        return failed(f"{len(seen)} seen", count=len(seen))


def counting(tmp_path: Path, **stage: Any) -> CompiledPipeline:
    config = small_config()
    config["stages"]["scoring"]["rules"] = {
        "count": {"class": "TestCountPerKey", "params": stage or {}}
    }
    return load_pipeline(write_pipeline(tmp_path, config))


def processor(pipeline: CompiledPipeline, name: str) -> StageProcessor:
    return StageProcessor(
        pipeline, pipeline.plan.stage(name), pipeline_topics(pipeline), "w", auth()
    )


async def hop(pipeline: CompiledPipeline, records: list[dict[str, Any]]) -> list[Incoming]:
    first = await processor(pipeline, "checks").process(
        [message(r, topic="demo.input", offset=i) for i, r in enumerate(records)]
    )
    return [
        Incoming(o.topic, 2, i, 0, o.key, o.value, o.headers) for i, o in enumerate(first.outgoing)
    ]


async def test_the_stage_before_a_keyed_stage_produces_its_records_keyed_by_the_state_key(
    tmp_path: Path,
):
    pipeline = counting(tmp_path)
    hops = await hop(pipeline, [{"id": "t1", "name": "a", "card": "C-9"}])
    assert [h.key for h in hops] == [b"C-9"]
    assert orjson.loads(hops[0].value or b"")["record_id"] == "t1"


async def test_a_keyed_stage_counts_per_key_and_writes_each_change_to_its_partition(
    tmp_path: Path,
):
    pipeline = counting(tmp_path)
    records = [{"id": f"t{i}", "name": "a", "card": "C-1" if i < 3 else "C-2"} for i in range(4)]
    stage = processor(pipeline, "scoring")
    report = await stage.process(await hop(pipeline, records))
    assert [d.status.value for d in report.decisions] == [
        "approved",
        "approved",
        "rejected",
        "approved",
    ]
    assert {d.record_id for d in report.decisions} == {"t0", "t1", "t2", "t3"}
    changes = {(o.topic, o.partition, o.key): o.value for o in report.changes}
    assert set(changes) >= {
        ("demo.state.scoring.count", 2, b"C-1"),
        ("demo.state.scoring.count", 2, b"C-2"),
    }
    value, _ = decode_entry(changes[("demo.state.scoring.count", 2, b"C-1")] or b"")
    assert len(value) == 3
    assert all(o.headers for o in report.changes), "changelog messages are sealed"


async def test_a_redelivered_batch_is_not_counted_twice(tmp_path: Path):
    pipeline = counting(tmp_path)
    hops = await hop(pipeline, [{"id": f"t{i}", "name": "a", "card": "C-1"} for i in range(2)])
    stage = processor(pipeline, "scoring")
    await stage.process(hops)
    again = await stage.process(hops)
    assert [d.status.value for d in again.decisions] == ["approved", "approved"]
    [partition] = stage.state.partitions.values()
    assert len(partition["count"].get("C-1")) == 2


def test_stateful_rules_of_one_stage_with_different_keys_are_refused(tmp_path: Path):
    config = small_config()
    config["stages"]["scoring"]["rules"] = {
        "by_card": {"class": "TestCountPerKey", "params": {"key": "card"}},
        "by_device": {"class": "TestCountPerKey", "params": {"key": "device"}},
    }
    with pytest.raises(ConfigErrors, match="different keys"):
        load_pipeline(write_pipeline(tmp_path, config))


def test_a_first_stage_keyed_by_anything_but_the_record_id_is_refused(tmp_path: Path):
    config = small_config()
    config["stages"]["checks"]["rules"]["count"] = {"class": "TestCountPerKey"}
    with pytest.raises(ConfigErrors, match="first stage receives records keyed by their id"):
        load_pipeline(write_pipeline(tmp_path, config))


def test_a_first_stage_keyed_by_the_record_id_is_accepted(tmp_path: Path):
    config = small_config()
    config["stages"]["checks"]["rules"]["count"] = {
        "class": "TestCountPerKey",
        "params": {"key": "id"},
    }
    pipeline = load_pipeline(write_pipeline(tmp_path, config))
    assert pipeline.plan.stage("checks").key_fields == ("id",)


async def test_a_message_refused_by_a_keyed_stage_names_no_record_id_rather_than_its_key(
    tmp_path: Path,
):
    pipeline = counting(tmp_path)
    forged = Incoming("demo.stage.scoring", 0, 0, 0, b"C-1", b'{"record_id": "x"}', [])
    report = await processor(pipeline, "scoring").process([forged])
    [letter] = report.outgoing
    headers = dict(letter.headers)
    assert headers["dlq.reason"] == b"integrity"
    assert headers["dlq.record_id"] == b""
    assert letter.key == b"C-1"
