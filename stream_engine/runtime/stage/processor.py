"""One stage's work on a batch of consumed messages, independent of the Kafka client: verify,
decode, run the stage through the core, and say what to produce where.

Nothing a message contains can make it raise, nor change what happens to the other messages
of its batch: each record is decoded, run and encoded on its own, and whatever fails for it -
bad input, a forged envelope, results JSON cannot carry - makes it a dead letter with its
reason. An error of the engine itself on a record is tried again with the record alone, from
its original bytes, and after ``runtime.poison_attempts`` tries in all the record is
dead-lettered ``internal_error`` (a poison record); the rest of the batch is decided once."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from stream_engine.core.decision import Decision, StageOutcome
from stream_engine.core.executor import Executor
from stream_engine.core.outcome import STATUS_OUTPUT, DeadLetterReason, Route
from stream_engine.core.plan import StagePlan
from stream_engine.core.rocks import configured_stores
from stream_engine.core.state import DeadLetter, RecordState
from stream_engine.core.stores import StageState, StoreFactory, key_of
from stream_engine.core.watchdog import WATCHDOG, Overrun
from stream_engine.runtime.cluster.topic_names import TopicNames
from stream_engine.runtime.stage.codec import Codec, Headers, Incoming, Rejected
from stream_engine.runtime.stage.integrity import EnvelopeAuth, envelope_auth

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger(__name__)

#: ``auth`` left out: the pipeline's own keys (``runtime.envelope_keys``); ``stores`` left
#: out: the store ``state.store`` names.
FROM_CONFIG: Any = object()


@dataclass(slots=True)
class Outgoing:
    """A message to produce."""

    topic: str
    key: bytes | None
    #: None: a tombstone (a store entry removed, in its compacted changelog).
    value: bytes | None
    headers: Headers
    #: The consumed message it answers (``eval`` maps answers back to its input lines).
    source: Incoming | None = None
    #: The stage outcome and record state behind it, when the record was decided.
    outcome: StageOutcome | None = None
    state: RecordState | None = None
    #: The partition to write to (a changelog: the input partition); None: by the key.
    partition: int | None = None


@dataclass(slots=True)
class BatchReport:
    """What a batch came to: messages to produce, and counts for logs and metrics."""

    outgoing: list[Outgoing]
    outcomes: list[StageOutcome]
    decisions: list[Decision]
    dead_letters: list[DeadLetter]
    #: Records dead-lettered after an internal error on every attempt.
    poison: int = 0
    #: The batch's changes to the stage's stores, for their changelog topics (delivered and
    #: committed with ``outgoing``).
    changes: list[Outgoing] = field(default_factory=list)


class StageProcessor:
    """Runs one stage of a compiled pipeline on batches of consumed messages."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        stage: StagePlan,
        topics: TopicNames,
        worker: str,
        auth: EnvelopeAuth | None = FROM_CONFIG,
        clock: Callable[[], float] = time.time,
        stores: StoreFactory = FROM_CONFIG,
    ) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.topics = topics
        self.executor = Executor(pipeline.plan, worker=worker, clock=clock)
        #: Where each record goes after this stage (the executor's own router).
        self.router = self.executor.router
        config = pipeline.config
        self.codec = Codec.for_pipeline(pipeline)
        #: Signs what this stage writes and verifies the envelopes it reads (None: off).
        self.auth: EnvelopeAuth | None = envelope_auth(pipeline) if auth is FROM_CONFIG else auth
        self.attempts = config.runtime.poison_attempts
        #: Other configurations' hashes already warned about.
        self._mixed: set[str] = set()
        plan = pipeline.plan
        self.first = plan.active_stages[0].name == stage.name
        following = plan.next_stage(stage.name)
        self.next_topic = None if following is None else topics.stage_inputs[following.name]
        #: The store key the next stage partitions its records by (None: the record id).
        self.next_key = following.stores[0] if following is not None and following.stores else None
        #: Whether this stage's Kafka keys are a state key, not record ids.
        self.keyed_by_state = bool(stage.stores) and not self.first
        #: The stage's stores per input partition (empty for a stage that keeps no state).
        if stores is FROM_CONFIG:
            stores = configured_stores(config.state.store, config.state.path, config.pipeline)
        self.state = StageState(stage.stores, stores)

    async def process(self, batch: list[Incoming]) -> BatchReport:
        """Decide every message of the batch; the caller produces ``outgoing``, waits for the
        broker's acknowledgements, and only then lets the offsets be committed."""
        report = BatchReport([], [], [], [])
        pending: list[tuple[Incoming, RecordState]] = []
        for message in batch:
            decoded = self.decode(message)
            if isinstance(decoded, Rejected):
                self._dead_letter(report, decoded.letter, message, decoded.record_id, 1)
            else:
                pending.append((message, decoded))
                self._attach(message, decoded)
        outcomes = await self.executor.run_stage_batch(self.stage, [s for _, s in pending])
        for (message, state), outcome in zip(pending, outcomes, strict=True):
            error = (
                outcome.error
                if outcome.error is not None
                else self._finish(report, message, state, outcome)
            )
            if error is not None:
                await self._alone(report, message, error)
        if self.state:
            report.changes = self._changes()
        return report

    def _attach(self, message: Incoming, state: RecordState) -> None:
        """Give a record the stores of its partition, with what identifies its delivery:
        where it entered the pipeline, which a redelivery (a crash, a rebalance) shares but
        a second publish of the same record does not; and its time there."""
        if not self.state:
            return
        source = state.extras.get("source") or {}
        if "offset" in source:
            identity = f"{source.get('topic')}/{source.get('partition')}/{source['offset']}"
        else:
            identity = state.record_id
        stamp = source.get("timestamp") or message.timestamp_ms
        state.stores = self.state.view(message.partition, identity, int(stamp))

    def _changes(self) -> list[Outgoing]:
        """The stores' changes as changelog messages, each to its input partition."""
        out = []
        for name, partition, key, raw in self.state.drain():
            topic = self.topics.changelog(self.stage.name, name)
            headers: Headers = []
            if self.auth is not None:
                headers = self.auth.seal(topic, raw or b"", headers)
            out.append(Outgoing(topic, key.encode(), raw, headers, partition=partition))
        return out

    def decode(self, message: Incoming) -> RecordState | Rejected:
        """The record in a message - verified first when it comes from an earlier stage - or
        why it cannot be one. The Kafka key of a later stage that keeps state is its state key
        (a card id), so a message refused there names no record id rather than a wrong one."""
        decoded = self._decode(message)
        if isinstance(decoded, Rejected) and self.keyed_by_state and decoded.record_id:
            return Rejected(decoded.letter, None)
        return decoded

    def _decode(self, message: Incoming) -> RecordState | Rejected:
        """``decode`` before the record id check. Bounded like a rule: past the sync limit
        it is refused."""
        if not self.first and self.auth is not None:
            problem = self.auth.verify(message.topic, message.value or b"", message.headers)
            if problem is not None:
                return self._refused(DeadLetterReason.INTEGRITY, problem, message)
        limit = self.pipeline.plan.sync_limit_s
        WATCHDOG.arm(limit)
        try:
            try:
                return self.codec.decode(message, self.stage.name, self.first)
            finally:
                WATCHDOG.disarm()
        except Overrun:
            WATCHDOG.settle()
            text = f"checking the record took longer than {limit:g}s (execution.sync_limit_s)"
            return self._refused(DeadLetterReason.LIMIT_EXCEEDED, text, message)
        except Exception as exc:  # noqa: BLE001 - a codec bug on one message is that message's
            text = f"{type(exc).__name__}: {exc}"[:500]
            return self._refused(DeadLetterReason.INTERNAL_ERROR, text, message, type(exc).__name__)

    def _refused(
        self, reason: DeadLetterReason, text: str, message: Incoming, error_class: str = ""
    ) -> Rejected:
        record_id = message.key.decode("utf-8", "replace") if message.key else None
        return Rejected(
            DeadLetter(reason, self.stage.name, text, error_class=error_class or reason.value),
            record_id,
        )

    def _finish(
        self, report: BatchReport, message: Incoming, state: RecordState, outcome: StageOutcome
    ) -> Exception | None:
        """Route one decided record into ``report``, all its messages or none: results JSON
        cannot carry make it an ``encode_error`` dead letter; an engine error is returned."""
        try:
            out, decision = self._route(message, state, outcome)
        except orjson.JSONEncodeError as exc:
            letter = DeadLetter(
                DeadLetterReason.ENCODE_ERROR,
                self.stage.name,
                self.executor.scrub(f"its results cannot be written as JSON: {exc}", state)[:500],
                error_class=type(exc).__name__,
            )
            outcome = StageOutcome(
                self.stage.name,
                Route.DEAD_LETTER,
                [letter.message],
                outcome.results,
                letter,
                outcome.audit,
            )
            report.outcomes.append(outcome)
            self._dead_letter(report, letter, message, state.record_id, _attempt(state), state)
            report.outgoing[-1].outcome, report.outgoing[-1].state = outcome, state
            return None
        except Exception as exc:  # noqa: BLE001 - an engine bug on one record: tried alone
            return exc
        report.outcomes.append(outcome)
        if outcome.route is Route.DEAD_LETTER:
            letter = outcome.dead_letter or DeadLetter(
                DeadLetterReason.INTERNAL_ERROR, self.stage.name, "dead-lettered without a reason"
            )
            self._dead_letter(report, letter, message, state.record_id, _attempt(state), state)
            report.outgoing[-1].outcome, report.outgoing[-1].state = outcome, state
        elif decision is not None:
            report.decisions.append(decision)
            if decision.foreign_configs:
                self._warn_mixed(decision)
        report.outgoing += out
        return None

    def _route(
        self, message: Incoming, state: RecordState, outcome: StageOutcome
    ) -> tuple[list[Outgoing], Decision | None]:
        """The messages a decided record becomes (none for a dead letter: the caller writes
        it), and its decision if this stage made one."""
        if outcome.route is Route.DEAD_LETTER:
            return [], None
        key = state.record_id.encode()
        decision = self.router.decide(state, outcome)
        if decision is None:
            assert self.next_topic is not None
            if self.next_key is not None:
                key = (key_of(state.data, self.next_key) or state.record_id).encode()
            out = self._sealed(self.next_topic, key, self.codec.envelope(state), [])
        else:
            topic = self.topics.for_output(STATUS_OUTPUT[decision.status])
            out = self._sealed(topic, key, self.codec.decision(decision), [])
        out.source, out.outcome, out.state = message, outcome, state
        return [out], decision

    def _warn_mixed(self, decision: Decision) -> None:
        """Say once per configuration that earlier stages ran another one (a rollout, or a
        stage left behind); ``config_mixed_decisions_total`` counts every such decision."""
        new = decision.foreign_configs - self._mixed
        if not new:
            return
        self._mixed |= new
        log.warning(
            "stage %s: record %s was decided under configuration %s (version %s), but earlier "
            "stages ran %s; its decision says config_mixed: true",
            self.stage.name,
            decision.record_id,
            decision.config_hash,
            decision.config_version,
            ", ".join(sorted(new)),
        )

    async def _alone(self, report: BatchReport, message: Incoming, error: Exception) -> None:
        """A record the engine failed on, tried again by itself from its original bytes (no
        state of an earlier try carries over); dead-lettered when every try fails."""
        for _ in range(1, self.attempts):
            decoded = self.decode(message)
            if isinstance(decoded, Rejected):
                self._dead_letter(report, decoded.letter, message, decoded.record_id, 1)
                return
            self._attach(message, decoded)
            outcome = await self.executor.run_contained(self.stage, decoded)
            retry = (
                outcome.error
                if outcome.error is not None
                else self._finish(report, message, decoded, outcome)
            )
            if retry is None:
                return
            error = retry
        self._poison(report, message, error)

    def _poison(self, report: BatchReport, message: Incoming, error: Exception) -> None:
        decoded = self.decode(message)
        states = [decoded] if isinstance(decoded, RecordState) else []
        record_id = decoded.record_id if isinstance(decoded, RecordState) else None
        trace = "".join(traceback.format_exception(error)).rstrip()
        log.error(
            "stage %s: internal error on record %s at %s[%d]@%d on each of %d attempts; "
            "dead-lettered\n%s",
            self.stage.name,
            record_id,
            message.topic,
            message.partition,
            message.offset,
            self.attempts,
            self.executor.scrub(trace, *states),
        )
        text = self.executor.scrub(f"{type(error).__name__}: {error}", *states)[:500]
        letter = DeadLetter(
            DeadLetterReason.INTERNAL_ERROR,
            self.stage.name,
            f"internal error on each of {self.attempts} attempts: {text}",
            error_class=type(error).__name__,
            attempts=self.attempts,
        )
        report.poison += 1
        report.outcomes.append(
            StageOutcome(self.stage.name, Route.DEAD_LETTER, [letter.message], [], letter)
        )
        self._dead_letter(report, letter, message, record_id, 1)

    def _sealed(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Outgoing:
        """A message with this worker's authentication tag (dead letters' headers covered)."""
        if self.auth is not None:
            headers = self.auth.seal(topic, value, headers, bind=topic == self.topics.dlq)
        return Outgoing(topic, key, value, headers)

    def seal(self, out: Outgoing) -> Outgoing:
        """``out`` tagged anew (a stand-in made after the broker refused the original)."""
        return self._sealed(out.topic, out.key, out.value or b"", out.headers)

    def _dead_letter(
        self,
        report: BatchReport,
        letter: DeadLetter,
        message: Incoming,
        record_id: str | None,
        attempt: int,
        state: RecordState | None = None,
    ) -> None:
        report.dead_letters.append(letter)
        trace = None if state is None else state.extras.get("trace")
        headers = self.codec.dead_letter_headers(letter, message, record_id, attempt, trace)
        key = record_id.encode() if record_id else message.key
        out = self._sealed(self.topics.dlq, key, message.value or b"", headers)
        out.source = message
        report.outgoing.append(out)


def _attempt(state: RecordState) -> int:
    return int(state.extras.get("attempt", 1))
