"""Each kind of malformed configuration gives a one-line error with its location, and every
error of a file is reported together."""

from __future__ import annotations

import re

import pytest
from config_helpers import base_config, errors_of, load

LOCATED = re.compile(r"^[\w.\[\]-]+: .+ \(line \d+\)$")


def unlined(errors):
    return [re.sub(r" \(line \d+\)$", "", e) for e in errors]


def rules_of(config, stage):
    return config["stages"][stage]["rules"]


def test_the_base_configuration_is_valid(tmp_path):
    compiled = load(tmp_path, base_config())
    assert [s.name for s in compiled.plan.stages] == ["data_quality", "compliance"]


def test_unknown_rule_class_names_the_class_and_suggests_a_close_one(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["required"]["class"] = "RequiredField"
    assert unlined(errors_of(tmp_path, config)) == [
        "stages.data_quality.rules.required.class: unknown rule class 'RequiredField' "
        "(did you mean 'RequiredFields'?)"
    ]


def test_unknown_dependency_is_located_at_its_list_index(tmp_path):
    config = base_config()
    rules_of(config, "compliance")["kyc_check"]["cross_stage_dependencies"] = ["required", "kyc"]
    errors = errors_of(tmp_path, config)
    assert len(errors) == 1
    assert errors[0].startswith(
        "stages.compliance.rules.kyc_check.cross_stage_dependencies[1]: unknown rule 'kyc'"
    )


def test_dependency_cycle_is_reported_with_its_path(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["required"]["dependencies"] = ["email"]
    errors = errors_of(tmp_path, config)
    assert len(errors) == 1
    assert "dependency cycle: " in errors[0]
    assert "required -> email -> required" in errors[0] or "email -> required -> email" in errors[0]


def test_dependency_on_a_rule_of_a_later_stage_is_refused(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["email"]["cross_stage_dependencies"] = ["kyc_check"]
    errors = unlined(errors_of(tmp_path, config))
    assert errors == [
        "stages.data_quality.rules.email.cross_stage_dependencies[0]: rule 'kyc_check' is in "
        "later stage 'compliance', which runs after this one"
    ]


def test_same_stage_dependency_must_not_be_listed_as_cross_stage(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["email"]["cross_stage_dependencies"] = ["required"]
    assert "list it under dependencies" in errors_of(tmp_path, config)[0]


def test_earlier_stage_dependency_must_be_listed_as_cross_stage(tmp_path):
    config = base_config()
    rules_of(config, "compliance")["kyc_check"]["dependencies"] = ["required"]
    assert "list it under cross_stage_dependencies" in errors_of(tmp_path, config)[0]


def test_bad_params_for_a_rule_class_give_the_pydantic_message_at_the_param(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["required"]["params"] = {"fields": "name", "colour": 1}
    errors = errors_of(tmp_path, config)
    assert any(
        e.startswith(
            "stages.data_quality.rules.required.params.fields: Input should be a valid list"
        )
        for e in errors
    )
    assert any(
        e.startswith("stages.data_quality.rules.required.params.colour: unknown key")
        for e in errors
    )


def test_unknown_service_is_refused_with_the_services_defined(tmp_path):
    config = base_config()
    rules_of(config, "compliance")["kyc_check"]["params"]["service"] = "jumio"
    assert unlined(errors_of(tmp_path, config)) == [
        "stages.compliance.rules.kyc_check.params.service: unknown service 'jumio' (defined: kyc)"
    ]


@pytest.mark.parametrize("timeout", [0, -5, "soon"])
def test_bad_stage_timeout_is_refused(tmp_path, timeout):
    config = base_config()
    config["stages"]["data_quality"]["timeout_s"] = timeout
    errors = errors_of(tmp_path, config)
    assert len(errors) == 1
    assert errors[0].startswith("stages.data_quality.timeout_s: Input should be")


def test_bad_service_timeout_is_refused(tmp_path):
    config = base_config()
    config["services"]["kyc"]["timeout_s"] = -1
    assert errors_of(tmp_path, config)[0].startswith(
        "services.kyc.timeout_s: Input should be greater than 0"
    )


def test_invalid_cel_in_a_rule_condition_is_located(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["email"]["when"] = "data.age >="
    errors = errors_of(tmp_path, config)
    assert len(errors) == 1
    assert errors[0].startswith("stages.data_quality.rules.email.when: invalid CEL expression")


def test_invalid_cel_in_a_stage_condition_is_located(tmp_path):
    config = base_config()
    config["stages"]["compliance"]["condition"] = "data.risk in"
    assert errors_of(tmp_path, config)[0].startswith("stages.compliance.condition: invalid CEL")


def test_invalid_cel_in_rule_params_is_located(tmp_path):
    config = base_config()
    rules_of(config, "compliance")["kyc_check"]["params"]["pass_when"] = "response.verified &&"
    assert errors_of(tmp_path, config)[0].startswith(
        "stages.compliance.rules.kyc_check.params.pass_when: invalid CEL"
    )


def test_a_thousand_nots_in_a_condition_validate_and_deep_nesting_is_a_located_error(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["email"]["when"] = "!" * 1000 + "true"
    load(tmp_path, config)
    rules_of(config, "data_quality")["email"]["when"] = "(" * 1000 + "true" + ")" * 1000
    errors = errors_of(tmp_path, config)
    assert len(errors) == 1
    assert LOCATED.match(errors[0])
    assert errors[0].startswith("stages.data_quality.rules.email.when: invalid CEL expression")
    assert "nested more than 32 deep" in errors[0]


def test_a_regex_that_re2_refuses_is_a_located_error(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["zip"] = {
        "class": "Regex",
        "params": {"field": "zip", "pattern": "^(?=9)[0-9]{5}$"},
    }
    errors = errors_of(tmp_path, config)
    assert len(errors) == 1
    assert LOCATED.match(errors[0])
    assert errors[0].startswith("stages.data_quality.rules.zip.params.pattern: ")
    assert "invalid regular expression (RE2 syntax)" in errors[0]


def test_unknown_key_suggests_the_option_meant(tmp_path):
    config = base_config()
    config["stages"]["data_quality"]["fail_fst"] = True
    assert unlined(errors_of(tmp_path, config)) == [
        "stages.data_quality.fail_fst: unknown key (did you mean 'fail_fast'?)"
    ]


def test_duplicate_rule_id_across_stages_is_refused(tmp_path):
    config = base_config()
    rules_of(config, "compliance")["required"] = {
        "class": "RequiredFields",
        "params": {"fields": ["x"]},
    }
    assert "rule id already used in stage 'data_quality'" in errors_of(tmp_path, config)[0]


def test_duplicate_key_in_yaml_is_refused_with_both_lines(tmp_path):
    text = "pipeline: a\npipeline: b\nstages: {s: {rules: {}}}\n"
    assert unlined(errors_of(tmp_path, text)) == [
        "pipeline: duplicate key (first at line 1, again at line 2)"
    ]


def test_yaml_syntax_error_gives_file_line_and_column(tmp_path):
    errors = errors_of(tmp_path, "pipeline: demo\nstages: [\n")
    assert len(errors) == 1
    assert re.match(r".*pipeline\.yaml:3:1: not valid YAML", errors[0])


def test_every_error_of_a_file_is_reported_together_one_line_each(tmp_path):
    config = base_config()
    config["stages"]["data_quality"]["timeout_s"] = -1
    rules_of(config, "data_quality")["required"]["class"] = "Nope"
    rules_of(config, "data_quality")["email"]["dependencies"] = ["missing_rule"]
    rules_of(config, "compliance")["kyc_check"]["params"]["service"] = "ghost"
    rules_of(config, "compliance")["kyc_check"]["when"] = "((("
    errors = errors_of(tmp_path, config)
    assert len(errors) == 5
    assert all(LOCATED.match(e) for e in errors), errors
    assert all("\n" not in e for e in errors)


def test_missing_pipeline_name_and_stages_are_required(tmp_path):
    errors = errors_of(tmp_path, {"version": "1"})
    assert "pipeline: required" in errors
    assert "stages: required" in errors


NAME_RULE = (
    "1 to 120 letters, digits, '.', '_' or '-', starting with a letter or digit): it is part "
    "of topic and group names"
)


@pytest.mark.parametrize("name", ["has spaces", "../x", "_x", "x" * 121])
def test_pipeline_name_must_be_usable_in_topic_names(tmp_path, name):
    errors = errors_of(tmp_path, base_config(pipeline=name))
    assert unlined(errors) == [f"pipeline: not a valid name ({NAME_RULE}"]


def with_stage_named(name):
    config = base_config()
    extra = {"class": "RequiredFields", "params": {"fields": ["a"]}}
    config["stages"][name] = {"rules": {"extra": extra}}
    return config


@pytest.mark.parametrize(
    ("name", "location"),
    [
        ("../../x y\n${Z}", 'stages["../../x y\\n${Z}"]'),
        ("with space", 'stages["with space"]'),
        ("a/b", "stages.a/b"),
        ("..", "stages..."),
        ("_internal", "stages._internal"),
        ("ü", "stages.ü"),
        ("x" * 121, "stages." + "x" * 121),
    ],
)
def test_a_stage_name_that_cannot_be_part_of_a_topic_name_is_one_located_line(
    tmp_path, name, location
):
    [error] = errors_of(tmp_path, with_stage_named(name))
    assert re.search(r" \(line \d+\)$", error)
    assert "\n" not in error
    assert unlined([error]) == [f"{location}: not a valid stage name ({NAME_RULE}"]


def test_a_group_prefix_must_be_a_name_too(tmp_path):
    errors = errors_of(tmp_path, base_config(runtime={"group_prefix": "../../tmp"}))
    assert unlined(errors) == [f"runtime.group_prefix: not a valid name ({NAME_RULE}"]


def test_the_longest_names_still_give_valid_topic_names(tmp_path):
    from stream_engine.config.topic_names import is_topic_name
    from stream_engine.runtime.cluster.topic_names import topic_names

    config = base_config(pipeline="p" * 120)
    config["stages"] = {"a" * 120: config["stages"]["data_quality"], "b" * 120: {}}
    pipeline = load(tmp_path, config)
    names = topic_names(pipeline.plan)
    assert f"{'p' * 120}.stage.{'b' * 120}" in names.all()
    assert all(is_topic_name(name) for name in names.all())


def test_a_value_with_a_newline_in_an_error_is_shown_escaped_on_one_line(tmp_path):
    config = base_config()
    config["stages"]["data_quality"]["rules"]["email"]["dependencies"] = ["x\ny"]
    [error] = errors_of(tmp_path, config)
    assert unlined([error]) == [
        "stages.data_quality.rules.email.dependencies[0]: unknown rule 'x\\ny'"
    ]


def test_unknown_service_class_is_refused(tmp_path):
    config = base_config()
    config["services"]["kyc"]["class"] = "SimulatedServce"
    assert errors_of(tmp_path, config)[0].startswith(
        "services.kyc.class: unknown service class 'SimulatedServce' "
        "(did you mean 'SimulatedService'?)"
    )


def test_a_rule_class_cannot_be_imported_by_path(tmp_path):
    config = base_config()
    rules_of(config, "data_quality")["required"]["class"] = "os.system"
    errors = errors_of(tmp_path, config)
    assert errors[0].startswith(
        "stages.data_quality.rules.required.class: unknown rule class 'os.system'"
    )


def test_errors_point_at_the_line_where_the_value_was_written(tmp_path):
    text = """pipeline: demo
stages:
  dq:
    rules:
      r1:
        class: RequiredFields
        params: {fields: [a]}
        dependencies: [nope]
"""
    assert errors_of(tmp_path, text) == [
        "stages.dq.rules.r1.dependencies[0]: unknown rule 'nope' (line 8)"
    ]


def test_yaml_merge_keys_may_be_overridden_but_explicit_duplicates_may_not(tmp_path):
    from stream_engine.config.source import parse_text

    merged = parse_text("base: &b {a: 1, b: 2}\nchild: {<<: *b, b: 3}\n")
    assert merged.data["child"] == {"a": 1, "b": 3}
    text = "base: &b {a: 1}\nchild: {<<: *b, c: 1, c: 2}\n"
    errors = errors_of(tmp_path, text)
    assert unlined(errors) == ["child.c: duplicate key (first at line 2, again at line 2)"]


def with_topic_names(**names):
    return base_config(topics={"names": names})


def test_a_topic_name_for_a_stage_that_does_not_exist_is_refused(tmp_path):
    config = with_topic_names(stages={"nope": "nope-in", "complience": "compliance-in"})
    assert unlined(errors_of(tmp_path, config)) == [
        "topics.names.stages.nope: unknown stage 'nope'",
        "topics.names.stages.complience: unknown stage 'complience' (did you mean 'compliance'?)",
    ]


@pytest.mark.parametrize("name", ["compliance queue", ".", "..", "x" * 250, ""])
def test_a_stage_topic_name_must_be_a_valid_topic_name(tmp_path, name):
    config = with_topic_names(stages={"compliance": name})
    assert unlined(errors_of(tmp_path, config)) == [
        f"topics.names.stages.compliance: '{name}' is not a valid topic name (1 to 249 "
        "letters, digits, '.', '_' or '-', and not '.' or '..')"
    ]


@pytest.mark.parametrize("name", ["...", "a..b", ".hidden", "x" * 249])
def test_dots_within_a_topic_name_and_the_longest_name_are_accepted(tmp_path, name):
    pipeline = load(tmp_path, with_topic_names(stages={"compliance": name}))
    assert pipeline.config.topics.names.stages == {"compliance": name}


def test_an_input_name_that_the_first_stages_own_name_would_override_is_refused(tmp_path):
    config = with_topic_names(input="applications", stages={"data_quality": "dq-in"})
    assert unlined(errors_of(tmp_path, config)) == [
        "topics.names.input: 'applications' would be ignored: the first stage, "
        "'data_quality', reads topics.names.stages.data_quality ('dq-in'); keep one of the two"
    ]


def test_input_and_the_first_stages_name_may_agree(tmp_path):
    config = with_topic_names(input="applications", stages={"data_quality": "applications"})
    assert load(tmp_path, config).config.topics.names.input == "applications"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(
            {"stages": {"compliance": "demo.dlq"}},
            "topics.names.stages.compliance: topic 'demo.dlq' is also used by the dlq output",
            id="stage-is-the-default-dlq",
        ),
        pytest.param(
            {"decisions": "outcomes", "rejected": "outcomes"},
            "topics.names.rejected: topic 'outcomes' is also used by the decisions output",
            id="decisions-is-rejected",
        ),
        pytest.param(
            {"input": "demo.review"},
            "topics.names.input: topic 'demo.review' is also used by the review output",
            id="input-is-the-default-review",
        ),
        pytest.param(
            {"dlq": "demo.input"},
            "topics.names.dlq: topic 'demo.input' is also used by stage 'data_quality' (the input)",
            id="dlq-is-the-default-input",
        ),
        pytest.param(
            {"stages": {"data_quality": "queue", "compliance": "queue"}},
            "topics.names.stages.compliance: topic 'queue' is also used by stage "
            "'data_quality' (the input)",
            id="two-stages",
        ),
        pytest.param(
            {"stages": {"data_quality": "demo.stage.compliance"}},
            "topics.names.stages.data_quality: topic 'demo.stage.compliance' is also used by "
            "stage 'compliance'",
            id="first-stage-is-the-next-stages-default",
        ),
        pytest.param(
            {"decisions": "out", "review": "out", "dlq": "out"},
            "topics.names.dlq: topic 'out' is also used by the decisions output and the "
            "review output",
            id="three-outputs",
        ),
    ],
)
def test_two_roles_sharing_one_topic_are_refused_once_at_the_name_configured_last(
    tmp_path, names, expected
):
    assert unlined(errors_of(tmp_path, with_topic_names(**names))) == [expected]


def test_topic_name_errors_are_reported_with_every_other_error_one_located_line_each(tmp_path):
    config = with_topic_names(
        stages={"nope": "x", "compliance": "bad name"}, rejected="demo.decisions"
    )
    config["stages"]["data_quality"]["timeout_s"] = -1
    errors = errors_of(tmp_path, config)
    assert all(LOCATED.match(e) for e in errors), errors
    assert unlined(errors) == [
        "topics.names.stages.compliance: 'bad name' is not a valid topic name (1 to 249 "
        "letters, digits, '.', '_' or '-', and not '.' or '..')",
        "stages.data_quality.timeout_s: Input should be greater than 0",
        "topics.names.stages.nope: unknown stage 'nope'",
        "topics.names.rejected: topic 'demo.decisions' is also used by the decisions output",
    ]
