"""Topic names a pipeline uses (ARCHITECTURE.md): one per stage, plus the output topics.
Defaults derive from the pipeline name; the config's ``topics.names`` may replace any."""

from __future__ import annotations

from dataclasses import dataclass

from stream_engine.config.models import TopicNamesConfig
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

    def kinds(self) -> list[tuple[str, str]]:
        """(name, kind) for every topic; kinds are input, stage, decisions, rejected, review,
        dlq - the keys of a topics file's ``kinds``."""
        stages = [
            (topic, "input" if i == 0 else "stage")
            for i, topic in enumerate(self.stage_inputs.values())
        ]
        outputs = [
            (self.decisions, "decisions"),
            (self.rejected, "rejected"),
            (self.review, "review"),
            (self.dlq, "dlq"),
        ]
        return [*stages, *outputs]

    def all(self) -> list[str]:
        """Every topic, stage inputs first."""
        return [name for name, _ in self.kinds()]

    def for_output(self, kind: str) -> str:
        """The topic of ``decisions``, ``rejected``, ``review`` or ``dlq``."""
        return {
            "decisions": self.decisions,
            "rejected": self.rejected,
            "review": self.review,
            "dlq": self.dlq,
        }[kind]


def topic_names(plan: PipelinePlan, names: TopicNamesConfig | None = None) -> TopicNames:
    """``<p>.input`` for the first enabled stage, ``<p>.stage.<s>`` for the others,
    ``<p>.decisions|rejected|review|dlq`` - each replaceable by ``topics.names``."""
    names = names or TopicNamesConfig()
    prefix = plan.name
    inputs: dict[str, str] = {}
    for position, stage in enumerate(plan.active_stages):
        default = f"{prefix}.input" if position == 0 else f"{prefix}.stage.{stage.name}"
        if position == 0 and names.input:
            default = names.input
        inputs[stage.name] = names.stages.get(stage.name, default)
    return TopicNames(
        stage_inputs=inputs,
        decisions=names.decisions or f"{prefix}.decisions",
        rejected=names.rejected or f"{prefix}.rejected",
        review=names.review or f"{prefix}.review",
        dlq=names.dlq or f"{prefix}.dlq",
    )


def default_topic_names(plan: PipelinePlan) -> TopicNames:
    """The default names (no overrides)."""
    return topic_names(plan)
