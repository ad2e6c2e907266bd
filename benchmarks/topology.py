"""Topic names of one system under test: the same layout as stream_engine's
(``<p>.input``, ``<p>.stage.<s>`` for every stage after the first, ``<p>.decisions``,
``.rejected``, ``.review``, ``.dlq``), so every system makes the same five hops."""

from __future__ import annotations

from dataclasses import dataclass

from stream_engine.core.outcome import OutputKind

STAGES = ("preprocessing", "data_quality", "compliance", "business_rules", "post_processing")
OUTPUT_KINDS = tuple(OutputKind)
#: The decision status each output topic stands for (stream_engine also writes ``completed``
#: decisions to ``decisions``; this pipeline has none).
STATUS_OF_OUTPUT = {
    "decisions": "approved",
    "rejected": "rejected",
    "review": "review",
    "dlq": "dead_letter",
}


@dataclass(frozen=True)
class Topology:
    """The topics of one pipeline instance named ``prefix``."""

    prefix: str
    stages: tuple[str, ...] = STAGES

    def stage_input(self, stage: str) -> str:
        """The topic ``stage`` consumes."""
        if stage == self.stages[0]:
            return f"{self.prefix}.input"
        return f"{self.prefix}.stage.{stage}"

    @property
    def input(self) -> str:
        """Where the records are published."""
        return self.stage_input(self.stages[0])

    @property
    def first_hop(self) -> str:
        """The topic the first stage forwards to: its first message marks the start."""
        return self.stage_input(self.stages[1])

    def next_topic(self, stage: str) -> str:
        """Where ``stage`` forwards a record: the next stage's topic, or ``decisions``."""
        position = self.stages.index(stage)
        if position + 1 < len(self.stages):
            return self.stage_input(self.stages[position + 1])
        return self.output("decisions")

    def output(self, kind: str) -> str:
        """``decisions``, ``rejected``, ``review`` or ``dlq``."""
        return f"{self.prefix}.{kind}"

    def outputs(self) -> dict[str, str]:
        """Output topic → its kind."""
        return {self.output(kind): kind for kind in OUTPUT_KINDS}

    def all_topics(self) -> list[str]:
        """Every topic: stage inputs, then outputs."""
        return [self.stage_input(s) for s in self.stages] + list(self.outputs())
