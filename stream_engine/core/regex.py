"""Regular expressions in RE2 syntax, matched in time linear in the text (google-re2).

Python's ``re`` backtracks: ``^([a-zA-Z]+ ?)+$`` on 27 letters and a ``!`` takes seconds. RE2
never does, and it is the syntax CEL specifies. It has no lookarounds (``(?=``, ``(?!``,
``(?<=``, ``(?<!``) and no backreferences (``\\1``), which need backtracking; a pattern that
uses them is refused when it is compiled, with RE2's reason. ``\\d``, ``\\w``, ``\\s`` and
``\\b`` are ASCII-only in RE2.
"""

from __future__ import annotations

import re2
from re2 import _re2  # the compiled-regexp object: ``re2``'s Python wrapper adds ~10 µs a match

from stream_engine.errors import RegexError

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)


def _options(ignore_case: bool) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    options.never_capture = True  # only "does it match" is asked: no groups to record
    options.case_sensitive = not ignore_case
    return options


class Regex:
    """A compiled RE2 pattern: ``search`` (anywhere in the text) and ``fullmatch`` (all of
    it), both linear in the length of the text."""

    __slots__ = ("_regexp", "pattern")

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        self.pattern = pattern
        try:
            self._regexp = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _options(ignore_case))
        except (TypeError, ValueError) as exc:  # pybind11's conversions
            raise RegexError(f"invalid regular expression: {exc}") from None
        if not self._regexp.ok():
            raise RegexError(f"invalid regular expression (RE2 syntax): {self._regexp.error()}")

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in ``text``."""
        encoded = text.encode("utf-8", "surrogatepass")
        return bool(self._regexp.Match(_UNANCHORED, encoded, 0, len(encoded))[0] != _NO_MATCH)

    def fullmatch(self, text: str) -> bool:
        """Whether the pattern matches the whole of ``text``."""
        encoded = text.encode("utf-8", "surrogatepass")
        return bool(self._regexp.Match(_BOTH, encoded, 0, len(encoded))[0] != _NO_MATCH)


def compile_regex(pattern: str, *, ignore_case: bool = False) -> Regex:
    """``pattern`` compiled with RE2; ``RegexError`` (a ``ValueError``) names what RE2 refuses."""
    return Regex(pattern, ignore_case=ignore_case)
