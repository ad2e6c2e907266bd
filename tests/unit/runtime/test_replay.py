"""Choosing dead letters to replay, and the headers a replayed record carries."""

from __future__ import annotations

from datetime import UTC, datetime

from stream_engine.runtime.replay import ReplayFilter, replayed_headers

LETTER = {"reason": "circuit_open", "stage": "compliance", "failed_at": "2026-11-25T10:00:00+00:00"}


def test_an_empty_filter_replays_every_dead_letter():
    assert ReplayFilter().accepts(LETTER)


def test_a_filter_keeps_only_the_named_reasons_and_stages():
    assert ReplayFilter(reasons=frozenset({"circuit_open", "timeout"})).accepts(LETTER)
    assert not ReplayFilter(reasons=frozenset({"timeout"})).accepts(LETTER)
    assert ReplayFilter(stages=frozenset({"compliance"})).accepts(LETTER)
    assert not ReplayFilter(stages=frozenset({"data_quality"})).accepts(LETTER)


def test_since_keeps_letters_written_at_or_after_the_moment_and_drops_undated_ones():
    at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    later = datetime(2026, 11, 25, 10, 0, 1, tzinfo=UTC)

    assert ReplayFilter(since=at).accepts(LETTER)
    assert not ReplayFilter(since=later).accepts(LETTER)
    assert not ReplayFilter(since=at).accepts({"reason": "timeout", "stage": "compliance"})


def test_a_replayed_record_carries_the_next_attempt_and_its_trace_and_no_other_dlq_header():
    headers = [
        ("dlq.attempt", b"2"),
        ("dlq.reason", b"timeout"),
        ("traceparent", b"00-abc-def-01"),
    ]

    assert replayed_headers(headers) == [
        ("dlq.attempt", b"3"),
        ("traceparent", b"00-abc-def-01"),
    ]
    assert replayed_headers([]) == [("dlq.attempt", b"2")]
