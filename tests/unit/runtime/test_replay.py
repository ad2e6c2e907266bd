"""Reading a dead letter's headers, choosing letters to replay, and the headers a replayed
record carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.tools.replay import (
    FILTERED,
    FOREIGN_STAGE,
    MALFORMED,
    Letter,
    MalformedLetter,
    ReplayFilter,
    Skipped,
    judge,
    read_letter,
    replayed_headers,
)

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LETTER = Letter("compliance", "circuit_open", 1, AT)
HEADERS = [
    ("dlq.stage", b"compliance"),
    ("dlq.reason", b"circuit_open"),
    ("dlq.attempt", b"2"),
    ("dlq.failed_at", b"2026-11-25T10:00:00.000+00:00"),
    ("dlq.exception.message", b"\xff not read by a replay"),
    ("traceparent", b"00-abc-def-01"),
]


def headers_with(name: str, value: bytes | None) -> list[tuple[str, bytes | None]]:
    """``HEADERS`` with one header replaced (or added)."""
    return [(k, v) for k, v in HEADERS if k != name] + [(name, value)]


def test_a_letter_written_by_a_worker_is_read_with_its_stage_reason_attempt_time_and_trace():
    assert read_letter(HEADERS) == Letter(
        "compliance", "circuit_open", 2, AT, trace=b"00-abc-def-01"
    )


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("dlq.failed_at", b"2026-11-25T10:00:00", "dlq.failed_at is not an ISO time with a UTC"),
        ("dlq.failed_at", b"yesterday", "dlq.failed_at is not an ISO time"),
        ("dlq.stage", b"compl\xffiance", "dlq.stage is not UTF-8 (b'compl\\xffiance')"),
        ("dlq.attempt", b"x", "dlq.attempt is not a whole number ('x')"),
        ("dlq.attempt", "١٢".encode(), "dlq.attempt is not a whole number"),
        ("dlq.attempt", b"9" * 5000, "dlq.attempt is not a whole number ('99999"),
        ("dlq.stage", b"", "no dlq.stage"),
        ("dlq.reason", None, "dlq.reason has no value"),
        ("dlq.stage", b"business_rules", "dlq.stage appears more than once"),
    ],
)
def test_a_malformed_header_makes_the_letter_malformed_and_says_which_and_how(name, value, why):
    headers = headers_with(name, value)
    if why.endswith("more than once"):
        headers = [*HEADERS, (name, value)]

    with pytest.raises(MalformedLetter) as raised:
        read_letter(headers)

    assert str(raised.value).startswith(why)
    assert len(str(raised.value)) < 120, "a bad value is shown cut short"


def test_a_letter_without_a_stage_is_malformed_and_one_without_attempt_or_time_is_not():
    with pytest.raises(MalformedLetter, match=r"^no dlq\.stage$"):
        read_letter([(k, v) for k, v in HEADERS if k != "dlq.stage"])

    bare = read_letter([("dlq.stage", b"compliance"), ("dlq.reason", b"timeout")])

    assert bare == Letter("compliance", "timeout", 1, None)


def test_an_empty_filter_replays_every_dead_letter():
    assert ReplayFilter().accepts(LETTER)


def test_a_filter_keeps_only_the_named_reasons_and_stages():
    assert ReplayFilter(reasons=frozenset({"circuit_open", "timeout"})).accepts(LETTER)
    assert not ReplayFilter(reasons=frozenset({"timeout"})).accepts(LETTER)
    assert ReplayFilter(stages=frozenset({"compliance"})).accepts(LETTER)
    assert not ReplayFilter(stages=frozenset({"data_quality"})).accepts(LETTER)


def test_since_keeps_letters_written_at_or_after_the_moment_and_drops_undated_ones():
    later = datetime(2026, 11, 25, 10, 0, 1, tzinfo=UTC)

    assert ReplayFilter(since=AT).accepts(LETTER)
    assert not ReplayFilter(since=later).accepts(LETTER)
    assert not ReplayFilter(since=AT).accepts(Letter("compliance", "timeout"))


def test_a_replayed_record_carries_the_next_attempt_and_its_trace_and_no_other_dlq_header():
    assert replayed_headers(read_letter(HEADERS)) == [
        ("dlq.attempt", b"3"),
        ("traceparent", b"00-abc-def-01"),
    ]
    assert replayed_headers(Letter("compliance", "timeout")) == [("dlq.attempt", b"2")]


@dataclass
class Message:
    headers: list[tuple[str, bytes | None]] = field(default_factory=lambda: list(HEADERS))


TOPICS = TopicNames(
    stage_inputs={"compliance": "p.stage.compliance"},
    decisions="p.decisions",
    rejected="p.rejected",
    review="p.review",
    dlq="p.dlq",
)


def test_judge_sends_a_chosen_letter_to_its_stage_topic_and_skips_the_others_with_a_reason():
    assert judge(Message(), ReplayFilter(), TOPICS) == ("p.stage.compliance", read_letter(HEADERS))
    assert judge(Message(), ReplayFilter(reasons=frozenset({"timeout"})), TOPICS) == Skipped(
        FILTERED
    )
    other = Message(headers_with("dlq.stage", b"elsewhere"))
    assert judge(other, ReplayFilter(), TOPICS) == Skipped(FOREIGN_STAGE)
    broken = Message(headers_with("dlq.attempt", b"-1"))
    assert judge(broken, ReplayFilter(), TOPICS) == Skipped(
        MALFORMED, "dlq.attempt is not a whole number ('-1')"
    )
