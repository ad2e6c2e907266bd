"""The ACL script grants what a pipeline needs and nothing more: only the workers write the
stage, output and dead-letter topics and read the dead letters; producers write the input."""

from __future__ import annotations

from pathlib import Path

from runtime_helpers import onboarding

from stream_engine.runtime.cluster.acls import Principals, acl_script, grants
from stream_engine.runtime.cluster.topics import pipeline_topics

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "kafka"
WHO = Principals()


def writers_of(pipeline, topic: str) -> set[str]:
    return {
        g.principal
        for g in grants(pipeline, WHO)
        if g.resource == "topic" and g.name == topic and "Write" in g.operations
    }


def test_only_the_workers_may_write_a_stage_topic_an_output_or_the_dead_letters():
    pipeline = onboarding()
    topics = pipeline_topics(pipeline)
    later = list(topics.stage_inputs.values())[1:]
    for topic in [*later, topics.decisions, topics.rejected, topics.review, topics.dlq]:
        assert writers_of(pipeline, topic) == {WHO.workers}, topic
    assert writers_of(pipeline, topics.input) == {WHO.producers}


def test_only_the_workers_read_the_dead_letters_and_consumers_read_only_decisions():
    pipeline = onboarding()
    topics = pipeline_topics(pipeline)
    readers = {
        g.name: g.principal
        for g in grants(pipeline, WHO)
        if g.resource == "topic" and "Read" in g.operations and g.principal == WHO.consumers
    }
    assert set(readers) == {topics.decisions, topics.rejected, topics.review}
    dlq = [g for g in grants(pipeline, WHO) if g.resource == "topic" and g.name == topics.dlq]
    assert {g.principal for g in dlq} == {WHO.workers}


def test_the_committed_example_script_is_what_the_command_prints():
    expected = acl_script(onboarding(), WHO)
    assert (EXAMPLE / "acls-customer_onboarding.sh").read_text() == expected, (
        "regenerate: stream-engine topics acls configs/customer_onboarding.yaml "
        "> deploy/kafka/acls-customer_onboarding.sh"
    )
