"""Time for rules that remember, without Kafka: durations (``90s``, ``10m``, ``24h``, ``7d``),
event times read from a record, where a record falls on its store's stream time, and windows
kept as compact, JSON-able lists of ``[t_ms, identity, value]`` entries ordered by time.

A record more than ``grace`` before its store's stream time is late: it is placed at the
edge, ``clock - grace`` (``place``), never dropped, so that its count is still taken.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream_engine.core.state import iso_time
from stream_engine.core.stores import KeyedState
from stream_engine.errors import EventTimeError

#: Milliseconds in each unit a duration may be written in.
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w))+")
#: The longest duration accepted: ten years (a window longer than that is a mistake).
MAX_DURATION_MS = 3650 * UNIT_MS["d"]
#: An epoch number above this is in milliseconds, at or below it in seconds (1e11 s is the
#: year 5138; 1e11 ms is March 1973).
EPOCH_MS_ABOVE = 1e11
#: The latest event time accepted: the end of year 9999 (what ISO 8601 text can carry).
MAX_TIME_MS = 253_402_300_799_999
#: How much of a refused value an error message quotes.
QUOTE = 40

#: One entry of a window: [time (epoch ms), delivery identity, value].
Entry = list[Any]


def parse_duration(text: str) -> int:
    """``text`` (``90s``, ``10m``, ``24h``, ``7d``, ``1h30m``, ``250ms``) in milliseconds;
    ValueError when it is not one (so a params validator reports it where it was written)."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"not a duration: {text!r} (write a number and a unit, ms, s, m, h, d or w: "
            "90s, 10m, 24h, 7d, 1h30m)"
        )
    total = sum(int(n) * UNIT_MS[unit] for n, unit in _PART.findall(compact))
    if total > MAX_DURATION_MS:
        raise ValueError(f"{text!r} is longer than ten years")
    return total


def event_time_ms(value: Any, name: str, quote: bool = True) -> int:
    """A field's value as an epoch time in ms: ISO 8601 text, with or without zone (none:
    UTC), or an epoch number (seconds; above ``EPOCH_MS_ABOVE``, milliseconds). Anything else
    is an ``EventTimeError`` naming the field (and quoting the value unless ``quote`` is off,
    for a PII field)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EventTimeError(_refused(name, value, quote, f"a {type(value).__name__}"))
    if isinstance(value, str):
        ms = _iso_ms(value.strip())
        if ms is None:
            raise EventTimeError(_refused(name, value, quote, "text that is not ISO 8601"))
    elif not math.isfinite(value):
        raise EventTimeError(_refused(name, value, quote, "not a finite number"))
    else:
        ms = int(value) if abs(value) > EPOCH_MS_ABOVE else round(value * 1000)
    if not 0 <= ms <= MAX_TIME_MS:
        raise EventTimeError(_refused(name, value, quote, "outside 1970-01-01 to 9999-12-31"))
    return ms


def _iso_ms(text: str) -> int | None:
    if not text or text[0] not in "0123456789":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000) if moment.year >= 1970 else -1


def _refused(name: str, value: Any, quote: bool, why: str) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= QUOTE else shown[: QUOTE - 3] + "..."
    got = f"{shown}, {why}" if quote else why
    return (
        f"{name}: not an event time ({got}); expected ISO 8601 text such as "
        "2026-11-05T10:15:00Z (no zone: UTC) or epoch seconds or milliseconds"
    )


def iso_ms(ms: int) -> str:
    """An epoch time in ms as ISO 8601 UTC text, as decisions show times."""
    return iso_time(ms / 1000)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a record is counted on its store's stream time: at its event time, or, when it
    is late, at the edge (``clock - grace``), ``late_by_ms`` after its event time."""

    at_ms: int
    late_by_ms: int


def place(state: KeyedState, event_ms: int, grace_ms: int) -> Placement:
    """Where a record of ``event_ms`` is counted in ``state`` (before the clock moves)."""
    edge = state.clock - grace_ms
    if event_ms < edge:
        return Placement(edge, edge - event_ms)
    return Placement(event_ms, 0)


def entries_of(raw: Any) -> list[Entry]:
    """A stored window (a list of entries), or an empty one for a value of another shape (the
    first and last entries are looked at, so a rule id reused by another class starts afresh
    without every record paying for a full check)."""
    if not isinstance(raw, list):
        return []
    if raw and not (_is_entry(raw[0]) and _is_entry(raw[-1])):
        return []
    return raw


def _is_entry(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], int)
        and isinstance(value[1], str)
    )


def find(entries: list[Entry], identity: str) -> Entry | None:
    """The entry a delivery already counted, or None."""
    return next((entry for entry in entries if entry[1] == identity), None)


def insert(entries: list[Entry], entry: Entry) -> list[Entry]:
    """A new window with ``entry`` in time order (after the entries of the same time)."""
    position = bisect.bisect_right(entries, entry[0], key=lambda e: int(e[0]))
    return [*entries[:position], entry, *entries[position:]]


def since(entries: list[Entry], start_ms: int) -> list[Entry]:
    """The entries at or after ``start_ms`` (what a window still needs)."""
    return entries[bisect.bisect_left(entries, start_ms, key=lambda e: int(e[0])) :]


def between(entries: list[Entry], start_ms: int, end_ms: int) -> list[Entry]:
    """The entries from ``start_ms`` to ``end_ms``, both included."""
    low = bisect.bisect_left(entries, start_ms, key=lambda e: int(e[0]))
    high = bisect.bisect_right(entries, end_ms, key=lambda e: int(e[0]))
    return entries[low:high]


def cap(entries: list[Entry], limit: int, keep: Entry) -> tuple[list[Entry], bool]:
    """At most ``limit`` entries: the oldest dropped, never ``keep`` (the record being
    counted); and whether any was dropped."""
    excess = len(entries) - limit
    if excess <= 0:
        return entries, False
    if all(entry is not keep for entry in entries[:excess]):
        return entries[excess:], True
    return [keep, *entries[excess + 1 :]], True


def bucket_start(at_ms: int, width_ms: int) -> int:
    """The start of the tumbling window (aligned to the epoch) that holds ``at_ms``."""
    return at_ms - at_ms % width_ms
