"""The extension functions of ``cel.stdlib``, guarded so that no call outgrows a record.

``cel.stdlib`` implements cel-go's extension functions in Python. Most are linear in their
arguments; these are not, and are replaced by versions with the same results:

* ``lists.range(n)`` allocates ``n`` items (``lists.range(100000000)``: 2.6 GB) and ``split``
  one per character at most (``s.split('')``): refused past ``MAX_LIST_ITEMS``, the most a
  record's list may hold; ``replace`` and ``join`` can build a string far longer than their
  arguments (``s.replace('', s)``): refused past ``MAX_STRING_LENGTH``.
* ``distinct`` and ``sets.contains``/``equivalent``/``intersects`` compare every pair
  (quadratic): done with a hash set instead, comparing pairs only among lists and maps.
* ``lowerAscii``, ``upperAscii`` and ``strings.quote`` loop over characters in Python: done
  with ``str.translate``/``str.replace``.

Errors name no value: the ``cel`` package prints a failing function's message on stderr,
and a record's value there would be personal data in a log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cel.stdlib import STDLIB_FUNCTIONS

#: The most items ``lists.range`` makes (as many as a record's list may hold).
MAX_LIST_ITEMS = 10_000
#: The longest string ``replace`` or ``join`` makes, in characters.
MAX_STRING_LENGTH = 1_048_576

_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}
_UPPER = {code: code - 32 for code in range(ord("a"), ord("z") + 1)}
_QUOTES = (
    ("\\", "\\\\"),  # first: the escapes below add backslashes of their own
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\x07", "\\a"),
    ("\x08", "\\b"),
    ("\x0c", "\\f"),
    ("\x0b", "\\v"),
)
_TRUE = frozenset({"1", "t", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "false", "FALSE", "False"})


def lists_range(n: int) -> list[int]:
    """``[0, 1, ..., n - 1]``, at most ``MAX_LIST_ITEMS`` of them."""
    if isinstance(n, int) and n > MAX_LIST_ITEMS:
        raise ValueError(f"lists.range: more than {MAX_LIST_ITEMS:,} items")
    return list(range(n))


def split(s: str, sep: str, limit: int | None = None) -> list[str]:
    """``s`` split at ``sep`` (into at most ``limit`` pieces), at most ``MAX_LIST_ITEMS``."""
    if isinstance(s, str) and isinstance(sep, str):
        pieces = len(s) + 1 if sep == "" else s.count(sep) + 1
        if isinstance(limit, int) and limit >= 0:
            pieces = min(pieces, limit)
        if pieces > MAX_LIST_ITEMS:
            raise ValueError(f"split: more than {MAX_LIST_ITEMS:,} pieces")
    return list(STDLIB_FUNCTIONS["split"](s, sep, limit))


def _check_length(name: str, length: int) -> None:
    if length > MAX_STRING_LENGTH:
        raise ValueError(f"{name}: the result would be longer than {MAX_STRING_LENGTH:,}")


def replace(s: str, old: str, new: str, limit: int = -1) -> str:
    """``s`` with ``old`` replaced by ``new`` (``limit`` times at most, when not negative)."""
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        count = s.count(old)
        if isinstance(limit, int) and limit >= 0:
            count = min(count, limit)
        _check_length("replace", len(s) + count * (len(new) - len(old)))
    return str(STDLIB_FUNCTIONS["replace"](s, old, new, limit))


def join(items: list[Any], sep: str = "") -> str:
    """The strings of ``items`` joined with ``sep``."""
    if isinstance(items, list | tuple) and isinstance(sep, str):
        texts = [len(item) for item in items if isinstance(item, str)]
        _check_length("join", sum(texts) + len(sep) * max(len(items) - 1, 0))
    return sep.join(items)


class _Members:
    """Membership by Python equality (as ``in`` on a list), hashed where the value allows."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.hashed: set[Any] = set()
        self.others: list[Any] = []
        for item in items:
            self.add(item)

    def add(self, item: Any) -> None:
        try:
            self.hashed.add(item)
        except TypeError:  # unhashable: a list, a map
            self.others.append(item)

    def __contains__(self, item: Any) -> bool:
        try:
            return item in self.hashed
        except TypeError:
            return any(item is other or item == other for other in self.others)


def distinct(items: list[Any]) -> list[Any]:
    """``items`` without repeats, first occurrences kept in order."""
    seen = _Members(())
    result = []
    for item in list(items):
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


def sets_contains(container: list[Any], sublist: list[Any]) -> bool:
    """Whether every element of ``sublist`` is in ``container``."""
    members = _Members(container)
    return all(item in members for item in sublist)


def sets_equivalent(a: list[Any], b: list[Any]) -> bool:
    """Whether ``a`` and ``b`` hold the same elements."""
    return sets_contains(b, a) and sets_contains(a, b)


def sets_intersects(a: list[Any], b: list[Any]) -> bool:
    """Whether ``a`` and ``b`` share an element."""
    members = _Members(b)
    return any(item in members for item in a)


def lower_ascii(s: str) -> str:
    """``s`` with the ASCII letters lowercased."""
    if not isinstance(s, str):
        return str(STDLIB_FUNCTIONS["lowerAscii"](s))
    return s.translate(_LOWER)


def upper_ascii(s: str) -> str:
    """``s`` with the ASCII letters uppercased."""
    if not isinstance(s, str):
        return str(STDLIB_FUNCTIONS["upperAscii"](s))
    return s.translate(_UPPER)


def quote(s: str) -> str:
    """``s`` as a double-quoted CEL string literal."""
    if not isinstance(s, str):
        return str(STDLIB_FUNCTIONS["strings.quote"](s))
    for char, escaped in _QUOTES:
        s = s.replace(char, escaped)
    return f'"{s}"'


def bool_(value: Any) -> bool:
    """CEL's ``bool()``: a bool as is, or one of the spellings cel-go accepts."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError("bool: this string is not a boolean")
    raise ValueError(f"bool: cannot convert {type(value).__name__}")


_GUARDED: dict[str, Callable[..., Any]] = {
    "lists.range": lists_range,
    "split": split,
    "replace": replace,
    "join": join,
    "distinct": distinct,
    "sets.contains": sets_contains,
    "sets.equivalent": sets_equivalent,
    "sets.intersects": sets_intersects,
    "lowerAscii": lower_ascii,
    "upperAscii": upper_ascii,
    "strings.quote": quote,
    "bool": bool_,
}

#: Every extension function an expression may call, by CEL name.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: _GUARDED.get(name, function) for name, function in STDLIB_FUNCTIONS.items()
}
