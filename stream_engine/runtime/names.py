"""Topic names a pipeline uses (ARCHITECTURE.md): one per stage, plus the output topics."""

from __future__ import annotations

from dataclasses import dataclass

from stream_engine.core.plan import PipelinePlan


@dataclass(frozen=True)
class TopicNames:
    """The topics of one pipeline: where each stage consumes, and where records end up."""

    stage_inputs: dict[str, str]
    decisions: str
    rejected: str
    review: str
    dlq: str

    @property
    def input(self) -> str:
        """The topic users publish to: the first enabled stage's input."""
        return next(iter(self.stage_inputs.values()))

    def all(self) -> list[str]:
        """Every topic, stage inputs first."""
        return [*self.stage_inputs.values(), self.decisions, self.rejected, self.review, self.dlq]


def default_topic_names(plan: PipelinePlan) -> TopicNames:
    """``<p>.input`` for the first enabled stage, ``<p>.stage.<s>`` for the others."""
    name = plan.name
    inputs: dict[str, str] = {}
    for position, stage in enumerate(plan.active_stages):
        inputs[stage.name] = f"{name}.input" if position == 0 else f"{name}.stage.{stage.name}"
    return TopicNames(
        stage_inputs=inputs,
        decisions=f"{name}.decisions",
        rejected=f"{name}.rejected",
        review=f"{name}.review",
        dlq=f"{name}.dlq",
    )
