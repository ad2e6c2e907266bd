"""Bounds on a CEL source, checked before either parser sees it.

The ``cel`` package's Rust parser overflows its stack - killing the process, no exception -
on a chain of about 20,000 ``+``, and refuses brackets nested past about 95 with a cryptic
message; ``celfast``'s parser and closures recurse in Python. ``check_shape`` measures the
source with a lexer and a precedence split that never recurse deeper than the bracket
nesting, and refuses what is too long or too deep with a clear message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

#: The longest expression source accepted, in characters.
MAX_SOURCE_LENGTH = 10_000
#: The deepest bracket nesting accepted: ``(``, ``[`` and ``{`` together.
MAX_NESTING = 32
#: The deepest operator nesting accepted (an upper bound on the syntax tree's depth, counted
#: before parsing): a chain ``a + b + ...`` of N terms counts N, ``&&``/``||`` chains count 1.
MAX_DEPTH = 100
#: The macros that loop over a list or map.
COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter"})


class Call(NamedTuple):
    """A call in a source: the function's name, whether as a method, how many arguments."""

    name: str
    method: bool
    args: int


class Refused(Exception):
    """The source is refused on either path: too long or nested too deeply to parse safely."""


_LEX = re.compile(
    r"""
    (?P<ws>[\t\n\f\r ]+)
  | (?P<str>(?:[bB][rR]?|[rR][bB]?)?(?:'''|\"\"\"|'|"))
  | (?P<num>\.?[0-9][0-9A-Za-z_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_STRING_END = {
    (raw, quote): re.compile(
        (r"(?:[^\\]|\\.)*?" if not raw else r".*?") + re.escape(quote)
        if len(quote) == 3
        else (r"(?:[^\\\n" + quote + r"]|\\.)*" if not raw else r"[^\n" + quote + r"]*")
        + re.escape(quote),
        re.DOTALL,
    )
    for raw in (False, True)
    for quote in ("'''", '"""', "'", '"')
}
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = frozenset(_OPEN.values())
_BINARY_LEVELS = (
    frozenset({"==", "!=", "<", "<=", ">", ">=", "in"}),
    frozenset({"+", "-"}),
    frozenset({"*", "/", "%"}),
)
Item = tuple[str, str] | list[Any]


def _lex(source: str) -> list[tuple[str, str]]:
    """Tokens enough to measure nesting: strings are skipped whole, brackets kept."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        match = _LEX.match(source, pos)
        assert match is not None  # the last alternative matches any character
        kind, text = match.lastgroup or "other", match.group(0)
        pos = match.end()
        if kind == "str":
            raw = "r" in text.lower()
            quote = text.lstrip("bBrR")
            end = _STRING_END[raw, quote].match(source, pos)
            pos = end.end() if end is not None else len(source)
            tokens.append(("lit", "''"))
        elif kind == "ident" and text == "in":
            tokens.append(("op", "in"))
        elif kind != "ws":
            tokens.append(("lit" if kind in ("num", "ident", "other") else "op", text))
    return tokens


def _groups(tokens: list[tuple[str, str]]) -> list[Item]:
    """The tokens with each bracketed group made a nested list: ``[opener, *items]``."""
    root: list[Item] = []
    stack: list[list[Item]] = [root]
    for token in tokens:
        kind, text = token
        if kind == "op" and text in _OPEN:
            group: list[Any] = [text]
            stack[-1].append(group)
            stack.append(group)
            if len(stack) - 1 > MAX_NESTING:
                raise Refused(f"brackets nested more than {MAX_NESTING} deep")
        elif kind == "op" and text in _CLOSE and len(stack) > 1:
            stack.pop()
        else:
            stack[-1].append(token)
    return root


def _split(items: Sequence[Item], ops: Iterable[str]) -> tuple[int, list[list[Item]]]:
    """Split at the binary operators ``ops`` (a ``-`` after an operator is unary)."""
    wanted = frozenset(ops)
    parts: list[list[Item]] = [[]]
    count = 0
    for item in items:
        is_op = isinstance(item, tuple) and item[0] == "op" and item[1] in wanted
        operand_before = bool(parts[-1]) and not (
            isinstance(parts[-1][-1], tuple) and parts[-1][-1][0] == "op"
        )
        if is_op and (operand_before or item[1] not in ("-",)):
            count += 1
            parts.append([])
        else:
            parts[-1].append(item)
    return count, parts


def _depth(items: Sequence[Item]) -> int:
    """An upper bound on the syntax-tree depth of ``items`` (one bracket level, groups nested)."""
    depth = 0
    for element in _split(items, (",",))[1]:
        ternaries = sum(1 for item in element if item == ("op", "?"))
        branches = _split(element, ("?", ":"))[1]
        best = 0
        for branch in branches:
            best = max(best, _logical_depth(branch))
        depth = max(depth, ternaries + best)
    return depth


def _logical_depth(items: Sequence[Item]) -> int:
    count, parts = _split(items, ("||", "&&"))
    inner = 0
    for part in parts:
        inner = max(inner, _binary_depth(part, 0))
    return (2 if count else 0) + inner


def _binary_depth(items: Sequence[Item], level: int) -> int:
    if level == len(_BINARY_LEVELS):
        return _postfix_depth(items)
    count, parts = _split(items, _BINARY_LEVELS[level])
    return count + max(_binary_depth(part, level + 1) for part in parts)


def _postfix_depth(items: Sequence[Item]) -> int:
    """Prefix operators (folded into one node), then a primary and its selections/calls."""
    ops = 0
    prefix = False
    child = 0
    for item in items:
        if isinstance(item, list):
            ops += 1
            child = max(child, _depth(item[1:]))
        elif item[0] == "op" and item[1] in ("!", "-"):
            prefix = True
        elif item[0] == "op":
            ops += 1
    return ops + prefix + child + 1


def check_shape(source: str) -> None:
    """``Refused`` unless ``source`` is short and shallow enough for both parsers (the ``cel``
    package's Rust parser overflows its stack, killing the process, on a chain of ~20,000
    ``+``; this module's parser is recursive too)."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise Refused(f"expression longer than {MAX_SOURCE_LENGTH:,} characters")
    depth = _depth(_groups(_lex(source)))
    if depth > MAX_DEPTH:
        raise Refused(
            f"expression nested too deeply (about {depth} levels of operators, at most "
            f"{MAX_DEPTH}): split it, e.g. into several checks"
        )


def calls(source: str) -> list[tuple[str, bool]]:
    """Each call in ``source``: the name called and whether as a method (``x.name(...)``)."""
    tokens = _lex(source)
    previous = [("", ""), *tokens]
    return [
        (name, before == ("op", "."))
        for before, (kind, name), paren in zip(previous, tokens, tokens[1:], strict=False)
        if paren == ("op", "(") and kind == "lit" and name.isidentifier()
    ]


def comprehensions(source: str) -> list[str]:
    """The comprehension macros ``source`` calls (``range.all(x, p)``...), sorted."""
    return sorted({name for name, method in calls(source) if method and name in COMPREHENSIONS})


def token_count(source: str) -> int:
    """How many tokens ``source`` has (a string literal is one)."""
    return len(_lex(source))


def rename_calls(source: str, names: dict[str, str]) -> str:
    """``source`` with each global call of a name in ``names`` (``timestamp(...)``, not
    ``x.timestamp(...)`` nor text inside a string) calling the name it maps to instead."""
    pieces: list[str] = []
    pos = done = 0
    previous = ""
    while pos < len(source):
        match = _LEX.match(source, pos)
        assert match is not None  # the last alternative matches any character
        kind, text = match.lastgroup or "other", match.group(0)
        start, pos = pos, match.end()
        if kind == "str":
            end = _STRING_END["r" in text.lower(), text.lstrip("bBrR")].match(source, pos)
            pos = end.end() if end is not None else len(source)
        if kind == "ws":
            continue
        if kind == "ident" and text in names and previous != ".":
            after = _LEX.match(source, pos)
            while after is not None and after.lastgroup == "ws":
                after = _LEX.match(source, after.end())
            if after is not None and after.group(0) == "(":
                pieces += [source[done:start], names[text]]
                done = pos
        previous = text if kind == "op" else kind
    return "".join(pieces) + source[done:]


def _call_name(items: Sequence[Item], k: int, namespaces: frozenset[str]) -> tuple[str, bool]:
    """The name of the call whose name is ``items[k]`` and whether it is a method call;
    ``math.abs(...)`` (a namespace before it) is the function ``math.abs``, not a method."""
    name = items[k]
    assert isinstance(name, tuple)
    dotted = k >= 1 and items[k - 1] == ("op", ".")
    if not dotted:
        return name[1], False
    space = items[k - 2] if k >= 2 else None
    if (
        isinstance(space, tuple)
        and space[0] == "lit"
        and space[1] in namespaces
        and (k < 3 or items[k - 3] != ("op", "."))
    ):
        return f"{space[1]}.{name[1]}", False
    return name[1], True


def call_arities(source: str, namespaces: frozenset[str] = frozenset()) -> list[Call]:
    """Each call in ``source`` (call ``check_shape`` first): its name, whether it is a method
    call, and how many arguments it is given (a method's target not counted)."""
    found: list[Call] = []
    stack: list[Sequence[Item]] = [_groups(_lex(source))]
    while stack:
        items = stack.pop()
        for k, item in enumerate(items):
            if isinstance(item, list):
                stack.append(item[1:])
                following = items[k - 1] if k else None
                if (
                    item[0] == "("
                    and isinstance(following, tuple)
                    and following[0] == "lit"
                    and following[1].isidentifier()
                ):
                    name, method = _call_name(items, k - 1, namespaces)
                    args = item[1:]
                    count = sum(1 for a in args if a == ("op", ",")) + 1 if args else 0
                    found.append(Call(name, method, count))
    return found


def bound_variables(source: str) -> frozenset[str]:
    """The variables the comprehensions of ``source`` bind (``x`` in ``l.all(x, x > 0)``)."""
    tokens = _lex(source)
    return frozenset(
        var
        for i in range(2, len(tokens) - 2)
        if tokens[i - 1] == ("op", ".")
        and tokens[i][1] in COMPREHENSIONS
        and tokens[i + 1] == ("op", "(")
        and tokens[i + 3] == ("op", ",")
        and (var := tokens[i + 2][1]).isidentifier()
    )


def selections(source: str, variable: str) -> list[tuple[str, str | None]]:
    """Each ``variable.key`` (and ``variable.key.name``) the source reads, as ``(key, name)``
    - ``name`` None when nothing, a method call or an index follows the key - outside
    string literals; a use of ``variable`` without ``.key`` (``state[k]``) gives nothing."""
    tokens = _lex(source)
    found: list[tuple[str, str | None]] = []

    def field_at(i: int) -> str | None:
        """The identifier selected at ``tokens[i]`` (``. name``), unless a call follows."""
        if tokens[i : i + 1] != [("op", ".")] or i + 1 >= len(tokens):
            return None
        kind, text = tokens[i + 1]
        if kind != "lit" or not text.isidentifier() or tokens[i + 2 : i + 3] == [("op", "(")]:
            return None
        return text

    for i, token in enumerate(tokens):
        if token != ("lit", variable) or (i and tokens[i - 1] == ("op", ".")):
            continue
        key = field_at(i + 1)
        if key is not None:
            found.append((key, field_at(i + 3)))
    return found
