"""Time for stateful rules: durations, event times from a record's field, where a record falls
on its store's stream time, and windows as time-ordered entry lists."""

from __future__ import annotations

import pytest

from stream_engine.core.stores import KeyedState, MemoryStore
from stream_engine.core.windows import (
    between,
    bucket_start,
    cap,
    entries_of,
    event_time_ms,
    insert,
    iso_ms,
    parse_duration,
    place,
    since,
)
from stream_engine.errors import EventTimeError, RuleEvaluationError

T0 = 1_793_871_300_000  # 2026-11-05T09:35:00Z


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90_000),
        ("10m", 600_000),
        ("24h", 86_400_000),
        ("7d", 604_800_000),
        ("1h30m", 5_400_000),
        ("250ms", 250),
        ("0s", 0),
        (" 2W ", 1_209_600_000),
    ],
)
def test_a_duration_is_a_number_and_a_unit_in_milliseconds(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "10 m", "-5m", "1.5h", "m10", "11000d"])
def test_anything_else_is_not_a_duration_and_says_how_to_write_one(text):
    with pytest.raises(ValueError, match=r"duration|longer than ten years"):
        parse_duration(text)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-05T09:35:00Z",
        "2026-11-05T09:35:00",  # no zone: UTC
        "2026-11-05T10:35:00+01:00",
        "2026-11-05 09:35:00.000Z",
        1_793_871_300,  # epoch seconds
        1_793_871_300.0,
        T0,  # epoch milliseconds (above 1e11)
    ],
)
def test_an_event_time_is_iso_text_or_epoch_seconds_or_milliseconds(value):
    assert event_time_ms(value, "at") == T0


def test_an_iso_date_alone_is_its_midnight_in_utc():
    assert iso_ms(event_time_ms("2026-11-05", "at")) == "2026-11-05T00:00:00.000+00:00"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("yesterday", "text that is not ISO 8601"),
        ("", "text that is not ISO 8601"),
        ("1793873700", "text that is not ISO 8601"),
        (True, "a bool"),
        ({"t": 1}, "a dict"),
        (float("nan"), "not a finite number"),
        (-5, "outside 1970-01-01 to 9999-12-31"),
        ("1969-12-31T23:59:59Z", "outside 1970-01-01 to 9999-12-31"),
    ],
)
def test_any_other_event_time_is_a_rule_error_naming_the_field_and_what_it_got(value, why):
    with pytest.raises(EventTimeError, match="expected ISO 8601") as caught:
        event_time_ms(value, "paid_at")
    assert isinstance(caught.value, RuleEvaluationError)
    assert str(caught.value).startswith("paid_at: not an event time (")
    assert why in str(caught.value)


def test_a_refused_pii_time_is_not_quoted():
    with pytest.raises(EventTimeError) as caught:
        event_time_ms("born 12 May 1985", "date_of_birth", quote=False)
    assert "1985" not in str(caught.value)


def test_a_record_behind_the_stream_time_by_more_than_grace_is_placed_at_the_edge():
    state = KeyedState(MemoryStore())
    state.advance(100_000)
    assert place(state, 95_000, 10_000) == place(state, 95_000, 5_000)
    assert place(state, 95_000, 5_000).late_by_ms == 0
    late = place(state, 80_000, 5_000)
    assert (late.at_ms, late.late_by_ms) == (95_000, 15_000)
    assert state.clock == 100_000  # placing does not move the clock


def test_windows_are_kept_in_time_order_and_read_with_both_edges_included():
    entries: list[list[object]] = []
    for t in (30, 10, 20, 20):
        entries = insert(entries, [t, f"id{t}", None])
    assert [e[0] for e in entries] == [10, 20, 20, 30]
    assert [e[0] for e in between(entries, 10, 20)] == [10, 20, 20]
    assert [e[0] for e in since(entries, 20)] == [20, 20, 30]


def test_a_capped_window_drops_its_oldest_but_never_the_entry_being_counted():
    entries = [[t, str(t), None] for t in (1, 2, 3, 4)]
    assert cap(entries, 2, entries[3]) == (entries[2:], True)
    kept, dropped = cap(entries, 2, entries[0])
    assert dropped
    assert [e[0] for e in kept] == [1, 4]
    assert cap(entries, 4, entries[0]) == (entries, False)


def test_a_stored_value_of_another_shape_reads_as_an_empty_window():
    assert entries_of(None) == []
    assert entries_of({"a": 1}) == []
    assert entries_of([[1, "a", 2], [2, "b"]]) == []
    assert entries_of([[1, "card", "TX-1"]][0]) == []  # a Duplicate's sighting, not a window
    window = [[1, "a", 2], [2, "b", None]]
    assert entries_of(window) is window


def test_tumbling_buckets_are_aligned_to_the_epoch():
    hour = 3_600_000
    assert bucket_start(T0, hour) == T0 - 35 * 60_000
