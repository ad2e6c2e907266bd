"""Topic names a pipeline uses (docs/ARCHITECTURE.md): one per stage, plus the output topics.
Defaults derive from the pipeline name; the config's ``topics.names`` may replace any."""

from __future__ import annotations

from dataclasses import dataclass

from stream_engine.config.topic_names import TopicNamesConfig
from stream_engine.core.outcome import OutputKind
from stream_engine.core.plan import PipelinePlan


@dataclass(frozen=True)
class TopicNames:
    """The topics of one pipeline: where each stage consumes, and where records end up."""

    stage_inputs: dict[str, str]
    decisions: str
    rejected: str
    review: str
    dlq: str
    #: The pipeline's name: the prefix of its state topics.
    pipeline: str = ""

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
        outputs = [(self.for_output(kind), kind.value) for kind in OutputKind]
        return [*stages, *outputs]

    def all(self) -> list[str]:
        """Every topic, stage inputs first."""
        return [name for name, _ in self.kinds()]

    def changelog(self, stage: str, store: str) -> str:
        """The compacted changelog topic of a stateful rule's store."""
        return f"{self.pipeline}.state.{stage}.{store}"

    def for_output(self, kind: str) -> str:
        """The topic of an output kind (``decisions``, ``rejected``, ``review``, ``dlq``):
        the fields are named after the kinds."""
        name: str = getattr(self, OutputKind(kind).value)
        return name


def topic_names(plan: PipelinePlan, names: TopicNamesConfig | None = None) -> TopicNames:
    """``<p>.input`` for the first enabled stage, ``<p>.stage.<s>`` for the others,
    ``<p>.decisions|rejected|review|dlq`` - each replaceable by ``topics.names``."""
    names = names or TopicNamesConfig()
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for use in names.uses(plan.name, [stage.name for stage in plan.active_stages]):
        if use.stage is None:
            outputs[use.kind] = use.topic
        else:
            inputs[use.stage] = use.topic
    return TopicNames(
        stage_inputs=inputs,
        **{kind.value: outputs[kind.value] for kind in OutputKind},
        pipeline=plan.name,
    )


def default_topic_names(plan: PipelinePlan) -> TopicNames:
    """The default names (no overrides)."""
    return topic_names(plan)
