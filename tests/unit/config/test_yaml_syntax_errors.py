"""YAML syntax errors say in plain words what is wrong, with the line and column: one line,
exit 1, never a traceback, and none of PyYAML's jargon (``<block end>``, ``scalar``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream_engine.cli import main

GOOD_TOP = 'pipeline: demo\nversion: "1"\n'
STAGES = (
    "stages:\n  checks:\n    rules:\n"
    "      present: {class: RequiredFields, params: {fields: [id]}}\n"
)

#: (broken file, line, column, words the error must say)
BROKEN = {
    "a key indented under a key that already has a value": (
        GOOD_TOP + "stages:\n  checks:\n    rules: {}\n      present: 1\n",
        6,
        7,
        "this line is indented more than the key above it can hold",
    ),
    "a line lined up with no key above": (
        GOOD_TOP + STAGES + "   extra: 1\n",
        7,
        4,
        "the indentation of this line (3 spaces) does not line up with any key above it",
    ),
    "a tab used for indentation": (
        GOOD_TOP + "stages:\n\tchecks: {}\n",
        4,
        1,
        "a tab character is used here; YAML indents with spaces only",
    ),
    "an unclosed quote": (
        GOOD_TOP + 'description: "screening\n' + STAGES,
        3,
        14,
        "this quoted text is never closed - add the closing quote",
    ),
    "an unclosed flow mapping": (
        GOOD_TOP + "stages: {checks: {rules: {}}\n",
        4,
        1,
        "the { } mapping opened at line 3, column 9 is never closed - add the '}'",
    ),
    "an unclosed list": (
        GOOD_TOP + "stages: [\n",
        4,
        1,
        "the file ends inside a [ ] list or { } mapping that is never closed",
    ),
    "a key without its colon": (
        GOOD_TOP + "input\n" + STAGES,
        3,
        1,
        "this line has no ':' after its key - write 'key: value'",
    ),
    "a line under a key without its colon": (
        GOOD_TOP + "stages:\n  checks\n  other: {}\n",
        5,
        8,
        "line 4 above has no ':' after its key",
    ),
    "a value holding ': '": (
        GOOD_TOP + "description: screening: cards\n" + STAGES,
        3,
        23,
        "this value contains ': ', which YAML reads as a second key - put the whole value",
    ),
    "a list item among keys": (
        GOOD_TOP + "- checks\n",
        3,
        1,
        "a list item ('- ') appears where the mapping above expects a 'key: value' line",
    ),
    "a reserved character starting a value": (
        GOOD_TOP + "description: @cards\n" + STAGES,
        3,
        14,
        "a plain value cannot start with '@' (YAML reserves it) - put the value in quotes",
    ),
    "a second document": (
        GOOD_TOP + STAGES + "---\npipeline: other\n",
        7,
        1,
        "the file holds a second YAML document ('---')",
    ),
}
JARGON = re.compile(r"<block|<stream|scalar|token|expected|while (parsing|scanning)")


def validate(tmp_path: Path, text: str) -> object:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return CliRunner().invoke(main, ["validate", str(path)])


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_yaml_syntax_error_says_what_is_wrong_in_plain_words_with_line_and_column(
    tmp_path: Path, case: str
):
    text, line, column, words = BROKEN[case]

    result = validate(tmp_path, text)

    assert result.exit_code == 1
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    errors = [e for e in result.stderr.splitlines() if e.startswith("error:")]
    assert len(errors) == 1, result.stderr
    error = errors[0]
    assert f"pipeline.yaml:{line}:{column}: not valid YAML at line {line}, column {column}: " in (
        error
    )
    assert words in error
    assert not JARGON.search(error), error
    assert "Traceback" not in result.output


def test_duplicate_keys_name_both_lines(tmp_path: Path):
    result = validate(tmp_path, GOOD_TOP + "version: '2'\n" + STAGES)

    assert result.exit_code == 1
    assert "version: duplicate key (first at line 2, again at line 3)" in result.stderr


def test_a_valid_file_still_validates(tmp_path: Path):
    assert validate(tmp_path, GOOD_TOP + STAGES).exit_code == 0
