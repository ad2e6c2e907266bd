"""PyYAML's syntax errors in plain words: what is wrong and where, for the people who write
pipeline files (``expected <block end>, but found '<block mapping start>'`` says neither)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

_START_CHAR = re.compile(r"found character '(.+)' that cannot start any token")
_FLOW_END = re.compile(r"expected ',' or '([\]}])', but got '(.+)'")
_FOUND = re.compile(r"expected <block end>, but found '(.+)'")
_CLOSERS = {"]": "[ ] list", "}": "{ } mapping"}


@dataclass(frozen=True)
class YamlProblem:
    """Where a YAML syntax error is (1-based) and what it means, in one sentence."""

    line: int
    column: int
    sentence: str


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _line_text(mark: yaml.Mark, line: int | None = None) -> str:
    """The text of the mark's line (or of ``line``, 0-based) - never shown, only measured."""
    buffer = str(mark.buffer or "")
    lines = buffer.rstrip("\0").split("\n")
    index = mark.line if line is None else line
    return lines[index] if 0 <= index < len(lines) else ""


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _previous_content_line(mark: yaml.Mark) -> tuple[int, str]:
    """The nearest line above the mark (1-based, and its text) that holds something other
    than a comment; (0, "") when there is none."""
    for index in range(mark.line - 1, -1, -1):
        text = _line_text(mark, index)
        if text.strip() and not text.lstrip().startswith("#"):
            return index + 1, text
    return 0, ""


def _indentation(mark: yaml.Mark) -> str:
    """Why a line's indentation does not fit: deeper than a key that has its value, below a
    line without ':', or lined up with no key above."""
    here = _indent(_line_text(mark))
    number, above = _previous_content_line(mark)
    if number and ":" not in above and not above.lstrip().startswith("-"):
        return f"line {number} above has no ':' after its key - write 'key: value' there"
    if here > _indent(above):
        return (
            "this line is indented more than the key above it can hold: that key already "
            "has a value - check the indentation"
        )
    return (
        f"the indentation of this line ({here} spaces) does not line up with any key above "
        "it - indent it like the key it belongs beside"
    )


def _colon(mark: yaml.Mark) -> str:
    """``mapping values are not allowed here``: a value holding ': ', or a line indented
    under a key that already has a value."""
    before = _line_text(mark)[: mark.column]
    if ": " in before or before.rstrip().endswith(":"):
        return (
            "this value contains ': ', which YAML reads as a second key - put the whole value "
            "in quotes ('...')"
        )
    return _indentation(mark)


def _block_end(found: str, exc: yaml.MarkedYAMLError, mark: yaml.Mark) -> str:
    """``expected <block end>, but found X``: what X was, in words."""
    if found == "<block mapping start>":
        return _indentation(mark)
    if found == "-":
        return (
            "a list item ('- ') appears where the mapping above expects a 'key: value' line - "
            "indent it under its key, or give it a key"
        )
    if found == "?" or "block collection" in (exc.context or ""):
        return (
            "a 'key: value' line stands among the items of a list - start it with '- ', or "
            "indent it like the keys above the list"
        )
    return (
        "more text follows a complete value on this line (after a closing quote?) - put the "
        "whole value in quotes"
    )


def _flow(exc: yaml.MarkedYAMLError, closer: str, got: str) -> str:
    """A ``[ ]`` or ``{ }`` written on one line that is not closed properly."""
    what = _CLOSERS[closer]
    opened = f" opened at {_at(exc.context_mark)}" if exc.context_mark else ""
    if got == "<stream end>":
        return f"the {what}{opened} is never closed - add the '{closer}'"
    if got == ":":
        return (
            f"a ':' here, inside the {what}{opened}: a comma is missing between two entries, "
            "or a value holding ': ' needs quotes"
        )
    return (
        f"the {what}{opened} is not closed properly - separate entries with ',' and end it "
        f"with '{closer}'"
    )


def _scanner(exc: yaml.MarkedYAMLError, problem: str, mark: yaml.Mark) -> str | None:
    """The scanner's complaints (characters, quotes, keys) in words, or None."""
    context = exc.context or ""
    if "\\t" in problem or "tab" in problem:
        return "a tab character is used here; YAML indents with spaces only - use spaces"
    start = _START_CHAR.search(problem)
    if start:
        return (
            f"a plain value cannot start with '{start.group(1)}' (YAML reserves it) - put the "
            "value in quotes"
        )
    if "quoted scalar" in context and "end of stream" in problem:
        return "this quoted text is never closed - add the closing quote"
    if "unknown escape character" in problem:
        return (
            "a backslash in double quotes starts an escape YAML does not know - write \\\\ for "
            "a backslash, or use single quotes"
        )
    if "could not find expected ':'" in problem:
        return "this line has no ':' after its key - write 'key: value'"
    if "mapping values are not allowed here" in problem:
        return _colon(mark)
    if "alias" in context or "anchor" in context:
        return "'*' and '&' must be followed by a name - put the value in quotes if it is text"
    return None


def _where(exc: yaml.MarkedYAMLError) -> yaml.Mark | None:
    """The mark to report: the opening of an unclosed quote or a key without ':', else where
    the parser noticed the problem."""
    problem = exc.problem or ""
    context = exc.context or ""
    opening = ("quoted scalar" in context and "end of stream" in problem) or (
        "could not find expected ':'" in problem
    )
    if opening and exc.context_mark is not None:
        return exc.context_mark
    return exc.problem_mark


def _sentence(exc: yaml.MarkedYAMLError, mark: yaml.Mark) -> str:
    problem = exc.problem or ""
    said = _scanner(exc, problem, mark)
    if said is not None:
        return said
    flow = _FLOW_END.search(problem)
    if flow:
        return _flow(exc, flow.group(1), flow.group(2))
    found = _FOUND.search(problem)
    if found:
        return _block_end(found.group(1), exc, mark)
    if "expected the node content" in problem and "<stream end>" in problem:
        return "the file ends inside a [ ] list or { } mapping that is never closed"
    if "undefined alias" in problem:
        return "this alias (*name) refers to an anchor (&name) not defined before it"
    if "single document" in (exc.context or ""):
        return "the file holds a second YAML document ('---'); a pipeline file is one document"
    where = f" ({exc.context} at {_at(exc.context_mark)})" if exc.context_mark else ""
    return f"{problem or exc}{where}"


def explain(exc: yaml.MarkedYAMLError) -> YamlProblem | None:
    """The problem of a PyYAML syntax error as a located sentence; None without a location."""
    mark = _where(exc)
    if mark is None:
        return None
    return YamlProblem(mark.line + 1, mark.column + 1, _sentence(exc, mark))
