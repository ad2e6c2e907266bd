"""What an input record may be: nesting, string and collection sizes, integers within 64 bits,
each key once per object - and what a computed value becomes for the next stage."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_engine.core.outcome import DeadLetterReason
from stream_engine.core.records import NotJson, RecordLimits, check_record, record_value

LIMITS = RecordLimits(max_depth=8, max_string_length=100, max_items=20)


def check(raw: bytes, limits: RecordLimits = LIMITS):
    return check_record(raw, orjson.loads(raw), limits)


def nested(levels: int) -> bytes:
    """An object ``levels`` deep counting itself: {"a": {"a": ... {"a": 1}}}."""
    return b'{"a":' * (levels - 1) + b"{" + b'"a":1' + b"}" * levels


def test_a_typical_record_passes_every_check():
    raw = orjson.dumps({"id": "A-1", "name": "Jane Doe", "amount": 12.5, "tags": ["x", "y"]})
    assert check(raw, RecordLimits()) is None


def test_nesting_up_to_the_limit_passes_and_one_level_more_is_refused():
    assert check(nested(8)) is None
    problem = check(nested(9))
    assert problem is not None
    assert problem.reason is DeadLetterReason.LIMIT_EXCEEDED
    assert "nested deeper than 8 levels" in problem.message


def test_arrays_count_as_levels_too():
    raw = b'{"a":' + b"[" * 8 + b"]" * 8 + b"}"
    problem = check(raw)
    assert problem is not None
    assert "a" in problem.message


def test_brackets_inside_strings_only_make_the_check_walk_the_record():
    raw = orjson.dumps({"text": "{[{[{[{[{[{[{["})
    assert check(raw) is None


def test_a_string_over_the_limit_is_refused_with_its_path():
    problem = check(orjson.dumps({"outer": {"notes": "x" * 101}}))
    assert problem is not None
    assert problem.reason is DeadLetterReason.LIMIT_EXCEEDED
    assert problem.message == "outer.notes is longer than 100 characters"


def test_a_key_over_the_string_limit_is_refused():
    problem = check(orjson.dumps({"k" * 101: 1}))
    assert problem is not None
    assert "a key of the record is longer than 100 characters" in problem.message


def test_a_list_or_an_object_with_too_many_items_is_refused():
    many = check(orjson.dumps({"items": list(range(21))}))
    assert many is not None
    assert many.message == "items has 21 elements, over 20"
    wide = check(orjson.dumps({str(i): i for i in range(21)}))
    assert wide is not None
    assert wide.message == "the record has 21 members, over 20"


def test_at_the_item_limit_a_list_passes():
    assert check(orjson.dumps({"items": list(range(20))})) is None


@pytest.mark.parametrize(
    "number",
    ["9223372036854775808", "-9223372036854775809", "18446744073709551615", "1" + "0" * 30],
)
def test_an_integer_beyond_the_signed_64_bit_range_is_a_decode_error(number):
    problem = check(b'{"n": ' + number.encode() + b"}", RecordLimits())
    assert problem is not None
    assert problem.reason is DeadLetterReason.DECODE_ERROR
    assert "beyond the signed 64-bit range; send it as a string" in problem.message


def test_integers_at_the_64_bit_edges_and_long_digit_strings_pass():
    raw = (
        b'{"max": 9223372036854775807, "min": -9223372036854775808,'
        b' "card": "12345678901234567890123"}'
    )
    assert check(raw, RecordLimits()) is None


def test_a_big_float_written_as_a_float_passes():
    assert check(b'{"x": 1e30, "y": 12345678901234567890.5}', RecordLimits()) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount": 1, "amount": 10000}',
        b'{"amount": 1, "amount" : 10000}',
        b'{"a": {"b": 1, "b": 2}}',
        b'{"a": [{"k": 1}, {"k": 2, "k": 3}]}',
    ],
)
def test_a_key_written_twice_in_one_object_is_a_decode_error(raw):
    problem = check(raw, RecordLimits())
    assert problem is not None
    assert problem.reason is DeadLetterReason.DECODE_ERROR
    assert "appears twice in one object" in problem.message


def test_the_same_key_in_different_objects_and_colons_in_strings_pass():
    raw = b'{"a": {"k": 1}, "b": {"k": 2}, "text": "say \\": here", "k": "x\\":y"}'
    assert check(raw, RecordLimits()) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
)


@settings(max_examples=50, derandomize=True, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_any_record_within_the_limits_passes(record):
    assert check_record(orjson.dumps(record), record, RecordLimits()) is None


def test_computed_timestamps_and_durations_become_the_text_later_stages_read():
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert record_value(moment) == "2024-01-02T03:04:05+00:00"
    assert record_value(timedelta(seconds=90)) == "90s"
    assert record_value(timedelta(milliseconds=1500)) == "1.5s"
    assert record_value({"when": [moment]}) == {"when": ["2024-01-02T03:04:05+00:00"]}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"raw", "type bytes"),
        (math.inf, "not a number JSON can carry"),
        (math.nan, "not a number JSON can carry"),
        ({"x": [-math.inf]}, "not a number JSON can carry"),
        (2**64, "beyond the signed 64-bit range"),
        ({1.5: "x"}, "a key of type float"),
    ],
)
def test_a_computed_value_json_cannot_carry_is_refused(value, says):
    with pytest.raises(NotJson, match=says):
        record_value(value)


def test_plain_json_values_are_kept_as_they_are():
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": False}}
    assert record_value(value) == value
