"""What an input record may be before the engine works on it: bounded nesting, string and
collection sizes, integers a 64-bit JSON reader can carry, and each key once per object.

JSON decoders disagree past these points (orjson reads 1,023 levels but writes 254; integers
beyond 64 bits become floats; a repeated key keeps its last value while other readers keep
the first), so a record past them is refused once, when it enters, with a reason of its own.
The checks cost a few byte counts on a typical record: the walk over the decoded value runs
only when the raw bytes say a limit could be reached."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from stream_engine.core.outcome import DeadLetterReason

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_TWO_63 = 2.0**63
#: Where a key may end: a quote, optional blanks, a colon (also matches inside strings, so
#: it can only over-count keys).
_KEY_END = re.compile(rb'"[ \t\r\n]*:')


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Bounds on one input record (``input.limits``)."""

    #: Levels of nested objects and arrays; the record itself is level 1.
    max_depth: int = 32
    #: Characters in one string (keys included).
    max_string_length: int = 65_536
    #: Elements of one array, or members of one object.
    max_items: int = 10_000


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """Why a decoded record is refused: the dead-letter reason and a message for people."""

    reason: DeadLetterReason
    message: str


def check_record(raw: bytes, record: dict[str, Any], limits: RecordLimits) -> RecordProblem | None:
    """None when ``record`` (decoded from ``raw``) is within ``limits``, is free of integers
    beyond 64 bits and names each key once per object; else why not."""
    size = len(raw)
    if (
        raw.count(b"{") + raw.count(b"[") == 1
        and size <= limits.max_string_length
        and size < 2 * limits.max_items
    ):
        # One object of scalars, too short to hold a string or a list past the limits.
        keys, big = len(record), _big_number(record.values())
    else:
        problem, keys, big = _walk(record, limits)
        if problem is not None:
            return problem
    if big:
        problem = _reread(raw, parse_int=_exact_int)
        if problem is not None:
            return problem
    if not _keys_at_most(raw, keys):
        return _reread(raw, object_pairs_hook=_pairs)
    return None


def _big_number(values: Iterable[Any]) -> bool:
    """Whether any number could have been written as an integer beyond 64 bits (orjson reads
    those as floats, or as ints up to 2**64)."""
    for value in values:
        kind = type(value)
        if kind is float:
            if not -_TWO_63 < value < _TWO_63:
                return True
        elif kind is int and not INT64_MIN <= value <= INT64_MAX:
            return True
    return False


def _keys_at_most(raw: bytes, keys: int) -> bool:
    """Whether the text holds no more keys than were decoded (so none repeats): each key ends
    in a quote and a colon, which ``raw.count`` finds unless blanks stand between them."""
    if raw.count(b'" ') or raw.count(b'"\t') or raw.count(b'"\n') or raw.count(b'"\r'):
        return len(_KEY_END.findall(raw)) == keys
    return raw.count(b'":') == keys


def _walk(record: dict[str, Any], limits: RecordLimits) -> tuple[RecordProblem | None, int, bool]:
    """Depth, sizes, the number of keys and big numbers of a record, without recursion."""
    keys = 0
    big = False
    stack: list[tuple[Any, int, str]] = [(record, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > limits.max_depth:
            where = path or "the record"
            return _limit(f"{where} is nested deeper than {limits.max_depth} levels"), 0, big
        items = len(value)
        if items > limits.max_items:
            noun = "members" if type(value) is dict else "elements"
            where = path or "the record"
            return _limit(f"{where} has {items} {noun}, over {limits.max_items}"), 0, big
        if type(value) is dict:
            keys += items
            pairs: Iterable[tuple[Any, Any]] = value.items()
        else:
            pairs = enumerate(value)
        for key, inner in pairs:
            kind = type(inner)
            if kind is str:
                if len(inner) > limits.max_string_length:
                    return (
                        _limit(
                            f"{_at(path, key)} is longer than {limits.max_string_length} characters"
                        ),
                        0,
                        big,
                    )
            elif kind is dict or kind is list:
                stack.append((inner, depth + 1, _at(path, key)))
            elif not big and (kind is float or kind is int):
                big = _big_number((inner,))
            if type(key) is str and len(key) > limits.max_string_length:
                where = path or "the record"
                return (
                    _limit(
                        f"a key of {where} is longer than {limits.max_string_length} characters"
                    ),
                    0,
                    big,
                )
    return None, keys, big


def _at(path: str, key: Any) -> str:
    if type(key) is int:
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _limit(message: str) -> RecordProblem:
    return RecordProblem(DeadLetterReason.LIMIT_EXCEEDED, message)


class _Refused(Exception):
    """Raised by the exact reader's hooks to stop at the first problem."""


def _exact_int(text: str) -> int:
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Refused(
            f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is beyond "
            "the signed 64-bit range; send it as a string"
        )
    return value


def _reread(raw: bytes, **hooks: Any) -> RecordProblem | None:
    """Read ``raw`` again with the standard reader, whose ``hooks`` see each integer and key
    as written; the first one that refuses says why (orjson read the rest already)."""
    try:
        json.loads(raw, **hooks)
    except _Refused as exc:
        return RecordProblem(DeadLetterReason.DECODE_ERROR, str(exc))
    except (ValueError, RecursionError):
        return None
    return None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            shown = key if len(key) <= 40 else key[:37] + "..."
            raise _Refused(
                f"the key '{shown}' appears twice in one object; JSON readers "
                "disagree on which value counts"
            )
        seen.add(key)
    return dict(pairs)


class NotJson(ValueError):
    """A computed value that JSON cannot carry to the next stage; the message says which."""


def record_value(value: Any, limits: RecordLimits | None = None) -> Any:
    """A value a rule computed for the record (a CEL result, a service's answer), as every
    later stage will see it after the hop: timestamps become RFC 3339 text and durations CEL's
    text (``90s``); bytes, non-finite numbers and integers beyond 64 bits raise ``NotJson``
    (the offline tools and Kafka then agree, instead of JSON turning ``inf`` into ``null``)."""
    return _json(value, 1, (limits or RecordLimits()).max_depth + 8)


def _json(value: Any, depth: int, deepest: int) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise NotJson(f"the integer {value} is beyond the signed 64-bit range")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise NotJson(f"{value} is not a number JSON can carry")
        return value
    if depth > deepest:
        raise NotJson(f"the value is nested deeper than {deepest} levels")
    if isinstance(value, dict):
        return {_key(k): _json(v, depth + 1, deepest) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v, depth + 1, deepest) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    for plain in (bool, int, float, str):  # a subclass (a CEL uint is an int) as its base
        if isinstance(value, plain):
            return _json(plain(value), depth, deepest)
    raise NotJson(f"a value of type {kind.__name__} cannot be carried in JSON")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    raise NotJson(f"a key of type {type(key).__name__} cannot be carried in JSON")
