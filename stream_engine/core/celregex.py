"""The ``cel`` package's ``matches()`` patterns (Rust ``regex`` syntax) restated for RE2.

Both engines run in linear time and share most syntax, but not all meanings: Rust's ``\\d``,
``\\s`` and ``\\w`` are Unicode classes (RE2's are ASCII), Rust reads ``[a&&b]`` as a class
intersection (RE2 as the characters ``a``, ``&``, ``b``), and each accepts patterns the other
refuses. ``translate_pattern`` accepts a conservative subset whose meaning it knows in both,
replaces the Unicode classes with their exact code points (taken from the ``cel`` package),
and refuses the rest with ``RegexError`` so the fast path leaves the pattern to the package.
"""

from __future__ import annotations

import re

from stream_engine.core import celregex_tables
from stream_engine.errors import RegexError


def _class_body(ranges: str) -> str:
    """RE2 class content (no brackets) for hex code points and ranges: ``"30-39 660"``."""
    return "".join("-".join(f"\\x{{{end}}}" for end in item.split("-")) for item in ranges.split())


_CLASSES = {
    "d": _class_body(celregex_tables.DIGIT),
    "s": _class_body(celregex_tables.SPACE),
    "w": _class_body(celregex_tables.WORD),
}
#: Escapes with the same meaning in both engines, outside and inside a class.
_SAME_ESCAPES = frozenset("\\.-[](){}*+?|^$/#&~ nrtfvAz")
_POSIX = re.compile(
    r"\[:\^?(alnum|alpha|ascii|blank|cntrl|digit|graph|lower|print|punct|space|upper|word"
    r"|xdigit):\]"
)
_GROUP = re.compile(r"\(\?(?::|P?<[A-Za-z_][A-Za-z0-9_]*>|([imsU]*)(?:-([imsU]*))?[:)])")
_REPEAT = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_HEX = re.compile(r"x(?:[0-9a-fA-F]{2}|\{([0-9a-fA-F]{1,8})\})")


def _refuse(pattern: str, what: str) -> RegexError:
    return RegexError(f"{what} in {pattern!r}: left to the cel package")


def _escape(pattern: str, pos: int, in_class: bool) -> tuple[str, int]:
    """The RE2 text for the escape at ``pattern[pos]`` (a backslash), and where it ends."""
    if pos + 1 >= len(pattern):
        raise _refuse(pattern, "trailing backslash")
    char = pattern[pos + 1]
    if char in _CLASSES:
        body = _CLASSES[char]
        return (body if in_class else f"[{body}]"), pos + 2
    if char.lower() in _CLASSES and not in_class:
        return f"[^{_CLASSES[char.lower()]}]", pos + 2
    if char == "x":
        hexa = _HEX.match(pattern, pos + 1)
        if hexa is None:
            raise _refuse(pattern, "hex escape")
        point = int(hexa.group(1) or hexa.group(0)[1:], 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            raise _refuse(pattern, "hex escape")
        return f"\\x{{{point:x}}}", hexa.end()
    if char in _SAME_ESCAPES and not (in_class and char in "Az"):
        return pattern[pos : pos + 2], pos + 2
    raise _refuse(pattern, f"escape \\{char}")


def _char_class(pattern: str, pos: int) -> tuple[str, int]:
    """The RE2 text for the class starting at ``pattern[pos]`` (``[``), and where it ends."""
    out = ["["]
    pos += 1
    if pattern.startswith("^", pos):
        out.append("^")
        pos += 1
    first = True
    while pos < len(pattern):
        char = pattern[pos]
        if char == "]" and not first:
            out.append("]")
            return "".join(out), pos + 1
        first = False
        if char == "\\":
            start = pos
            text, pos = _escape(pattern, pos, in_class=True)
            if pattern[start + 1] in _CLASSES and "-" in (
                pattern[start - 1],
                pattern[pos : pos + 1],
            ):
                raise _refuse(pattern, "range with a class escape")
            out.append(text)
        elif char == "[":
            posix = _POSIX.match(pattern, pos)
            if posix is None:
                raise _refuse(pattern, "nested character class")
            out.append(posix.group(0))
            pos = posix.end()
        elif pattern.startswith(("&&", "--", "~~"), pos):
            raise _refuse(pattern, "character class operation")
        else:
            out.append(char)
            pos += 1
    raise _refuse(pattern, "unclosed character class")


def _flags_ok(on: str | None, off: str | None) -> bool:
    """Flags as both engines read them: some given, none twice, ``-`` followed by one."""
    if on is None:  # (?: or a named group
        return True
    flags = on + (off or "")
    return bool(flags) and len(set(flags)) == len(flags) and off != ""


def translate_pattern(pattern: str) -> str:
    """``pattern`` as RE2 with the meaning the ``cel`` package gives it; ``RegexError`` for
    syntax whose meaning this does not know to be the same in both."""
    out: list[str] = []
    pos = 0
    while pos < len(pattern):
        char = pattern[pos]
        if char == "\\":
            text, pos = _escape(pattern, pos, in_class=False)
            out.append(text)
        elif char == "[":
            text, pos = _char_class(pattern, pos)
            out.append(text)
        elif char == "(" and pattern.startswith("(?", pos):
            group = _GROUP.match(pattern, pos)
            if group is None or not _flags_ok(group.group(1), group.group(2)):
                raise _refuse(pattern, "group syntax")
            out.append(group.group(0))
            pos = group.end()
        elif char == "{":
            repeat = _REPEAT.match(pattern, pos)
            if repeat is None:
                raise _refuse(pattern, "brace")
            out.append(repeat.group(0))
            pos = repeat.end()
        else:
            out.append(char)
            pos += 1
    return "".join(out)
