"""The API's output reader on a real broker: it reads every partition of every output topic
(on Apache Kafka a consumer without a subscription knows no topic's partitions, so they are
asked of the cluster)."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaProducer
from broker_fixtures import ensure_topics

from stream_engine.api.outputs import OutputReader
from stream_engine.api.view import DecisionView
from stream_engine.core.outcome import OutputKind
from stream_engine.runtime.cluster.topics import describe_topics, pipeline_topics
from stream_engine.runtime.stage.codec import DLQ_PREFIX, TRACE_HEADER


async def test_the_output_reader_puts_a_decision_from_every_output_partition_in_the_view(
    make_pipeline, kafka
):
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    topics = pipeline_topics(pipeline)
    names = [topics.for_output(kind.value) for kind in OutputKind]
    counts = await describe_topics(names, kafka)
    view = DecisionView(max_decisions=1000, retention_s=3600, max_pending=10)
    reader = OutputReader(topics, kafka, view, auth=None)
    await reader.start()
    producer = AIOKafkaProducer(**kafka.producer())
    await producer.start()
    expected: list[str] = []
    answers = []
    try:
        for topic in names:
            for partition in range(counts[topic] or 0):
                record_id = f"{topic}-{partition}"
                trace = f"00-{partition + 1:032x}-{len(expected) + 1:016x}-01"
                expected.append(record_id)
                answers.append(view.expect(record_id, trace))
                if topic == topics.dlq:
                    headers = [
                        (DLQ_PREFIX + "record_id", record_id.encode()),
                        (TRACE_HEADER, trace.encode()),
                    ]
                    value = b"original bytes"
                else:
                    headers = []
                    body = {"record_id": record_id, "status": "approved", "trace": trace}
                    value = orjson.dumps(body)
                await producer.send_and_wait(
                    topic, value, key=record_id.encode(), partition=partition, headers=headers
                )
        await asyncio.wait(answers, timeout=20)
    finally:
        await producer.stop()
        await reader.stop()

    assert len(expected) == sum(counts.values()) > len(names)
    assert [i for i, a in zip(expected, answers, strict=True) if not a.done()] == []
    assert [a.result().record_id for a in answers] == expected
