"""Workers keep state where the pipeline's ``state`` section says; ``eval`` always in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from runtime_helpers import load_small

from stream_engine.core.rocks import RocksStore, rocks_stores
from stream_engine.core.stores import StageState, StoreSpec, memory_stores
from stream_engine.offline import OfflineEvaluator
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.processor import StageProcessor

ROOT = Path(__file__).resolve().parents[3]
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


def card_screening(state_dir: Path | None) -> list[tuple[Any, ...]]:
    """The example's samples through ``eval``: per record its id, status and each result's
    outcome and message; its stores on disk under ``state_dir`` when one is given."""
    pipeline = load_pipeline(ROOT / "configs/card_screening.yaml", environ={})
    lines = (ROOT / "configs/samples/card_screening.jsonl").read_bytes().splitlines()
    evaluator = OfflineEvaluator(pipeline, batch_size=64, clock=lambda: 1_800_000_000.0)
    if state_dir is not None:
        for processor in evaluator.processors.values():
            stores = rocks_stores(state_dir, pipeline.plan.name)
            processor.state = StageState(processor.stage.stores, stores)

    async def run() -> list[dict[str, Any]]:
        return [d async for d in evaluator.decisions(lines)]

    decisions = asyncio.run(run())
    if state_dir is not None:
        assert any(p.state.partitions for p in evaluator.processors.values())
        for processor in evaluator.processors.values():
            processor.state.close()
    return [
        (
            d["record_id"],
            d["status"],
            {n: (r["outcome"], r["message"]) for n, r in d["results"].items()},
        )
        for d in decisions
    ]


def test_the_card_screening_example_decides_the_same_with_its_state_on_disk(tmp_path: Path):
    in_memory = card_screening(None)
    failing = {name for *_, results in in_memory for name, (o, _) in results.items() if o == "FAIL"}
    assert {"duplicate_transaction", "card_velocity", "merchant_spread"} <= failing
    assert card_screening(tmp_path) == in_memory
    assert not any(tmp_path.rglob("CURRENT"))
