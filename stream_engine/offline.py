"""The offline side of the engine: evaluate JSON lines without Kafka, and describe a plan."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from stream_engine.config.compiler import CompiledPipeline
from stream_engine.core.decision import Decision
from stream_engine.core.executor import Executor
from stream_engine.core.outcome import DeadLetterReason, Route, Status
from stream_engine.core.plan import PipelinePlan, StagePlan
from stream_engine.core.state import DeadLetter, RecordState, iso_time
from stream_engine.runtime.names import TopicNames, default_topic_names


@dataclass(slots=True)
class BadLine:
    """An input line that is not a JSON object: it gets a dead-letter answer of its own."""

    number: int
    reason: str


def decode_lines(lines: Iterable[str | bytes]) -> Iterator[dict[str, Any] | BadLine]:
    """JSON objects from JSON lines; blank lines are ignored, bad ones reported in place."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield BadLine(number, f"not valid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield BadLine(number, f"not a JSON object but {type(value).__name__}")
            continue
        yield value


def bad_line_answer(pipeline: PipelinePlan, bad: BadLine, stage: str) -> dict[str, Any]:
    """What ``eval`` prints for a line it cannot decode (the Kafka runtime dead-letters it)."""
    letter = DeadLetter(DeadLetterReason.DECODE_ERROR, stage, bad.reason)
    return {
        "record_id": f"line-{bad.number}",
        "status": Status.DEAD_LETTER.value,
        "decided_at": iso_time(time.time()),
        "decided_by_stage": stage,
        "reasons": [f"decode_error: {bad.reason}"],
        "dead_letter": letter.to_dict(),
        "pipeline": pipeline.name,
        "config_version": pipeline.version,
        "config_hash": pipeline.config_hash,
    }


class OfflineEvaluator:
    """Runs records through a compiled pipeline in-process, in batches, in input order."""

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
        self.executor = Executor(pipeline.plan, worker="eval", clock=clock)
        self.batch_size = batch_size

    def new_state(self, record: dict[str, Any]) -> RecordState:
        """A fresh record state, its id from the configured key field. Rules write into the
        state's data, so it gets its own copy: the caller's record is never changed."""
        return RecordState.from_input(
            copy.deepcopy(record), self.plan.key_field, self.plan.tenant_field
        )

    async def decisions(
        self, items: Iterable[dict[str, Any] | BadLine]
    ) -> AsyncIterator[dict[str, Any]]:
        """One decision (as a dict) per input item, in order."""
        first = self.plan.active_stages[0].name if self.plan.active_stages else ""
        batch: list[dict[str, Any] | BadLine] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                for answer in await self._batch(batch, first):
                    yield answer
                batch = []
        if batch:
            for answer in await self._batch(batch, first):
                yield answer

    async def _batch(
        self, batch: list[dict[str, Any] | BadLine], first: str
    ) -> list[dict[str, Any]]:
        states = [self.new_state(item) for item in batch if not isinstance(item, BadLine)]
        decided = iter(await self.executor.run_records(states))
        return [
            bad_line_answer(self.plan, item, first)
            if isinstance(item, BadLine)
            else next(decided).to_dict()
            for item in batch
        ]

    async def stage_results(
        self, stage_name: str, items: Iterable[dict[str, Any] | BadLine]
    ) -> AsyncIterator[dict[str, Any]]:
        """One stage alone on each record (seed 000's ``execute_single_stage``)."""
        stage = self.plan.stage(stage_name)
        for item in items:
            if isinstance(item, BadLine):
                yield bad_line_answer(self.plan, item, stage_name)
                continue
            state = self.new_state(item)
            outcome = await self.executor.run_stage(stage, state)
            masker = self.executor.masker
            data = masker.data(state.data) if masker and masker.mask_decisions else state.data
            answer: dict[str, Any] = {
                "record_id": state.record_id,
                "stage": stage_name,
                "route": outcome.route.value,
                "reasons": outcome.reasons,
                "results": {rule_id: r.to_dict() for rule_id, r in outcome.results},
                "data": data,
                "cost": state.cost_total,
            }
            if outcome.dead_letter is not None:
                answer["dead_letter"] = outcome.dead_letter.to_dict()
            yield answer


def decision_route(decision: Decision) -> Route:
    """The route that produced a decision's status."""
    return {
        Status.APPROVED: Route.FORWARD,
        Status.REJECTED: Route.REJECT,
        Status.REVIEW: Route.REVIEW,
        Status.COMPLETED: Route.COMPLETE,
        Status.DEAD_LETTER: Route.DEAD_LETTER,
    }[decision.status]


def plan_rows(plan: PipelinePlan, topics: TopicNames | None = None) -> list[dict[str, Any]]:
    """One row per stage: options, rule levels and the topic it consumes."""
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
