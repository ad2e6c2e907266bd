"""The offline side of the engine: evaluate JSON lines without Kafka, and describe a plan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from stream_engine.core.outcome import DeadLetterReason, Route, Status
from stream_engine.core.plan import PipelinePlan, StagePlan
from stream_engine.core.state import iso_time
from stream_engine.core.stores import memory_stores
from stream_engine.errors import ConfigError
from stream_engine.runtime.cluster.topic_names import TopicNames, default_topic_names, topic_names
from stream_engine.runtime.stage.codec import DLQ_PREFIX, Headers, Incoming, Rejected, record_key
from stream_engine.runtime.stage.integrity import EnvelopeAuth
from stream_engine.runtime.stage.processor import Outgoing, StageProcessor

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

#: One input line: a JSON text (bytes or str), or a record (encoded as a producer would).
Item = bytes | str | Mapping[str, Any]


@dataclass(slots=True)
class Answer:
    """What became of one input record: its line number and the answer ``eval`` prints."""

    line: int
    body: dict[str, Any]


def numbered(items: Iterable[Item]) -> Iterator[tuple[int, bytes]]:
    """Each item as the bytes a producer would send, with its 1-based line number; blank
    lines are skipped (their numbers are not reused)."""
    for number, item in enumerate(items, 1):
        if isinstance(item, Mapping):
            yield number, orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS)
            continue
        raw = item.encode() if isinstance(item, str) else item
        if raw.strip():
            yield number, raw.rstrip(b"\r\n")


class OfflineEvaluator:
    """Runs JSON lines through the pipeline exactly as the workers do, without a broker: each
    line becomes a consumed message of the input topic (offset = line number, key as the
    Client sets it), each stage's ``StageProcessor`` decodes, decides and encodes it, and what
    a stage writes for the next one is read back from those bytes. What ``eval`` prints is
    what the output topics would carry (a dead letter in decision form)."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        batch_size: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.plan = pipeline.plan
        #: The decision time of every stage (CEL's ``now``, audit times); fixed in ``test`` cases.
        self.clock = clock
        self.batch_size = batch_size
        self.topics = topic_names(pipeline.plan, pipeline.config.topics.names)
        #: Signs and verifies the envelopes between the stages, as the workers' keys do.
        self.auth = EnvelopeAuth.session() if pipeline.config.runtime.envelope_auth else None
        #: State in memory whatever ``state.store`` says: an evaluation leaves no files.
        self.processors = {
            stage.name: StageProcessor(
                pipeline, stage, self.topics, "eval", self.auth, clock, stores=memory_stores
            )
            for stage in pipeline.plan.active_stages
        }
        self._stage_topics = frozenset(self.topics.stage_inputs.values())

    async def decisions(self, items: Iterable[Item]) -> AsyncIterator[dict[str, Any]]:
        """One decision (as a dict) per input line, in input order."""
        async for answer in self._answers(items, None):
            yield answer.body

    async def stage_results(
        self, stages: str | Sequence[str], items: Iterable[Item]
    ) -> AsyncIterator[dict[str, Any]]:
        """Only the given stages (in pipeline order, seed 000's ``execute_single_stage``): per
        line, the route and results of the last stage it reached."""
        chosen = self.selection([stages] if isinstance(stages, str) else stages)
        async for answer in self._answers(items, chosen):
            yield answer.body

    def selection(self, stages: Sequence[str]) -> list[StagePlan]:
        """The named stages in pipeline order; ``ConfigError`` for one unknown or disabled."""
        known = {stage.name: stage for stage in self.plan.stages}
        for name in stages:
            if name not in known:
                raise ConfigError("--stage", f"unknown stage '{name}' (stages: {', '.join(known)})")
            if name not in self.processors:
                raise ConfigError("--stage", f"stage '{name}' is disabled")
        return [stage for stage in self.plan.active_stages if stage.name in stages]

    async def _answers(
        self, items: Iterable[Item], chosen: list[StagePlan] | None
    ) -> AsyncIterator[Answer]:
        batch: list[tuple[int, bytes]] = []
        for line in numbered(items):
            batch.append(line)
            if len(batch) >= self.batch_size:
                for answer in await self._batch(batch, chosen):
                    yield answer
                batch = []
        if batch:
            for answer in await self._batch(batch, chosen):
                yield answer

    async def _batch(
        self, lines: list[tuple[int, bytes]], chosen: list[StagePlan] | None
    ) -> list[Answer]:
        """The lines' answers in input order, each stage run once on the batch like a worker."""
        stamp = int(time.time() * 1000)
        done: dict[int, dict[str, Any]] = {}
        stages = chosen or self.plan.active_stages
        pending = [self._message(number, raw, stamp) for number, raw in lines]
        if chosen is not None and chosen[0].name != self.plan.active_stages[0].name:
            pending = self._into(chosen, pending, done)
        for position, stage in enumerate(stages):
            report = await self.processors[stage.name].process(pending)
            pending = []
            following = stages[position + 1] if position + 1 < len(stages) else None
            for out in report.outgoing:
                line = out.source.offset if out.source is not None else 0
                if following is not None and out.topic in self._stage_topics:
                    pending.append(self._hop(out, following, line, stamp))
                elif chosen is not None:
                    done[line] = self._stage_answer(stage, out)
                else:
                    done[line] = self._answer(stage, out)
        return [Answer(number, done[number]) for number, _ in lines if number in done]

    def _message(self, number: int, raw: bytes, stamp: int) -> Incoming:
        """An input line as the first stage would consume it."""
        key = record_key(raw, self.plan.key_field)
        return Incoming(self.topics.input, 0, number, stamp, key, raw, [])

    def _hop(self, out: Outgoing, following: StagePlan, line: int, stamp: int) -> Incoming:
        """What the next stage run consumes of an envelope this one wrote: the same bytes. A
        partial run that leaves stages out hands it on past them, signed for its new topic."""
        topic = self.topics.stage_inputs[following.name]
        headers = list(out.headers)
        if topic != out.topic and self.auth is not None:
            headers = self.auth.seal(topic, out.value or b"", headers)
        return Incoming(topic, 0, line, stamp, out.key, out.value, headers)

    def _into(
        self, chosen: list[StagePlan], messages: list[Incoming], done: dict[int, dict[str, Any]]
    ) -> list[Incoming]:
        """Input lines made into envelopes for a later stage run alone: a line that already
        is one (from ``tail``) goes as it is, a plain record is first decoded as the first
        stage would (size, schema and limits checked). A cross-stage dependency that neither
        the chosen stages nor the envelope provide is refused (``ConfigError``)."""
        first = self.plan.active_stages[0].name
        codec = self.processors[first].codec
        topic = self.topics.stage_inputs[chosen[0].name]
        out = []
        for message in messages:
            value = message.value or b""
            payload = _envelope_of(value)
            if payload is None:
                decoded = codec.decode(message, first, True)
                if isinstance(decoded, Rejected):
                    headers = codec.dead_letter_headers(
                        decoded.letter, message, decoded.record_id, 1
                    )
                    done[message.offset] = self._letter(headers, message.offset)
                    continue
                value = codec.envelope(decoded)
                results: Any = {}
            else:
                results = payload.get("results")
            self._check_dependencies(chosen, results if isinstance(results, dict) else {})
            headers = self.auth.seal(topic, value, []) if self.auth is not None else []
            out.append(
                Incoming(
                    topic, 0, message.offset, message.timestamp_ms, message.key, value, headers
                )
            )
        return out

    def _check_dependencies(self, stages: list[StagePlan], results: Mapping[str, Any]) -> None:
        """Refuse a partial run whose stages need a result of a stage that is not run and
        that the record does not carry: the dependency would SKIP and mislead."""
        chosen = {stage.name for stage in stages}
        owner = {spec.rule_id: stage.name for stage in self.plan.stages for spec in stage.rules}
        for stage in self.plan.active_stages:
            if stage.name not in chosen:
                continue
            for spec in stage.rules:
                for dep in spec.cross_stage_dependencies:
                    if owner.get(dep) in chosen or dep in results:
                        continue
                    raise ConfigError(
                        "--stage",
                        f"rule '{spec.rule_id}' of stage '{stage.name}' needs the result of "
                        f"'{dep}' (stage '{owner.get(dep)}'), which is not run: add --stage "
                        f"{owner.get(dep)}, or give envelopes that carry it (stream-engine tail)",
                    )

    def _answer(self, stage: StagePlan, out: Outgoing) -> dict[str, Any]:
        """A pipeline's answer for one record, from the message that ended its way."""
        if out.topic != self.topics.dlq:
            body: dict[str, Any] = orjson.loads(out.value or b"")
            return body
        line = out.source.offset if out.source is not None else 0
        letter = self._letter(out.headers, line)
        if out.state is None or out.outcome is None:
            return letter
        decided = self.processors[stage.name].router.decide(out.state, out.outcome)
        if decided is None:
            return letter
        body = decided.to_dict()
        body["dead_letter"] = letter["dead_letter"]
        try:
            orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:
            return letter  # its results are what could not be written
        return body

    def _stage_answer(self, stage: StagePlan, out: Outgoing) -> dict[str, Any]:
        """A partial run's answer: the route and results of the last stage the record ran."""
        if out.topic == self.topics.dlq:
            body = self._answer(stage, out)
            body.setdefault("results", {})
            body.setdefault("data", None)
        else:
            body = orjson.loads(out.value or b"")
        outcome = out.outcome
        data = body.get("data")
        masker = self.processors[stage.name].executor.masker
        envelope = out.topic in self._stage_topics  # a decision's data is masked already
        if envelope and isinstance(data, dict) and masker is not None and masker.mask_decisions:
            data = masker.data(data)
        cost = body.get("cost")
        answer: dict[str, Any] = {
            "record_id": body.get("record_id"),
            "stage": stage.name,
            "route": outcome.route.value if outcome is not None else Route.DEAD_LETTER.value,
            "reasons": outcome.reasons if outcome is not None else body.get("reasons", []),
            "results": body.get("results", {}),
            "data": data,
            "cost": cost.get("total", 0.0) if isinstance(cost, dict) else 0.0,
        }
        if "status" in body:
            answer["status"] = body["status"]
        if "dead_letter" in body:
            answer["dead_letter"] = body["dead_letter"]
        return answer

    def _letter(self, headers: Headers, line: int) -> dict[str, Any]:
        """A dead letter in decision form, from the headers the dead-letter topic carries."""
        facts = {
            k.removeprefix(DLQ_PREFIX): v.decode("utf-8", "replace")
            for k, v in headers
            if k.startswith(DLQ_PREFIX)
        }
        reason = facts.get("reason", DeadLetterReason.INTERNAL_ERROR.value)
        message = facts.get("exception.message", "")
        return {
            "record_id": facts.get("record_id") or f"line-{line}",
            "status": Status.DEAD_LETTER.value,
            "decided_at": facts.get("failed_at") or iso_time(time.time()),
            "decided_by_stage": facts.get("stage", ""),
            "reasons": [f"{reason}: {message}"],
            "dead_letter": {
                "reason": reason,
                "stage": facts.get("stage", ""),
                "rule": facts.get("rule", ""),
                "error_class": facts.get("exception.class", ""),
                "message": message,
                "attempt": int(facts.get("attempt") or 1),
            },
            "pipeline": self.plan.name,
            "config_version": self.plan.version,
            "config_hash": self.plan.config_hash,
        }


def _envelope_of(value: bytes) -> dict[str, Any] | None:
    """The JSON object of a line that is an envelope (``tail`` of a stage topic), else None."""
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    shaped = isinstance(payload, dict) and "record_id" in payload
    if (
        shaped
        and isinstance(payload.get("results"), dict)
        and isinstance(payload.get("data"), dict)
    ):
        return payload  # type: ignore[no-any-return]
    return None


def stage_key(plan: PipelinePlan, stage: StagePlan) -> dict[str, Any]:
    """What a stage's records are keyed, and so partitioned, by: the key fields of its
    stores (``hashed`` when they hold PII: stores and keys carry a hash of the values), or
    for a stage that keeps no state the record id (read from ``input.key_field``, if set)."""
    if stage.key_fields is None:
        return {"by": "record_id", "key_field": plan.key_field}
    return {"by": "fields", "fields": list(stage.key_fields), "hashed": stage.stores[0].hashed}


def plan_rows(plan: PipelinePlan, topics: TopicNames | None = None) -> list[dict[str, Any]]:
    """One row per stage: options, rule levels, the topic it consumes, what its records are
    keyed by, and the stores of its stateful rules with their changelog topics."""
    topics = topics or default_topic_names(plan)
    rows = []
    for stage in plan.stages:
        rows.append(
            {
                "stage": stage.name,
                "enabled": stage.enabled,
                "fail_fast": stage.fail_fast,
                "parallel": stage.parallel,
                "max_parallel_rules": stage.max_parallel_rules,
                "timeout_s": stage.timeout_s,
                "condition": stage.condition.source if stage.condition else None,
                "levels": [[spec.rule_id for spec in level] for level in stage.levels],
                "topic": topics.stage_inputs.get(stage.name),
                "key": stage_key(plan, stage),
                "stores": [
                    {"rule": store.name, "changelog": topics.changelog(stage.name, store.name)}
                    for store in stage.stores
                ],
            }
        )
    return rows


def plan_summary(plan: PipelinePlan, topics: TopicNames | None = None) -> dict[str, Any]:
    """The plan as JSON: identity, stages with rules and options, output topics."""
    topics = topics or default_topic_names(plan)
    return {
        "pipeline": plan.name,
        "version": plan.version,
        "config_hash": plan.config_hash,
        "environment": plan.environment,
        "stop_on_stage_failure": plan.stop_on_stage_failure,
        "budget": plan.budget,
        "pii": {
            "fields": list(plan.pii_fields),
            "mode": plan.pii.mode,
            "keyed": plan.pii.hash_key is not None,
            "mask_decisions": plan.pii.mask_decisions,
        },
        "stages": [
            {
                **row,
                "rules": {
                    spec.rule_id: {
                        "class": type(spec.rule).__name__,
                        "dependencies": list(spec.dependencies),
                        "cross_stage_dependencies": list(spec.cross_stage_dependencies),
                        "on_fail": spec.on_fail.value,
                        "on_error": spec.on_error.value,
                        "cost": spec.cost,
                        "when": spec.when.source if spec.when else None,
                    }
                    for spec in stage.rules
                },
            }
            for row, stage in zip(plan_rows(plan, topics), plan.stages, strict=True)
        ],
        "topics": {
            "input": topics.input,
            "decisions": topics.decisions,
            "rejected": topics.rejected,
            "review": topics.review,
            "dlq": topics.dlq,
        },
    }


def _node(stage: StagePlan, rule_id: str) -> str:
    return f"{stage.name}__{rule_id}"


def plan_mermaid(plan: PipelinePlan, topics: TopicNames | None = None) -> str:
    """A Mermaid flowchart: a box per stage holding its rules, dependency arrows inside,
    dotted arrows for cross-stage dependencies, and the routes out of the pipeline."""
    topics = topics or default_topic_names(plan)
    lines = ["flowchart LR", f'    input(["{topics.input}"])']
    stage_of = {spec.rule_id: stage for stage in plan.stages for spec in stage.rules}
    previous = "input"
    for stage in plan.active_stages:
        lines.append(f'    subgraph {stage.name}["{stage.name}"]')
        lines.append("        direction TB")
        for spec in stage.rules:
            lines.append(f'        {_node(stage, spec.rule_id)}["{spec.rule_id}"]')
        for spec in stage.rules:
            for dep in spec.dependencies:
                lines.append(f"        {_node(stage, dep)} --> {_node(stage, spec.rule_id)}")
        lines.append("    end")
        lines.append(f"    {previous} --> {stage.name}")
        previous = stage.name
    for stage in plan.active_stages:
        for spec in stage.rules:
            for dep in spec.cross_stage_dependencies:
                owner = stage_of.get(dep)
                if owner is not None and owner.enabled:
                    lines.append(f"    {_node(owner, dep)} -.-> {_node(stage, spec.rule_id)}")
    lines.append(f'    {previous} --> approved(["decisions"])')
    lines.append('    rejected(["rejected"]) ~~~ review(["review"]) ~~~ dlq(["dlq"])')
    return "\n".join(lines) + "\n"
