"""Finding a record's PII values in what a stage wrote: the values as texts, the cheap checks
that run on every result, and one Aho-Corasick automaton when a record holds many values."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ahocorasick_rs import AhoCorasick, MatchKind

from stream_engine.core.result import RuleResult
from stream_engine.core.state import DeadLetter

#: Values shorter than this are replaced in free text only where they stand alone (not inside
#: a longer word or number), so a short value does not garble every message.
SHORT = 4
#: Up to this many distinct PII values a record's texts are searched value by value (fastest
#: for the usual two to five); beyond it, with one Aho-Corasick automaton (linear time).
FEW = 16
#: A record with more values: the substrings of a stage's output as long as its values are
#: looked up to find those that occur in it (``present``), up to this many characters of them;
#: beyond it the automaton searches the output.
GRAM_BUDGET = 300_000

_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def value_text(value: Any) -> str:
    """A scalar PII value as the text it is searched for (and masked) as."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def values_at(data: Mapping[str, Any], parts: Sequence[str]) -> list[Any]:
    """Every value at a dotted path: through objects by key, through lists element by element."""
    found: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth == len(parts):
            found.append(value)
        elif isinstance(value, Mapping):
            if parts[depth] in value:
                stack.append((value[parts[depth]], depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((item, depth) for item in reversed(value))
    return found


class Finder:
    """Many PII values found in one pass over a text (Aho-Corasick, leftmost-longest)."""

    __slots__ = ("_automaton", "known", "needles")

    def __init__(self, needles: Iterable[str]) -> None:
        self.needles = list(needles)
        self.known = frozenset(self.needles)
        self._automaton = AhoCorasick(self.needles, matchkind=MatchKind.LeftmostLongest)

    def spans(self, text: str) -> Iterator[tuple[str, int, int]]:
        """Each value found in ``text`` with its span; a short value only where it stands
        alone."""
        for index, start, end in self._automaton.find_matches_as_indexes(text):
            needle = self.needles[index]
            if len(needle) < SHORT and (
                (start > 0 and text[start - 1] in _ALNUM)
                or (end < len(text) and text[end] in _ALNUM)
            ):
                continue
            yield needle, start, end

    def scrub(self, text: str, replace: Callable[[str], str]) -> str:
        """``text`` with each value found replaced by ``replace(value)``."""
        if text in self.known:
            return replace(text)  # the usual shape of a value quoted in details: all of it
        parts: list[str] = []
        last = 0
        for needle, start, end in self.spans(text):
            parts.append(text[last:start])
            parts.append(replace(needle))
            last = end
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)


def distinct(values: Iterable[Any]) -> dict[str, None]:
    """PII values as texts, each once, in document order (a dict: linear however many there
    are). A value may be a list or an object: its scalars count; booleans and nulls identify
    nobody and are not searched for."""
    found: dict[str, None] = {}
    stack: list[Any] = []
    for value in values:
        if type(value) is str:
            if value:
                found[value] = None
            continue
        stack.append(value)
        while stack:
            item = stack.pop()
            kind = type(item)
            if kind is str:
                if item:
                    found[item] = None
            elif item is None or kind is bool:
                continue
            elif kind is list or kind is tuple:
                stack.extend(reversed(item))
            elif isinstance(item, Mapping):
                stack.extend(reversed(list(item.values())))
            elif isinstance(item, list | tuple):
                stack.extend(reversed(item))
            else:
                found[value_text(item)] = None
    return found


def longest_first(found: Iterable[str]) -> list[str]:
    """The values, longest first: a value inside a longer one is replaced after it."""
    needles = list(found)
    if len(needles) > 1:
        needles.sort(key=len, reverse=True)
    return needles


def output_texts(results: Sequence[tuple[str, RuleResult]], letter: DeadLetter | None) -> list[str]:
    """Every text a stage wrote for people: messages, strings, keys and numbers of details."""
    texts = [letter.message] if letter is not None and letter.message else []
    stack: list[Any] = []
    for _, result in results:
        if result.message:
            texts.append(result.message)
        if result.details:
            stack.append(result.details)
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            texts.append(str(item))
    return texts


def present(found: Iterable[str], lengths: Iterable[int], texts: Sequence[str]) -> list[str]:
    """The values of ``found`` that occur in ``texts``, without searching for any value: every
    substring of the texts as long as a value is looked up (``lengths``: the values' lengths)."""
    grams = {
        text[i : i + size]
        for size in lengths
        for text in texts
        for i in range(len(text) - size + 1)
    }
    return [needle for needle in found if needle in grams]


def _mentions(text: str, needles: Collection[str]) -> bool:
    # a loop: any() over a generator costs twice as much, on every result's message
    for needle in needles:  # noqa: SIM110
        if needle in text:
            return True
    return False


def numeric(needles: Iterable[str]) -> bool:
    """Whether any PII value reads as a number (only then are numbers in details compared)."""
    for needle in needles:  # noqa: SIM110 - a loop: this runs once per stage and record
        if needle.replace(".", "", 1).lstrip("-").isdigit():
            return True
    return False


def holds_value(value: Any, needles: Collection[str], numbers: bool) -> bool:
    """Whether a details value (or a key in it) contains a PII value. This runs on every
    result that has details, so the common shapes - an object of texts, numbers and lists of
    texts - are checked inline, with exact type tests first."""
    kind = type(value)
    if kind is str:
        return _mentions(value, needles)
    if kind is dict or isinstance(value, Mapping):
        for key, inner in value.items():
            if type(key) is str:
                for needle in needles:
                    if needle in key:
                        return True
            inner_kind = type(inner)
            if inner_kind is str:
                for needle in needles:
                    if needle in inner:
                        return True
            elif inner_kind is int or inner_kind is float:
                if numbers and str(inner) in needles:
                    return True
            elif (
                inner is not None
                and inner_kind is not bool
                and holds_value(inner, needles, numbers)
            ):
                return True
        return False
    if kind is list or kind is tuple:
        for item in value:
            if type(item) is str:
                for needle in needles:
                    if needle in item:
                        return True
            elif holds_value(item, needles, numbers):
                return True
        return False
    if kind is int or kind is float:
        return numbers and str(value) in needles
    return False
