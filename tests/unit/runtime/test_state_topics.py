"""A stateful rule's changelog topic: listed with the pipeline's topics (kind ``state``),
compacted, with its stage topic's partitions whatever the topics file says, readable and
writable by the workers only; and a pipeline with state refuses the faust driver."""

from __future__ import annotations

import pytest
import yaml
from state_helpers import (
    RULE,
    STAGE,
    count_rule,  # noqa: F401 - the fixture
    stateful_pipeline,
)

from stream_engine.errors import ConfigErrors
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.acls import Principals, grants
from stream_engine.runtime.cluster.topics import load_topics_file, pipeline_topics, topic_specs

WHO = Principals()

pytestmark = pytest.mark.usefixtures("count_rule")


def test_each_stateful_rule_has_a_changelog_named_after_its_pipeline_stage_and_rule(tmp_path):
    pipeline = stateful_pipeline(tmp_path, "localhost:9")
    topics = pipeline_topics(pipeline)
    changelog = f"{pipeline.plan.name}.state.{STAGE}.{RULE}"
    assert topics.changelogs() == [(changelog, topics.stage_inputs[STAGE])]
    assert topics.changelogs("intake") == []
    assert (changelog, "state") in topics.kinds()
    assert changelog in topics.all()


def test_a_changelog_is_compacted_with_its_stage_topics_partitions(tmp_path):
    pipeline = stateful_pipeline(tmp_path, "localhost:9", input_partitions=1)
    topics_file = tmp_path / f"{pipeline.plan.name}.topics.yaml"
    topics_file.write_text(
        yaml.safe_dump(
            {
                "defaults": {"partitions": 4, "retention_ms": 1000, "cleanup_policy": "delete",
                             "replication_factor": 1, "max_message_bytes": 2048},
                "kinds": {"input": {"partitions": 1}, "stage": {"partitions": 6}},
            }
        )
    )  # fmt: skip
    specs = {spec.kind: spec for spec in topic_specs(pipeline)}
    state = specs["state"]
    assert state.partitions == 6 == specs["stage"].partitions
    assert state.config == {"cleanup.policy": "compact", "max.message.bytes": "2048"}


def test_kinds_state_may_refine_a_changelog_but_not_its_partitions_nor_delete_it(tmp_path):
    path = tmp_path / "topics.yaml"
    path.write_text("kinds:\n  state: {partitions: 3, cleanup_policy: delete}\n")
    with pytest.raises(ConfigErrors) as raised:
        load_topics_file(path)
    assert [str(e) for e in raised.value.errors] == [
        "topics.yaml: kinds.state.partitions: a changelog has the partitions of its stage's "
        "topic (its partition p holds the state of input partition p): remove it (line 2)",
        "topics.yaml: kinds.state.cleanup_policy: a changelog must be compacted ('compact' or "
        "'compact,delete'), else state is lost (line 2)",
    ]
    path.write_text("kinds:\n  state: {cleanup_policy: 'compact,delete', retention_ms: 5}\n")
    assert load_topics_file(path).kinds["state"].retention_ms == 5


def test_only_the_workers_read_write_and_create_a_changelog(tmp_path):
    pipeline = stateful_pipeline(tmp_path, "localhost:9")
    ((changelog, _),) = pipeline_topics(pipeline).changelogs()
    on_it = [g for g in grants(pipeline, WHO) if g.resource == "topic" and g.name == changelog]
    assert [(g.principal, set(g.operations)) for g in on_it] == [
        (WHO.workers, {"Read", "Write", "Describe", "Create"})
    ]


def test_stateful_rules_with_the_faust_driver_are_a_located_config_error(tmp_path):
    pipeline = stateful_pipeline(tmp_path, "localhost:9")
    assert pipeline.effective.path is not None
    data = yaml.safe_load(pipeline.effective.path.read_text())
    data["runtime"]["driver"] = "faust"
    pipeline.effective.path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigErrors) as raised:
        load_pipeline(pipeline.effective.path)
    (error,) = raised.value.errors
    assert error.location == "runtime.driver"
    assert f"{STAGE}.{RULE}" in error.message
    assert "need runtime.driver: batch" in error.message
    assert "does not restore their state" in error.message
