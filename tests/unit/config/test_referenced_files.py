"""The files a pipeline names (``topics.file``, the demo's ``samples``) are read relative to the
pipeline file and only from inside its directory - after ``..`` and symlinks are resolved -
unless the command got ``--allow-outside``; and no error about such a file quotes its text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from config_helpers import base_config, errors_of, load, write
from example_pipelines import EXAMPLES

from stream_engine.cli import main
from stream_engine.config.compiled import SAMPLES_FILE, TOPICS_FILE
from stream_engine.errors import ConfigError, ConfigErrors
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.topics import load_topics_file, topic_specs
from stream_engine.runtime.process import demo_samples

SECRET = "s3cr3t-token-7f3a"


def naming(key: str, value: str) -> dict:
    """The small pipeline with ``topics.file`` or ``samples`` set to ``value``."""
    if key == "samples":
        return base_config(samples=value)
    return base_config(topics={"file": value})


def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "conf"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("key", ["topics.file", "samples"])
def test_a_relative_path_is_read_from_the_configurations_directory_not_the_working_one(
    tmp_path, monkeypatch, key
):
    directory = config_dir(tmp_path)
    (directory / "extra").mkdir()
    (directory / "extra" / "file.yaml").write_text("defaults: {partitions: 2}\n")
    monkeypatch.chdir(tmp_path)
    pipeline = load(directory, naming(key, "extra/file.yaml"))
    assert pipeline.files[key] == directory.resolve() / "extra" / "file.yaml"


@pytest.mark.parametrize("key", ["topics.file", "samples"])
@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_a_path_outside_the_configurations_directory_is_a_located_error(tmp_path, key, where):
    directory = config_dir(tmp_path)
    outside = tmp_path / "outside.yaml"
    outside.write_text(f"{SECRET}: 1\n")
    value = {"parent": "../outside.yaml", "absolute": str(outside), "symlink": "link.yaml"}[where]
    if where == "symlink":
        (directory / "link.yaml").symlink_to(outside)
    [line] = errors_of(directory, naming(key, value))
    assert line.startswith(f"{key}: '{value}' is outside the configuration's directory ")
    assert "(pass --allow-outside to read it) (line " in line
    pipeline = load(directory, naming(key, value), allow_outside=True)
    assert pipeline.files[key] == outside.resolve()


def test_dot_dot_that_comes_back_inside_and_symlinks_inside_are_allowed(tmp_path):
    directory = config_dir(tmp_path)
    (directory / "topics.yaml").write_text("defaults: {partitions: 2}\n")
    (directory / "alias.yaml").symlink_to(directory / "topics.yaml")
    back = load(directory, naming("topics.file", "../conf/topics.yaml"))
    linked = load(directory, naming("samples", "alias.yaml"))
    assert back.files[TOPICS_FILE] == directory.resolve() / "topics.yaml"
    assert linked.files[SAMPLES_FILE] == directory.resolve() / "topics.yaml"


def test_a_pipeline_that_names_no_files_has_none(tmp_path):
    assert load(tmp_path, base_config()).files == {}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_pipelines_read_only_their_own_directory(name):
    root = Path(__file__).resolve().parents[3] / "configs"
    pipeline = load_pipeline(root / f"{name}.yaml", environ={})
    assert pipeline.files[TOPICS_FILE] == root / "topics" / f"{name}.yaml"
    assert pipeline.files[SAMPLES_FILE] == root / "samples" / f"{name}.jsonl"


@pytest.mark.parametrize(
    "text",
    [
        f'defaults: {{partitions: "{SECRET}\n',  # not YAML
        f"{SECRET}: 1\n",  # an unknown key
        f"defaults: {{{SECRET}: 1}}\n",
        f"kinds: {{{SECRET}: {{partitions: 1}}}}\n",
        f"defaults: {{partitions: {SECRET}}}\n",  # a wrong value
        f"defaults: {{partitions: !!int {SECRET}}}\n",
        f"defaults: !{SECRET} {{partitions: 1}}\n",  # a tag
        f"defaults: {{partitions: 1}}\ndefaults: {{{SECRET}: 2}}\n{SECRET}: 1\n{SECRET}: 2\n",
        f"{SECRET}\n",  # not a mapping
        f"a: &{SECRET} [*{SECRET}]\n",  # a cycle through an anchor
        f"? [{SECRET}]\n: 1\n",  # a key that is not a plain value
    ],
    ids=[
        "not-yaml",
        "unknown-key",
        "unknown-setting",
        "unknown-kind",
        "bad-value",
        "bad-tagged-value",
        "tag",
        "duplicate-keys",
        "not-a-mapping",
        "alias-cycle",
        "complex-key",
    ],
)
def test_no_error_about_a_topics_file_quotes_its_text(tmp_path, text):
    path = tmp_path / "topics.yaml"
    path.write_text(text)
    with pytest.raises((ConfigError, ConfigErrors)) as raised:
        load_topics_file(path)
    errors = raised.value.errors if isinstance(raised.value, ConfigErrors) else [raised.value]
    assert errors
    for error in errors:
        assert SECRET not in str(error)
        assert "\n" not in str(error)
        assert str(error).startswith((str(path), "topics.yaml"))


def test_no_error_about_a_json_topics_file_quotes_its_text(tmp_path):
    path = tmp_path / "topics.json"
    path.write_text(f'{{"defaults": {{"partitions": {SECRET}}}}}')
    with pytest.raises(ConfigError) as raised:
        load_topics_file(path)
    assert str(raised.value) == f"{path}: not valid JSON (line 1, column 29)"


def test_a_topics_file_outside_is_never_read_by_the_commands_that_use_it(tmp_path):
    directory = config_dir(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text(f"{SECRET}\n")
    path = write(directory, naming("topics.file", str(outside)))
    broker = ["--broker", "127.0.0.1:1"]
    for args in (["validate"], ["topics", "create", *broker], ["topics", "list", *broker]):
        result = CliRunner().invoke(main, [*args, str(path)])
        assert result.exit_code == 1, result.output
        assert SECRET not in result.output
        assert "topics.file: " in result.stderr
        assert "--allow-outside" in result.stderr


def test_with_allow_outside_the_topics_file_is_read_but_not_quoted(tmp_path):
    directory = config_dir(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text(f"{SECRET}: [\n")
    pipeline = load(directory, naming("topics.file", str(outside)), allow_outside=True)
    with pytest.raises(ConfigError) as raised:
        topic_specs(pipeline)
    assert str(raised.value) == f"{outside}:2:1: not valid YAML"


def test_the_demo_reads_its_samples_from_the_resolved_file(tmp_path):
    directory = config_dir(tmp_path)
    (directory / "s.jsonl").write_bytes(b'{"name": "a"}\n\n{"name": "b"}\n')
    pipeline = load(directory, naming("samples", "s.jsonl"))
    assert demo_samples(pipeline) == [b'{"name": "a"}', b'{"name": "b"}']


def test_demo_samples_that_cannot_be_read_are_one_config_error_before_anything_starts(tmp_path):
    pipeline = load(tmp_path, naming("samples", "absent.jsonl"))
    with pytest.raises(ConfigError) as raised:
        demo_samples(pipeline)
    assert str(raised.value) == (
        f"samples: cannot read '{tmp_path.resolve() / 'absent.jsonl'}': No such file or directory"
    )


def test_dev_refuses_samples_outside_the_configurations_directory(tmp_path):
    directory = config_dir(tmp_path)
    config = naming("samples", "/etc/passwd")
    # exactly_once makes a dev that did load the config stop before it starts a broker
    config["runtime"] = {"processing_guarantee": "exactly_once"}
    path = write(directory, config)
    result = CliRunner().invoke(main, ["dev", str(path), "--demo", "--port", "0"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: samples: '/etc/passwd' is outside the configuration's")
    assert "root:" not in result.output


COMMANDS = [
    ["validate"],
    ["plan"],
    ["eval"],
    ["test"],
    ["run"],
    ["dev"],
    ["topics", "create"],
    ["topics", "list"],
    ["publish"],
    ["tail"],
    ["dlq", "replay"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_that_loads_a_configuration_takes_allow_outside(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "--allow-outside" in result.output


def test_validate_with_allow_outside_accepts_a_file_outside(tmp_path):
    directory = config_dir(tmp_path)
    path = write(directory, naming("samples", os.devnull))
    refused = CliRunner().invoke(main, ["validate", str(path)])
    allowed = CliRunner().invoke(main, ["validate", str(path), "--allow-outside"])
    assert refused.exit_code == 1
    assert allowed.exit_code == 0, allowed.output
