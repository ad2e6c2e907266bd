"""Kafka ACLs for a pipeline, as a ``kafka-acls.sh`` script: who may write where.

Envelope authentication makes a forged envelope fail; ACLs keep it from being written at all.
Three principals: the workers (read their stages' topics, write every topic a stage writes,
read, write and create their stateful rules' changelogs, their consumer groups and -
exactly-once - their transactional ids), the producers (write the
input topic, nothing else) and the consumers of decisions (read decisions, rejected and review).
The dead-letter topic holds original records: only the workers read it (``dlq replay`` runs as
them). Give the brokers ``allow.everyone.if.no.acl.found=false`` so that whatever is not
granted here is refused."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stream_engine.runtime.cluster.topics import pipeline_topics

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline


@dataclass(frozen=True, slots=True)
class Principals:
    """The Kafka principals of a deployment (``User:name``)."""

    workers: str = "User:stream-engine"
    producers: str = "User:producer"
    consumers: str = "User:decisions-reader"
    #: Groups the consumers of decisions use: a prefix.
    consumer_groups: str = ""


@dataclass(frozen=True, slots=True)
class Grant:
    """One ``kafka-acls.sh --add``: a principal, operations, and a resource."""

    principal: str
    operations: tuple[str, ...]
    resource: str  # --topic / --group / --transactional-id / --cluster
    name: str
    prefixed: bool = False
    why: str = ""

    def command(self) -> str:
        """The shell line (``$BOOTSTRAP`` and ``$COMMAND_CONFIG`` come from the script)."""
        parts = [
            'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG"',
            f"--add --allow-principal {shlex.quote(self.principal)}",
            *(f"--operation {op}" for op in self.operations),
        ]
        if self.resource == "cluster":
            parts.append("--cluster")
        else:
            parts.append(f"--{self.resource} {shlex.quote(self.name)}")
        if self.prefixed:
            parts.append("--resource-pattern-type prefixed")
        return " \\\n  ".join(parts)


def grants(pipeline: CompiledPipeline, who: Principals) -> list[Grant]:
    """Every grant the pipeline needs, and nothing more."""
    topics = pipeline_topics(pipeline)
    groups = (pipeline.config.runtime.group_prefix or pipeline.plan.name) + "."
    exactly_once = pipeline.config.runtime.processing_guarantee == "exactly_once"
    stage_topics = list(topics.stage_inputs.values())
    out = [
        Grant(who.producers, ("Write", "Describe"), "topic", topics.input, why="producers"),
        *(
            Grant(who.workers, ("Read", "Describe"), "topic", name, why="a stage consumes it")
            for name in stage_topics
        ),
        *(
            Grant(who.workers, ("Write", "Describe"), "topic", name, why="a stage writes it")
            for name in [*stage_topics[1:], topics.decisions, topics.rejected, topics.review]
        ),
        Grant(
            who.workers,
            ("Write", "Read", "Describe"),
            "topic",
            topics.dlq,
            why="dead letters: written by stages, read by dlq replay",
        ),
        Grant(who.workers, ("Read",), "group", groups, True, "the stages' consumer groups"),
        *(
            Grant(
                who.workers,
                ("Read", "Write", "Describe", "Create"),
                "topic",
                changelog,
                why="a stateful rule's changelog: written by its stage, read back to restore "
                "its state, created by the stage's worker if missing",
            )
            for changelog, _ in topics.changelogs()
        ),
    ]
    if exactly_once:
        out += [
            Grant(
                who.workers,
                ("Write", "Describe"),
                "transactional-id",
                groups,
                True,
                "one transactional id per input partition",
            ),
            Grant(who.workers, ("IdempotentWrite",), "cluster", "", why="transactions"),
        ]
    readers = who.consumer_groups or f"{pipeline.plan.name}.readers."
    out += [
        *(
            Grant(who.consumers, ("Read", "Describe"), "topic", name, why="decisions")
            for name in (topics.decisions, topics.rejected, topics.review)
        ),
        Grant(who.consumers, ("Read",), "group", readers, True, "the readers' groups"),
    ]
    return out


def acl_script(pipeline: CompiledPipeline, who: Principals) -> str:
    """A bash script that adds the pipeline's ACLs with ``kafka-acls.sh``."""
    lines = [
        "#!/usr/bin/env bash",
        f"# Kafka ACLs for the pipeline '{pipeline.plan.name}' "
        "(made by: stream-engine topics acls).",
        "# Brokers need an authorizer and allow.everyone.if.no.acl.found=false, so that",
        "# nobody but the workers can write a stage topic or read the dead-letter topic.",
        "# Usage: BOOTSTRAP=host:9092 COMMAND_CONFIG=admin.properties bash this-script.sh",
        "set -euo pipefail",
        ': "${BOOTSTRAP:?set BOOTSTRAP to the brokers, host:port}"',
        ': "${COMMAND_CONFIG:?set COMMAND_CONFIG to an admin client properties file}"',
        "",
    ]
    for grant in grants(pipeline, who):
        lines += [f"# {grant.principal}: {grant.why}", grant.command(), ""]
    return "\n".join(lines)
