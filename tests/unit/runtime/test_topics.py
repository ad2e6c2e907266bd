"""Topic names (defaults from the pipeline name, overrides from ``topics.names``) and topic
settings read from the files under topics/ - with one located line per problem in a bad file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from runtime_helpers import ROOT, load_small, onboarding, small_config

from stream_engine.errors import ConfigError, ConfigErrors
from stream_engine.runtime.cluster.topic_names import default_topic_names, topic_names
from stream_engine.runtime.cluster.topics import (
    DEFAULTS_FILE,
    TopicSpec,
    load_topics_file,
    pipeline_topics,
    settings_file,
    topic_specs,
)

WEEK, MONTH, QUARTER = "604800000", "2592000000", "7776000000"


def write_topics(directory: Path, text: str, name: str = "topics.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    """Every error line a topics file produces (fails the test if it loads)."""
    try:
        load_topics_file(path)
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    except ConfigError as exc:
        return [str(exc)]
    raise AssertionError(f"{path} loaded without errors")


# -- names ----------------------------------------------------------------------------------


def test_default_names_derive_from_the_pipeline_name():
    names = default_topic_names(onboarding().plan)
    assert names.stage_inputs == {
        "preprocessing": "customer_onboarding.input",
        "data_quality": "customer_onboarding.stage.data_quality",
        "compliance": "customer_onboarding.stage.compliance",
        "business_rules": "customer_onboarding.stage.business_rules",
        "post_processing": "customer_onboarding.stage.post_processing",
    }
    assert names.input == "customer_onboarding.input"
    assert (names.decisions, names.rejected, names.review, names.dlq) == (
        "customer_onboarding.decisions",
        "customer_onboarding.rejected",
        "customer_onboarding.review",
        "customer_onboarding.dlq",
    )


def test_kinds_list_the_input_then_every_later_stage_then_the_outputs():
    names = default_topic_names(onboarding().plan)
    assert [kind for _, kind in names.kinds()] == [
        "input",
        "stage",
        "stage",
        "stage",
        "stage",
        "decisions",
        "rejected",
        "review",
        "dlq",
    ]
    assert names.all() == [name for name, _ in names.kinds()]
    assert len(set(names.all())) == 9


def test_each_output_kind_maps_to_its_topic():
    names = default_topic_names(onboarding().plan)
    for kind in ("decisions", "rejected", "review", "dlq"):
        assert names.for_output(kind) == f"customer_onboarding.{kind}"


def test_a_disabled_stage_has_no_topic():
    names = default_topic_names(onboarding("development").plan)
    assert "compliance" not in names.stage_inputs
    assert names.stage_inputs["business_rules"] == "customer_onboarding.stage.business_rules"


def test_when_the_first_stage_is_disabled_the_next_one_reads_the_input_topic(tmp_path):
    stages = small_config()["stages"]
    stages["checks"]["enabled"] = False
    topics = pipeline_topics(load_small(tmp_path, stages=stages))
    assert topics.stage_inputs == {"scoring": "demo.input"}
    assert [kind for _, kind in topics.kinds()][:2] == ["input", "decisions"]


def test_names_in_the_config_replace_only_the_defaults_they_name(tmp_path):
    names = {
        "input": "applications",
        "stages": {"scoring": "scoring-queue"},
        "dlq": "dead-letters",
        "review": "manual.review",
    }
    topics = pipeline_topics(load_small(tmp_path, topics={"names": names}))
    assert topics.stage_inputs == {"checks": "applications", "scoring": "scoring-queue"}
    assert topics.input == "applications"
    assert (topics.decisions, topics.rejected, topics.review, topics.dlq) == (
        "demo.decisions",
        "demo.rejected",
        "manual.review",
        "dead-letters",
    )


def test_the_input_name_and_a_later_stages_name_each_name_their_own_topic(tmp_path):
    names = {"input": "applications", "stages": {"scoring": "scoring-in"}}
    topics = pipeline_topics(load_small(tmp_path, topics={"names": names}))
    assert topics.stage_inputs == {"checks": "applications", "scoring": "scoring-in"}


def test_a_first_stage_name_that_agrees_with_the_input_name_names_the_input(tmp_path):
    names = {"input": "applications", "stages": {"checks": "applications"}}
    topics = pipeline_topics(load_small(tmp_path, topics={"names": names}))
    assert topics.input == "applications"


def test_topic_names_without_overrides_are_the_defaults():
    plan = onboarding().plan
    assert topic_names(plan) == default_topic_names(plan)


# -- settings -------------------------------------------------------------------------------


def test_the_example_pipeline_reads_its_own_topics_file():
    assert settings_file(onboarding()) == ROOT / "configs" / "topics" / "customer_onboarding.yaml"


LARGE = {"max.message.bytes": "16777216"}


def test_specs_take_partitions_retention_cleanup_and_size_from_the_topics_file():
    specs = {spec.kind: spec for spec in topic_specs(onboarding())}
    assert specs["input"] == TopicSpec(
        "customer_onboarding.input",
        "input",
        4,
        1,
        {"retention.ms": WEEK, "cleanup.policy": "delete"} | LARGE,
    )
    assert specs["decisions"].config == {"retention.ms": MONTH, "cleanup.policy": "delete"} | LARGE
    assert specs["review"].config == {"retention.ms": QUARTER, "cleanup.policy": "delete"} | LARGE
    assert (specs["dlq"].partitions, specs["dlq"].config["retention.ms"]) == (2, QUARTER)


def test_there_is_one_spec_per_topic_in_topic_order():
    pipeline = onboarding()
    specs = topic_specs(pipeline)
    assert [(s.name, s.kind) for s in specs] == pipeline_topics(pipeline).kinds()


def test_a_pipeline_without_a_topics_file_uses_the_defaults_file(tmp_path):
    pipeline = load_small(tmp_path)
    assert settings_file(pipeline) == DEFAULTS_FILE
    specs = {spec.kind: spec for spec in topic_specs(pipeline)}
    assert specs["stage"].name == "demo.stage.scoring"
    assert (specs["stage"].partitions, specs["stage"].config["retention.ms"]) == (4, WEEK)
    assert specs["dlq"].config == {"retention.ms": MONTH, "cleanup.policy": "delete"} | LARGE


def test_the_topics_file_is_found_relative_to_the_pipeline_file(tmp_path):
    (tmp_path / "topics").mkdir()
    write_topics(tmp_path / "topics", "defaults: {partitions: 6}\n", "shared.yaml")
    pipeline = load_small(tmp_path, topics={"file": "topics/shared.yaml"})
    assert settings_file(pipeline) == tmp_path / "topics" / "shared.yaml"
    assert {spec.partitions for spec in topic_specs(pipeline)} == {6}


def test_unset_settings_fall_back_to_one_partition_and_the_brokers_own_defaults(tmp_path):
    write_topics(tmp_path, "kinds:\n  dlq: {partitions: 3, cleanup_policy: compact}\n")
    specs = {s.kind: s for s in topic_specs(load_small(tmp_path, topics={"file": "topics.yaml"}))}
    assert (specs["input"].partitions, specs["input"].replication_factor) == (1, 1)
    assert specs["input"].config == {}
    assert (specs["dlq"].partitions, specs["dlq"].config) == (3, {"cleanup.policy": "compact"})


def test_a_bad_topics_file_gives_one_located_line_per_problem(tmp_path):
    path = write_topics(
        tmp_path,
        "defaults:\n"
        "  partitions: 0\n"
        "  cleanup_policy: shred\n"
        "  retention: 5\n"
        "kinds:\n"
        "  archive: {partitions: 2}\n"
        "  dlq: {partitions: many}\n",
    )
    assert problems(path) == [
        "topics.yaml: defaults.partitions: Input should be greater than or equal to 1 (line 2)",
        "topics.yaml: defaults.cleanup_policy: Input should be 'delete', 'compact' or "
        "'compact,delete' (line 3)",
        "topics.yaml: defaults: unknown key (allowed: partitions, replication_factor, "
        "retention_ms, cleanup_policy, max_message_bytes) (line 4)",
        "topics.yaml: kinds: Input should be 'input', 'stage', 'decisions', "
        "'rejected', 'review', 'dlq' or 'state' (line 6)",
        "topics.yaml: kinds.dlq.partitions: Input should be a valid integer, unable to parse "
        "string as an integer (line 7)",
    ]


def test_topic_specs_of_a_pipeline_with_a_bad_topics_file_raise_the_located_errors(tmp_path):
    write_topics(tmp_path, "defaults: {replication_factor: 0}\n")
    with pytest.raises(ConfigErrors) as raised:
        topic_specs(load_small(tmp_path, topics={"file": "topics.yaml"}))
    assert str(raised.value) == (
        "topics.yaml: defaults.replication_factor: "
        "Input should be greater than or equal to 1 (line 1)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("defaults:\n  partitions: [4\n", r"topics\.yaml:3:1: not valid YAML$"),
        ("- 4\n", r"topics\.yaml: the top level must be a mapping$"),
        ("", r"topics\.yaml: the file is empty$"),
    ],
    ids=["not-yaml", "not-a-mapping", "empty"],
)
def test_a_topics_file_that_cannot_be_read_as_a_mapping_gives_one_line_naming_the_file(
    tmp_path, text, expected
):
    [line] = problems(write_topics(tmp_path, text))
    assert "\n" not in line
    assert line.startswith(str(tmp_path))
    assert re.search(expected, line)


def test_a_missing_topics_file_is_named(tmp_path):
    assert problems(tmp_path / "absent.yaml") == [f"{tmp_path / 'absent.yaml'}: no such file"]
