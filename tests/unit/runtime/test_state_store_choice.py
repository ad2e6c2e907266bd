"""Workers keep state where the pipeline's ``state`` section says; ``eval`` always in memory."""

from __future__ import annotations

from pathlib import Path

from runtime_helpers import load_small

from stream_engine.core.rocks import RocksStore
from stream_engine.core.stores import StoreSpec, memory_stores
from stream_engine.offline import OfflineEvaluator
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.processor import StageProcessor

SPEC = StoreSpec("velocity", "scoring", ("id",))


def test_a_stage_keeps_state_in_memory_unless_the_pipeline_says_otherwise(tmp_path: Path):
    pipeline = load_small(tmp_path)
    processor = StageProcessor(
        pipeline, pipeline.plan.stage("scoring"), pipeline_topics(pipeline), "w-1"
    )
    assert processor.state.factory is memory_stores


def test_a_stage_keeps_state_on_disk_under_the_configured_path(tmp_path: Path):
    state = tmp_path / "state"
    pipeline = load_small(tmp_path, state={"store": "rocksdb", "path": str(state)})
    processor = StageProcessor(
        pipeline, pipeline.plan.stage("scoring"), pipeline_topics(pipeline), "w-1"
    )
    store = processor.state.factory(SPEC, 2)
    assert isinstance(store, RocksStore)
    assert store.path == state / "demo" / "scoring" / "velocity" / "2"
    store.close()


def test_an_evaluation_keeps_state_in_memory_whatever_the_pipeline_says(tmp_path: Path):
    pipeline = load_small(tmp_path, state={"store": "rocksdb", "path": str(tmp_path / "s")})
    evaluator = OfflineEvaluator(pipeline)
    assert {p.state.factory for p in evaluator.processors.values()} == {memory_stores}
