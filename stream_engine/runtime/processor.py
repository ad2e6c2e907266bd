"""One stage's work on a batch of consumed messages, independent of the Kafka client: decode,
run the stage through the core, and say what to produce where. Nothing a message contains can
make it raise: bad input and internal errors become dead letters carrying the original bytes."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from stream_engine.config.compiler import CompiledPipeline
from stream_engine.core.decision import Decision, StageOutcome
from stream_engine.core.executor import Executor
from stream_engine.core.outcome import DeadLetterReason, Route
from stream_engine.core.plan import StagePlan
from stream_engine.core.state import DeadLetter, RecordState
from stream_engine.runtime.codec import Codec, Headers, Incoming, Rejected
from stream_engine.runtime.names import TopicNames

log = logging.getLogger(__name__)

STATUS_TOPIC = {
    "approved": "decisions",
    "completed": "decisions",
    "rejected": "rejected",
    "review": "review",
}


@dataclass(slots=True)
class Outgoing:
    """A message to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


@dataclass(slots=True)
class BatchReport:
    """What a batch came to: messages to produce, and counts for logs and metrics."""

    outgoing: list[Outgoing]
    outcomes: list[StageOutcome]
    decisions: list[Decision]
    dead_letters: list[DeadLetter]


class StageProcessor:
    """Runs one stage of a compiled pipeline on batches of consumed messages."""

    def __init__(
        self, pipeline: CompiledPipeline, stage: StagePlan, topics: TopicNames, worker: str
    ) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.topics = topics
        self.executor = Executor(pipeline.plan, worker=worker)
        config = pipeline.config
        self.codec = Codec(pipeline.plan, config.runtime.max_message_bytes, config.input.schema_)
        active = [s.name for s in pipeline.plan.active_stages]
        self.first = active[0] == stage.name
        position = active.index(stage.name)
        self.next_topic = (
            topics.stage_inputs[active[position + 1]] if position + 1 < len(active) else None
        )

    async def process(self, batch: list[Incoming]) -> BatchReport:
        """Decide every message of the batch; the caller produces ``outgoing``, waits for the
        broker's acknowledgements, and only then lets the offsets be committed."""
        report = BatchReport([], [], [], [])
        states: list[RecordState] = []
        sources: list[Incoming] = []
        for message in batch:
            decoded = self.codec.decode(message, self.stage.name, self.first)
            if isinstance(decoded, Rejected):
                self._dead_letter(report, decoded.letter, message, decoded.record_id, 1)
            else:
                states.append(decoded)
                sources.append(message)
        for message, state, outcome in await self._run(states, sources):
            report.outcomes.append(outcome)
            self._route(report, message, state, outcome)
        return report

    async def _run(
        self, states: list[RecordState], sources: list[Incoming]
    ) -> list[tuple[Incoming, RecordState, StageOutcome]]:
        try:
            outcomes = await self.executor.run_stage_batch(self.stage, states)
            return list(zip(sources, states, outcomes, strict=True))
        except Exception as exc:  # noqa: BLE001 - logged, then the records are retried one by one
            self._log_batch_failure(exc, states)
        out = []
        for message, state in zip(sources, states, strict=True):
            try:
                outcome = await self.executor.run_stage(self.stage, state)
            except Exception as exc:  # noqa: BLE001 - one record's internal error, dead-lettered
                outcome = StageOutcome(
                    self.stage.name,
                    Route.DEAD_LETTER,
                    [f"internal_error: {type(exc).__name__}"],
                    dead_letter=DeadLetter(
                        DeadLetterReason.INTERNAL_ERROR,
                        self.stage.name,
                        self._scrub(str(exc), state)[:500],
                        error_class=type(exc).__name__,
                    ),
                )
            out.append((message, state, outcome))
        return out

    def _scrub(self, text: str, *states: RecordState) -> str:
        """``text`` without the PII values of ``states`` (unchanged when none is configured)."""
        masker = self.executor.masker
        if masker is None:
            return text
        needles = {needle for state in states for needle in masker.needles(state.data)}
        return masker.scrub(text, sorted(needles, key=len, reverse=True))

    def _log_batch_failure(self, exc: Exception, states: list[RecordState]) -> None:
        """The traceback of a failed batch, logged without the records' PII values (an
        exception's message may quote them)."""
        if self.executor.masker is None:
            log.error(
                "stage %s: batch failed, retrying record by record",
                self.stage.name,
                exc_info=exc,
            )
            return
        text = self._scrub("".join(traceback.format_exception(exc)).rstrip(), *states)
        log.error("stage %s: batch failed, retrying record by record\n%s", self.stage.name, text)

    def _route(
        self, report: BatchReport, message: Incoming, state: RecordState, outcome: StageOutcome
    ) -> None:
        key = state.record_id.encode()
        if outcome.route is Route.DEAD_LETTER:
            letter = outcome.dead_letter or DeadLetter(
                DeadLetterReason.INTERNAL_ERROR, self.stage.name, "dead-lettered without a reason"
            )
            self._dead_letter(
                report, letter, message, state.record_id, int(state.extras.get("attempt", 1))
            )
            return
        decision = self.executor.decide(state, outcome)
        if decision is None:
            assert self.next_topic is not None
            report.outgoing.append(Outgoing(self.next_topic, key, self.codec.envelope(state), []))
            return
        report.decisions.append(decision)
        topic = self.topics.for_output(STATUS_TOPIC[decision.status.value])
        report.outgoing.append(Outgoing(topic, key, self.codec.decision(decision), []))

    def _dead_letter(
        self,
        report: BatchReport,
        letter: DeadLetter,
        message: Incoming,
        record_id: str | None,
        attempt: int,
    ) -> None:
        report.dead_letters.append(letter)
        headers = self.codec.dead_letter_headers(letter, message, record_id, attempt)
        key = record_id.encode() if record_id else message.key
        report.outgoing.append(Outgoing(self.topics.dlq, key, message.value or b"", headers))
