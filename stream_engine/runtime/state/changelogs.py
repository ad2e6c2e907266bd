"""A stage's changelog topics, made sure of before its worker joins the group: one per
stateful rule, compacted, with the partitions of the stage's topic - changelog partition p
holds the state of input partition p, so a changelog with fewer partitions cannot hold it."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from stream_engine.errors import BrokerError
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.cluster.topics import (
    create_topics,
    describe_topics,
    pipeline_topics,
    topic_specs,
)

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger(__name__)


async def ensure_changelogs(pipeline: CompiledPipeline, stage: str, kafka: KafkaSettings) -> None:
    """Create the stage's missing changelogs with its topic's partition count on the broker
    (as Kafka Streams does); refuse to go on when the stage's topic is missing or an existing
    changelog has fewer partitions than it."""
    topics = pipeline_topics(pipeline)
    changelogs = [changelog for changelog, _ in topics.changelogs(stage)]
    if not changelogs:
        return
    source = topics.stage_inputs[stage]
    counts = await describe_topics([source, *changelogs], kafka)
    partitions = counts[source]
    if partitions is None:
        raise BrokerError(
            f"stage {stage}: its topic {source} does not exist on {kafka.describe()}; create "
            "the pipeline's topics first (stream-engine topics create)"
        )
    short = [
        (name, counts[name]) for name in changelogs if (counts[name] or partitions) < partitions
    ]
    if short:
        listed = ", ".join(f"{name} has {count}" for name, count in short)
        raise BrokerError(
            f"stage {stage}: its topic {source} has {partitions} partitions but {listed}: "
            "changelog partition p holds the state of input partition p, so a changelog needs "
            "at least as many partitions as its stage's topic; recreate it with "
            f"{partitions} partitions (its state is lost) or use a topic with as many"
        )
    missing = [
        dataclasses.replace(spec, partitions=partitions)
        for spec in topic_specs(pipeline)
        if spec.name in changelogs and counts[spec.name] is None
    ]
    if missing:
        await create_topics(missing, kafka)
        log.info(
            "stage %s: created changelog topic(s) %s with %d partitions",
            stage,
            ", ".join(spec.name for spec in missing),
            partitions,
        )
