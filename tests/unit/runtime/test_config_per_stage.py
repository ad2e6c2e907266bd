"""Which configuration decided: each audit entry names the version and hash that ran its
stage, and a decision whose stages ran under different configurations (a rollout) says so,
is counted, and is warned about once per configuration in the worker's log."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
from runtime_helpers import auth, load_small, message

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.observe.metrics import Metrics
from stream_engine.runtime.stage.codec import Incoming
from stream_engine.runtime.stage.processor import StageProcessor


def rollout(tmp_path: Path) -> tuple[CompiledPipeline, CompiledPipeline]:
    """The pipeline at version 1.0 and at 1.1 (another hash), as two workers would run them."""
    (tmp_path / "old").mkdir()
    return load_small(tmp_path / "old"), load_small(tmp_path, version="1.1")


def stage(pipeline: CompiledPipeline, name: str) -> StageProcessor:
    return StageProcessor(
        pipeline, pipeline.plan.stage(name), pipeline_topics(pipeline), "w", auth()
    )


async def through(old: CompiledPipeline, new: CompiledPipeline, *names: str) -> list[dict]:
    """Records through ``checks`` under ``old`` and ``scoring`` under ``new``."""
    first = await stage(old, "checks").process(
        [message({"id": n, "name": n}, topic="demo.input", offset=i) for i, n in enumerate(names)]
    )
    hops = [
        Incoming(o.topic, 0, i, 0, o.key, o.value, o.headers) for i, o in enumerate(first.outgoing)
    ]
    last = stage(new, "scoring")
    report = await last.process(hops)
    assert len(report.decisions) == len(names)
    return [orjson.loads(o.value) for o in report.outgoing]


async def test_each_audit_entry_names_the_configuration_that_ran_its_stage(tmp_path: Path):
    pipeline = load_small(tmp_path)
    [decision] = await through(pipeline, pipeline, "a")
    assert [(e["config_version"], e["config_hash"]) for e in decision["audit"]] == [
        ("1.0", pipeline.plan.config_hash)
    ] * 2
    assert decision["config_mixed"] is False


async def test_a_decision_whose_stages_ran_different_configurations_says_so(tmp_path, caplog):
    old, new = rollout(tmp_path)
    assert old.plan.config_hash != new.plan.config_hash
    caplog.set_level(logging.WARNING, "stream_engine.runtime.stage.processor")
    decisions = await through(old, new, "a", "b")
    assert [d["config_mixed"] for d in decisions] == [True, True]
    assert [e["config_version"] for e in decisions[0]["audit"]] == ["1.0", "1.1"]
    warnings = [r.getMessage() for r in caplog.records if "config_mixed" in r.getMessage()]
    assert len(warnings) == 1  # once per configuration, not per record
    assert old.plan.config_hash in warnings[0]


async def test_mixed_decisions_are_counted_from_zero(tmp_path: Path):
    old, new = rollout(tmp_path)
    metrics = Metrics()
    metrics.stage_started("demo", "scoring")
    assert metrics.values["config_mixed_decisions"][("demo",)] == 0
    first = await stage(old, "checks").process(
        [message({"id": "a", "name": "a"}, topic="demo.input")]
    )
    hop = first.outgoing[0]
    report = await stage(new, "scoring").process(
        [Incoming(hop.topic, 0, 0, 0, hop.key, hop.value, hop.headers)]
    )
    metrics.stage_batch("demo", "scoring", report.outcomes, report.decisions, [], 0.01)
    assert metrics.values["config_mixed_decisions"][("demo",)] == 1
