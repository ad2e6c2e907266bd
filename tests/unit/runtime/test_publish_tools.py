"""The client-side tools without a broker: reading records to publish from binary streams,
the Kafka key of a record, and consumed messages shown as JSON (dead letters with headers)."""

from __future__ import annotations

import io

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from stream_engine.errors import InputFileError
from stream_engine.runtime.tools.topic_io import as_json, read_records, record_key


def stream(data: bytes, name: str | None = None) -> io.BytesIO:
    buffer = io.BytesIO(data)
    if name is not None:
        buffer.name = name
    return buffer


def consumed(
    value: bytes | None, key: bytes | None = None, headers=(), topic: str = "demo.dlq"
) -> ConsumerRecord:
    return ConsumerRecord(topic, 1, 42, 1_700_000_000_000, 0, key, value, None, 0, 0, list(headers))


# -- read_records ---------------------------------------------------------------------------


def test_json_lines_are_kept_byte_for_byte_even_when_not_json_or_not_utf8():
    lines = [
        b'{"id": "A-1",  "name": "Zo\xc3\xab"}',
        b"\xff\xfe not utf-8",
        b"[1, 2",
        b'  {"b":2} ',
    ]
    assert list(read_records(stream(b"\n".join(lines) + b"\n"))) == lines


def test_blank_and_whitespace_only_lines_are_skipped():
    data = b'{"a": 1}\n\n   \n\t\r\n{"a": 2}\n'
    assert list(read_records(stream(data))) == [b'{"a": 1}', b'{"a": 2}']


def test_line_endings_are_removed_and_a_last_line_without_one_is_kept():
    data = b'{"a": 1}\r\n{"a": 2}'
    assert list(read_records(stream(data), "jsonl")) == [b'{"a": 1}', b'{"a": 2}']


def test_csv_rows_become_json_objects_keyed_by_the_header_row():
    data = '\ufeffid,name,city\nA-1,José,Köln\nA-2,"Doe, Jane",\n'.encode()
    records = [orjson.loads(r) for r in read_records(stream(data, "people.csv"))]
    assert records == [
        {"id": "A-1", "name": "José", "city": "Köln"},
        {"id": "A-2", "name": "Doe, Jane", "city": ""},
    ]


def test_trailing_fields_missing_from_a_short_csv_row_are_absent_from_its_object_not_null():
    data = b"id,name,city\nA-3,Short\nA-4\n"
    assert [orjson.loads(r) for r in read_records(stream(data), "csv")] == [
        {"id": "A-3", "name": "Short"},
        {"id": "A-4"},
    ]


def test_a_csv_row_with_more_values_than_the_header_is_an_input_file_error_naming_the_row():
    data = b'id,name\nA-1,Ann\nA-2,"Bo\nb",extra,more\nA-3,Cy\n'
    source = stream(data, "people.csv")
    read = []
    with pytest.raises(InputFileError) as raised:
        read.extend(read_records(source))
    assert str(raised.value) == (
        "people.csv: CSV row 2 (ending on line 4) has 4 values but the header has 2"
    )
    assert [orjson.loads(r) for r in read] == [{"id": "A-1", "name": "Ann"}]


def test_a_csv_header_naming_a_column_twice_is_an_input_file_error_before_any_row():
    data = b"id,name,city,name\nA-1,Ann,Rome,Anna\n"
    with pytest.raises(InputFileError) as raised:
        list(read_records(stream(data, "people.csv")))
    assert str(raised.value) == (
        "people.csv: the CSV header names column 'name' twice (columns 2 and 4)"
    )


def test_the_format_is_csv_by_file_name_and_json_lines_otherwise():
    data = b"id,name\nA-1,Ann\n"
    assert list(read_records(stream(data, "records.csv"))) == [b'{"id":"A-1","name":"Ann"}']
    assert list(read_records(stream(data, "records.txt"))) == [b"id,name", b"A-1,Ann"]
    assert list(read_records(stream(data))) == [b"id,name", b"A-1,Ann"]


def test_a_csv_that_is_not_utf8_is_an_input_file_error_on_one_line():
    data = "id,name\nA-1,José\n".encode("latin-1")
    with pytest.raises(InputFileError) as raised:
        list(read_records(stream(data, "people.csv")))
    assert str(raised.value) == (
        "people.csv: after CSV row 0: 'utf-8' codec can't decode byte 0xe9 in position 7: "
        "invalid continuation byte"
    )


def test_a_non_utf8_csv_row_is_reported_after_the_last_good_row_and_its_rows_are_read():
    rows = [f"A-{n},Ann {n}".encode() for n in range(1, 2001)]
    rows[1500] = "A-1501,José".encode("latin-1")
    source = stream(b"id,name\n" + b"\n".join(rows) + b"\n", "people.csv")
    read = []
    with pytest.raises(InputFileError, match=r"^people\.csv: after CSV row 1500: 'utf-8' codec"):
        read.extend(read_records(source))
    assert len(read) == 1500
    assert orjson.loads(read[-1]) == {"id": "A-1500", "name": "Ann 1500"}


def test_reading_a_csv_leaves_the_callers_stream_open():
    source = stream(b"id\nA-1\n", "ids.csv")
    assert list(read_records(source)) == [b'{"id":"A-1"}']
    assert not source.closed


def test_an_unnamed_non_utf8_csv_is_reported_as_stdin():
    with pytest.raises(InputFileError, match=r"^<stdin>: after CSV row "):
        list(read_records(stream(b"id\n\xff\n"), "csv"))


# -- record_key -----------------------------------------------------------------------------


def test_the_key_is_the_id_field_of_a_json_object():
    assert record_key(b'{"application_id": "APP-1", "x": 1}', "application_id") == b"APP-1"
    assert record_key(b'{"application_id": 42}', "application_id") == b"42"


@pytest.mark.parametrize(
    "value",
    [b'{"other": 1}', b'{"application_id": ""}', b'{"application_id": null}', b"[1]", b"\xff{"],
    ids=["missing", "empty", "null", "not-an-object", "not-json"],
)
def test_a_record_without_a_usable_id_field_has_no_key(value):
    assert record_key(value, "application_id") is None


def test_without_a_key_field_no_record_has_a_key():
    assert record_key(b'{"application_id": "APP-1"}', None) is None


# -- as_json --------------------------------------------------------------------------------

DLQ_HEADERS = [
    ("dlq.reason", b"decode_error"),
    ("dlq.stage", b"preprocessing"),
    ("dlq.exception.message", b"not a JSON object but list"),
    ("traceparent", b"00-abc-def-01"),
]


def test_a_dead_letter_is_shown_with_its_headers_and_its_original_json_value():
    shown = as_json(consumed(b"[1, 2]", key=b"APP-2", headers=DLQ_HEADERS))
    assert shown == {
        "key": "APP-2",
        "headers": {
            "dlq.reason": "decode_error",
            "dlq.stage": "preprocessing",
            "dlq.exception.message": "not a JSON object but list",
            "traceparent": "00-abc-def-01",
        },
        "value": [1, 2],
        "topic": "demo.dlq",
        "partition": 1,
        "offset": 42,
    }


def test_a_dead_letter_that_is_not_json_shows_its_value_as_text():
    shown = as_json(consumed(b"\xff\xfe oops", headers=DLQ_HEADERS))
    assert shown["value"] == "\ufffd\ufffd oops"
    assert shown["key"] is None


def test_an_empty_dead_letter_shows_no_value():
    assert as_json(consumed(b"", headers=DLQ_HEADERS))["value"] is None
    assert as_json(consumed(None, headers=DLQ_HEADERS))["value"] is None


def test_a_decision_is_shown_as_it_is():
    decision = {"record_id": "APP-1", "status": "approved", "reasons": []}
    shown = as_json(consumed(orjson.dumps(decision), b"APP-1", topic="demo.decisions"))
    assert shown == decision


def test_a_message_that_is_not_json_on_an_output_topic_is_shown_as_text_with_its_position():
    shown = as_json(consumed(b"plain text", topic="demo.decisions"))
    assert shown == {
        "key": None,
        "value": "plain text",
        "topic": "demo.decisions",
        "partition": 1,
        "offset": 42,
    }


@pytest.mark.parametrize("value", [[1, 2], 42, "text", None, True])
def test_json_that_is_not_an_object_on_an_output_topic_is_framed_as_one(value):
    shown = as_json(consumed(orjson.dumps(value), b"K-1", topic="demo.review"))
    assert shown == {
        "key": "K-1",
        "value": value,
        "topic": "demo.review",
        "partition": 1,
        "offset": 42,
    }


def test_a_tombstone_on_an_output_topic_is_shown_with_a_null_value_and_its_position():
    shown = as_json(consumed(None, key=b"APP-1", topic="demo.decisions"))
    assert shown == {
        "key": "APP-1",
        "value": None,
        "topic": "demo.decisions",
        "partition": 1,
        "offset": 42,
    }
