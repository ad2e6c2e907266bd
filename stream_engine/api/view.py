"""The API's memory of decisions: the latest answer per record id, bounded in count and age
(``api.view``), and the decide calls of this process waiting for theirs.

A waiter is matched by record id and by the ``traceparent`` the API gave the record it
published, which the workers carry into its decision or dead letter - so a decide call gets the
answer to its own submission, never an older one of a record with the same id (an answer
without that trace leaves the call to time out into a 202, and ``GET`` still finds it)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Answer:
    """A record's decision as the API returns it: the decision's JSON (as the output topic
    carries it, or the dead-letter form), its status, when it was written, and its trace."""

    record_id: str
    status: str
    body: bytes
    at_ms: int
    trace: str | None = None


@dataclass(slots=True)
class _Waiter:
    trace: str
    future: asyncio.Future[Answer] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class DecisionView:
    """Latest answers by record id (``max_decisions``, ``retention_s``) and pending waits."""

    def __init__(self, max_decisions: int, retention_s: float, max_pending: int) -> None:
        self.max_decisions = max_decisions
        self.retention_ms = int(retention_s * 1000)
        self.max_pending = max_pending
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._waiting: dict[str, list[_Waiter]] = {}
        self.pending = 0

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, record_id: str, now_ms: int | None = None) -> Answer | None:
        """The latest answer known for a record, unless it is older than the retention."""
        answer = self._answers.get(record_id)
        if answer is None:
            return None
        if _now_ms(now_ms) - answer.at_ms > self.retention_ms:
            del self._answers[record_id]
            return None
        return answer

    def offer(self, answer: Answer, now_ms: int | None = None) -> None:
        """Keep an answer read from an output topic (unless an answer written later is already
        kept) and hand it to the waiters it belongs to."""
        known = self._answers.get(answer.record_id)
        if known is None or known.at_ms <= answer.at_ms:
            self._answers[answer.record_id] = answer
            self._answers.move_to_end(answer.record_id)
        self._evict(_now_ms(now_ms))
        waiters = self._waiting.get(answer.record_id)
        if waiters:
            for waiter in list(waiters):
                if answer.trace == waiter.trace and not waiter.future.done():
                    waiter.future.set_result(answer)

    def _evict(self, now_ms: int) -> None:
        answers = self._answers
        while len(answers) > self.max_decisions:
            answers.popitem(last=False)
        while answers:
            oldest = next(iter(answers.values()))
            if now_ms - oldest.at_ms <= self.retention_ms:
                break
            answers.popitem(last=False)

    def has_room(self, count: int) -> bool:
        """Whether ``count`` more decide calls may wait (``api.max_pending``)."""
        return self.pending + count <= self.max_pending

    def expect(self, record_id: str, trace: str) -> asyncio.Future[Answer]:
        """A future resolved with the answer to the submission ``trace`` of ``record_id``;
        registered before the record is published, so the answer cannot be missed. The
        caller calls ``forget`` when it stops waiting."""
        waiter = _Waiter(trace)
        self._waiting.setdefault(record_id, []).append(waiter)
        self.pending += 1
        return waiter.future

    def forget(self, record_id: str, future: asyncio.Future[Answer]) -> None:
        """Stop waiting for an answer (answered, timed out, or the caller went away)."""
        waiters = self._waiting.get(record_id)
        if not waiters:
            return
        for waiter in waiters:
            if waiter.future is future:
                waiters.remove(waiter)
                self.pending -= 1
                if not future.done():
                    future.cancel()
                break
        if not waiters:
            del self._waiting[record_id]


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms
