"""``runtime.processing_guarantee``: exactly_once is refused where it cannot hold (the embedded
broker, the faust driver), and on Apache Kafka decides records with transactions."""

from __future__ import annotations

import asyncio

import pytest
from broker_fixtures import ensure_topics
from harness import numbered, read_outcomes

from stream_engine.errors import ConfigErrors
from stream_engine.runtime.cluster.topics import pipeline_topics


async def test_exactly_once_on_the_embedded_broker_stops_the_worker_with_a_clear_error(
    broker_kind, driver, make_pipeline, kafka, worker_process
):
    if broker_kind != "embedded" or driver != "batch":
        pytest.skip("the embedded broker's refusal, seen by the batch driver")
    pipeline = make_pipeline(runtime__processing_guarantee="exactly_once")
    await ensure_topics(pipeline, kafka)
    worker = worker_process(pipeline.effective.path)

    code = await asyncio.to_thread(worker.wait, 90)

    log = worker.log.read_text()
    assert code == 1
    assert "refused a transactional producer" in log
    assert "use at_least_once" in log
    assert "Traceback" not in log


def test_exactly_once_with_the_faust_driver_is_a_located_config_error(tmp_path):
    from stream_engine.pipeline import load_pipeline

    path = tmp_path / "eos.yaml"
    path.write_text(
        "pipeline: eos\nruntime: {driver: faust, processing_guarantee: exactly_once}\n"
        "stages:\n  one:\n    rules:\n      r: {class: RequiredFields, params: {fields: [a]}}\n"
    )
    with pytest.raises(ConfigErrors) as raised:
        load_pipeline(path)

    assert "runtime.processing_guarantee" in str(raised.value)
    assert "needs runtime.driver: batch" in str(raised.value)


async def test_exactly_once_on_apache_kafka_decides_every_record_once(
    broker_kind, driver, make_pipeline, kafka, client_for, running
):
    if broker_kind != "kafka" or driver != "batch":
        pytest.skip("transactions need Apache Kafka and the batch driver")
    pipeline = make_pipeline(runtime__processing_guarantee="exactly_once")
    records = numbered(600)
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many(records)
    outcomes = await read_outcomes(
        kafka, pipeline_topics(pipeline), len(records), 120, quiet_s=2, committed=True
    )

    ids = [o.record_id for o in outcomes]
    assert sorted(ids) == sorted(r["application_id"] for r in records)
