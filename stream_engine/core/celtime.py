"""CEL time as the specification has it: timestamps in UTC, accessors with time-zone overloads.

The ``cel`` package keeps the offset a timestamp was written with and its accessors read the
time at that offset (``timestamp('2026-03-02T23:30:00-05:00').getHours()`` is 23; CEL says 4),
and it has no time-zone overloads (``getHours('America/New_York')``). So every ``timestamp()``
call is routed to ``utc_timestamp`` (``rename_calls`` renames it to ``UTC_TIMESTAMP``), whose
values are in UTC, which the package's own accessors then read right; an accessor called with
a time zone finds no overload in the package, which then calls the function of that name here.

Errors name no value: the package prints a failing function's message on stderr.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The name ``timestamp()`` calls are renamed to before the ``cel`` package compiles them.
UTC_TIMESTAMP = "_utc_timestamp"

_OFFSET = re.compile(r"([+-]?)([0-9]{2}):([0-9]{2})")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

#: Each timestamp accessor: its value for a time already in the wanted zone (CEL's numbering:
#: months, days of the month and of the year from 0, ``getDate`` from 1, Sunday is day 0).
ACCESSORS: dict[str, Callable[[datetime], int]] = {
    "getFullYear": lambda t: t.year,
    "getMonth": lambda t: t.month - 1,
    "getDayOfYear": lambda t: t.timetuple().tm_yday - 1,
    "getDayOfMonth": lambda t: t.day - 1,
    "getDate": lambda t: t.day,
    "getDayOfWeek": lambda t: (t.weekday() + 1) % 7,
    "getHours": lambda t: t.hour,
    "getMinutes": lambda t: t.minute,
    "getSeconds": lambda t: t.second,
    "getMilliseconds": lambda t: t.microsecond // 1000,
}
#: The accessors a duration has too (whole hours, minutes, seconds, milliseconds in it).
DURATION_ACCESSORS = frozenset({"getHours", "getMinutes", "getSeconds", "getMilliseconds"})


class TimeZoneError(ValueError):
    """A time zone that is neither an IANA name nor an offset like ``+05:30``."""


@lru_cache(maxsize=128)
def zone(name: str) -> tzinfo:
    """The time zone ``name``: an IANA name (``Europe/London``, ``UTC``) or a fixed offset
    from UTC, ``+05:30``, ``-08:00`` (the sign may be left out for a positive one)."""
    offset = _OFFSET.fullmatch(name)
    if offset is not None:
        sign, hours, minutes = offset.groups()
        if int(hours) > 23 or int(minutes) > 59:
            raise TimeZoneError("time zone offset out of range")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise TimeZoneError(
            "unknown time zone (give an IANA name like 'Europe/London' or an offset like '+05:30')"
        ) from None


def utc_timestamp(value: Any) -> datetime:
    """CEL's ``timestamp()``: an RFC 3339 text (or a timestamp) as a timestamp in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(f"timestamp: no such overload for {type(value).__name__}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("timestamp: not an RFC 3339 timestamp (2026-03-02T10:00:00Z)")
    text = value.upper().replace("Z", "+00:00")
    fraction = match.group(1)
    if fraction and len(fraction) > 7:  # Python keeps microseconds; nanoseconds are cut
        text = text.replace(fraction, fraction[:7], 1)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("timestamp: not a valid date and time") from None


def _kind(value: Any) -> str:
    """A value's CEL type name, for a message."""
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, timedelta):
        return "duration"
    names = {bool: "bool", int: "int", float: "double", str: "string", bytes: "bytes"}
    return names.get(type(value), "list" if isinstance(value, list | tuple) else "map")


def _zoned(name: str) -> Callable[..., int]:
    """The accessor ``name`` with a time zone: ``t.getHours('Europe/London')``."""
    read = ACCESSORS[name]

    def accessor(*args: Any) -> int:
        if len(args) != 2 or not isinstance(args[0], datetime) or not isinstance(args[1], str):
            kinds = ", ".join(_kind(arg) for arg in args)
            raise ValueError(f"{name}: no such overload for ({kinds})")
        return read(args[0].astimezone(zone(args[1])))

    accessor.__name__ = name
    return accessor


#: The functions the ``cel`` package is given for time: ``timestamp()`` in UTC and every
#: accessor's time-zone overload.
TIME_FUNCTIONS: dict[str, Callable[..., Any]] = {
    UTC_TIMESTAMP: utc_timestamp,
    **{name: _zoned(name) for name in ACCESSORS},
}
