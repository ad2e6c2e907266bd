"""Topic names a pipeline uses (docs/ARCHITECTURE.md): one per stage, the output topics, and a
changelog per stateful rule. Defaults derive from the pipeline name; the config's
``topics.names`` may replace any but the changelogs (``<pipeline>.state.<stage>.<rule>``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_engine.config.topic_names import TopicNamesConfig
from stream_engine.core.outcome import OutputKind
from stream_engine.core.plan import PipelinePlan

#: The kind of a changelog topic (a topics file's ``kinds.state``).
STATE_KIND = "state"


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
    #: The stores (stateful rules' ids) of each stage that keeps state.
    stores: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def input(self) -> str:
        """The topic users publish to: the first enabled stage's input."""
        return next(iter(self.stage_inputs.values()))

    def kinds(self) -> list[tuple[str, str]]:
        """(name, kind) for every topic; kinds are input, stage, decisions, rejected, review,
        dlq and state (the changelogs) - the keys of a topics file's ``kinds``."""
        stages = [
            (topic, "input" if i == 0 else "stage")
            for i, topic in enumerate(self.stage_inputs.values())
        ]
        outputs = [(self.for_output(kind), kind.value) for kind in OutputKind]
        states = [(changelog, STATE_KIND) for changelog, _ in self.changelogs()]
        return [*stages, *outputs, *states]

    def all(self) -> list[str]:
        """Every topic, stage inputs first."""
        return [name for name, _ in self.kinds()]

    def changelog(self, stage: str, store: str) -> str:
        """The compacted changelog topic of a stateful rule's store."""
        return f"{self.pipeline}.state.{stage}.{store}"

    def changelogs(self, stage: str | None = None) -> list[tuple[str, str]]:
        """(changelog, the stage topic whose partitions it mirrors) for every store - of one
        stage, or of all: changelog partition p holds the state of input partition p."""
        return [
            (self.changelog(name, store), self.stage_inputs[name])
            for name, stores in self.stores.items()
            if stage is None or name == stage
            for store in stores
        ]

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
    stores = {
        stage.name: tuple(spec.name for spec in stage.stores)
        for stage in plan.active_stages
        if stage.stores and stage.name in inputs
    }
    return TopicNames(
        stage_inputs=inputs,
        **{kind.value: outputs[kind.value] for kind in OutputKind},
        pipeline=plan.name,
        stores=stores,
    )


def default_topic_names(plan: PipelinePlan) -> TopicNames:
    """The default names (no overrides)."""
    return topic_names(plan)
