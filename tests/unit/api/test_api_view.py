"""The API's view of decisions: bounded in count and age, the latest answer per record, and
decide calls matched to the decision of their own submission."""

from __future__ import annotations

import asyncio

from stream_engine.api.view import Answer, DecisionView


def answer(
    record_id: str, at_ms: int, trace: str | None = None, status: str = "approved"
) -> Answer:
    return Answer(record_id, status, b"{}", at_ms, trace)


def test_the_view_keeps_at_most_max_decisions_dropping_the_oldest() -> None:
    view = DecisionView(max_decisions=2, retention_s=3600, max_pending=10)
    for i, record in enumerate(["a", "b", "c"]):
        view.offer(answer(record, 1000 + i), now_ms=2000)
    assert len(view) == 2
    assert view.get("a", now_ms=2000) is None
    assert view.get("c", now_ms=2000) is not None


def test_an_answer_older_than_the_retention_is_not_served() -> None:
    view = DecisionView(max_decisions=10, retention_s=1, max_pending=10)
    view.offer(answer("a", 1000), now_ms=1000)
    assert view.get("a", now_ms=1900) is not None
    assert view.get("a", now_ms=2001) is None


def test_a_later_answer_replaces_an_earlier_one_but_not_the_reverse() -> None:
    view = DecisionView(max_decisions=10, retention_s=3600, max_pending=10)
    view.offer(answer("a", 2000, status="rejected"), now_ms=2000)
    view.offer(answer("a", 1000, status="approved"), now_ms=2000)
    found = view.get("a", now_ms=2000)
    assert found is not None
    assert found.status == "rejected"


def test_a_waiter_gets_the_answer_with_its_own_trace_only() -> None:
    async def go() -> None:
        view = DecisionView(max_decisions=10, retention_s=3600, max_pending=10)
        mine = view.expect("a", "trace-mine")
        view.offer(answer("a", 1, "trace-older"))
        assert not mine.done()
        view.offer(answer("a", 2, "trace-mine"))
        assert mine.done()
        assert mine.result().trace == "trace-mine"
        view.forget("a", mine)
        assert view.pending == 0

    asyncio.run(go())


def test_an_answer_without_a_trace_answers_no_waiter_but_is_kept_for_get() -> None:
    async def go() -> None:
        view = DecisionView(max_decisions=10, retention_s=3600, max_pending=10)
        waiting = view.expect("a", "t1")
        view.offer(answer("a", 1, None, "dead_letter"), now_ms=1)
        assert not waiting.done()
        found = view.get("a", now_ms=1)
        assert found is not None
        assert found.status == "dead_letter"

    asyncio.run(go())


def test_forgetting_a_wait_cancels_it_and_frees_its_room() -> None:
    async def go() -> None:
        view = DecisionView(max_decisions=10, retention_s=3600, max_pending=2)
        first = view.expect("a", "t1")
        view.expect("b", "t2")
        assert not view.has_room(1)
        view.forget("a", first)
        assert first.cancelled()
        assert view.has_room(1)

    asyncio.run(go())
