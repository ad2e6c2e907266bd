"""Reading a pipeline file is bounded: its size, its nesting depth and what its YAML aliases
expand to have limits far above any real pipeline, and going past one is one located line
naming the limit - never a traceback, never memory or time without bound."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from config_helpers import base_config, errors_of, write
from example_pipelines import EXAMPLES

from stream_engine.config import source
from stream_engine.config.source import (
    MAX_ALIAS_VALUES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    format_location,
    read_source,
)
from stream_engine.errors import ConfigError
from stream_engine.pipeline import load_pipeline

ROOT = Path(__file__).resolve().parents[3]
VALID_TAIL = (
    "pipeline: p\nstages: {s: {rules: {r: {class: RequiredFields, params: {fields: [a]}}}}}\n"
)


def alias_bomb(levels: int, width: int) -> str:
    """``levels`` anchors, each a list of ``width`` uses of the one before: width**levels
    values out of a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n" + VALID_TAIL


def nested(depth: int) -> str:
    return "deep: " + "[" * depth + "]" * depth + "\n" + VALID_TAIL


def test_the_example_pipelines_are_far_inside_every_limit():
    for name in EXAMPLES:
        path = ROOT / "configs" / f"{name}.yaml"
        loader = source._BoundedLoader(path.read_text(), str(path), echo=True)
        loader.get_single_node()
        assert loader.values * 100 < MAX_VALUES
        assert max(levels for _, levels in loader.spans.values()) * 10 < MAX_DEPTH
        assert path.stat().st_size * 100 < MAX_FILE_BYTES


def test_the_alias_bomb_of_the_review_is_refused_at_the_alias_that_expands_too_far(tmp_path):
    bomb = alias_bomb(9, 9)  # 9**9 = 387 million values out of 500 bytes
    assert len(bomb) < 700
    [line] = errors_of(tmp_path, bomb)
    assert re.fullmatch(
        rf".*pipeline\.yaml:6:\d+: alias '\*a4' expands to 66,430 values; one alias may "
        rf"expand to at most {MAX_ALIAS_VALUES:,} \(the limit\)",
        line,
    )


def test_many_uses_of_a_large_alias_are_refused_at_the_total_limit(tmp_path):
    block = ", ".join(["x"] * (MAX_ALIAS_VALUES - 10))
    uses = "".join(f"k{i}: *big\n" for i in range(MAX_VALUES // MAX_ALIAS_VALUES + 1))
    [line] = errors_of(tmp_path, f"base: &big [{block}]\n{uses}{VALID_TAIL}")
    assert f"the file expands to more than {MAX_VALUES:,} values (the limit;" in line
    assert re.match(r".*pipeline\.yaml:\d+:\d+: ", line)


def test_an_alias_inside_the_value_it_names_is_a_located_error_not_a_recursion(tmp_path):
    [line] = errors_of(tmp_path, "loop: &me [*me]\n" + VALID_TAIL)
    assert line.endswith(
        "pipeline.yaml:1:12: alias '*me' refers to a value it is part of (a cycle)"
    )


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 700, 10_000])
def test_yaml_nested_past_the_depth_limit_is_one_located_line(tmp_path, depth):
    [line] = errors_of(tmp_path, nested(depth))
    assert line.endswith(
        # the top-level mapping is the first level: the 100th '[' opens the 101st
        f"pipeline.yaml:1:{MAX_DEPTH + 6}: mappings and lists nest more than {MAX_DEPTH} "
        "levels deep (the limit)"
    )


def test_nesting_at_the_depth_limit_is_read(tmp_path):
    config = base_config()
    config["stages"]["data_quality"]["description"] = "x"
    text = write(tmp_path, config).read_text() + nested(MAX_DEPTH - 1).split("\n")[0] + "\n"
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    assert read_source(path).data["deep"] is not None


def test_aliases_that_nest_past_the_depth_limit_are_refused_at_the_alias(tmp_path):
    # a<i> spans i + 1 levels; used in a list under the top-level mapping it reaches i + 3
    chain = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH + 5)]
    [line] = errors_of(tmp_path, "\n".join(chain) + "\n" + VALID_TAIL)
    used = MAX_DEPTH - 2
    column = len(f"a{used + 1}: &a{used + 1} [") + 1
    assert line.endswith(
        f"pipeline.yaml:{used + 2}:{column}: alias '*a{used}' nests values more than "
        f"{MAX_DEPTH} levels deep (the limit)"
    )


@pytest.mark.parametrize("depth", [MAX_DEPTH, 300, 1000])
def test_a_json_pipeline_nested_past_the_depth_limit_is_one_line(tmp_path, depth):
    data = orjson.loads(orjson.dumps(base_config()))
    text = orjson.dumps(data).decode()[:-1] + ',"deep":' + "[" * depth + "]" * depth + "}"
    path = tmp_path / "pipeline.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_pipeline(path)
    line = str(raised.value)
    assert line.endswith(
        f"pipeline.json: nested more than {MAX_DEPTH} levels deep (the limit) (under deep[0][0])"
    )


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    [line] = errors_of(tmp_path, VALID_TAIL + "#" * MAX_FILE_BYTES)
    assert line == f"{tmp_path / 'pipeline.yaml'}: larger than 4 MiB (the limit for a file)"


def test_a_merge_key_in_an_aliased_mapping_is_resolved_once(tmp_path):
    text = (
        "base: &base {a: 1, b: 2}\n"
        "shared: &shared {<<: *base, b: 3}\n"
        "one: *shared\n"
        "two: *shared\n" + VALID_TAIL
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    data = read_source(path).data
    assert data["one"] == data["two"] == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (
            ("stages", "data_quality", "rules", "r", "dependencies", 0),
            "stages.data_quality.rules.r.dependencies[0]",
        ),
        (("stages", "a.b"), "stages.a.b"),
        (("stages", "../../x y\n${Z}"), 'stages["../../x y\\n${Z}"]'),
        (("stages", ""), 'stages[""]'),
        (("stages", "x[0]"), 'stages["x[0]"]'),
    ],
)
def test_a_location_is_always_one_readable_line(path, shown):
    assert format_location(path) == shown
