"""What the peer applications share: their command line, and one stage's step on one record
(the hand-written rules, the message shapes, and where the result goes)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from benchmarks.peers.onboarding_rules import STAGES, STATUS_OF_ROUTE
from benchmarks.topology import STATUS_OF_OUTPUT, Topology

KEY_FIELD = "application_id"
FIRST_STAGE, *_, LAST_STAGE = STAGES
#: The output topic of each decision status.
OUTPUT_OF_STATUS = {status: output for output, status in STATUS_OF_OUTPUT.items()}


@dataclass(frozen=True)
class PeerOptions:
    """Where a peer runs: broker, topic prefix, consumer group, and its stages."""

    broker: str
    topology: Topology
    group: str
    stages: tuple[str, ...]
    session_timeout_ms: int


def parse_peer_args(description: str, argv: list[str] | None = None) -> PeerOptions:
    """``--broker HOST:PORT --prefix P --group G [--stages a,b] [--session-timeout-ms MS]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--broker", required=True, help="bootstrap servers")
    parser.add_argument("--prefix", required=True, help="topic prefix (the pipeline name)")
    parser.add_argument("--group", required=True, help="consumer group (prefix)")
    parser.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated stages to run (default all)"
    )
    parser.add_argument("--session-timeout-ms", type=int, default=3000)
    args = parser.parse_args(argv)
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(unknown)}")
    return PeerOptions(
        args.broker, Topology(args.prefix), args.group, stages, args.session_timeout_ms
    )


def step(stage: str, key: str | None, value: Any) -> tuple[str, dict[str, Any]]:
    """Run one stage on one message: (output kind, value to send). The output kind is
    ``next`` (the envelope for the next stage) or a decision's topic kind (``decisions``,
    ``rejected``, ``review``, ``dlq``). The first stage reads the record itself; the others
    read ``{"record_id", "data"}``."""
    if stage == FIRST_STAGE:
        data = value
        record_id = key or (value.get(KEY_FIELD) if isinstance(value, dict) else None)
    else:
        data = value.get("data") if isinstance(value, dict) else None
        record_id = value.get("record_id") if isinstance(value, dict) else key
    if not isinstance(data, dict):
        return "dlq", {"record_id": record_id, "status": "dead_letter", "reason": "not an object"}
    result = STAGES[stage](data)
    if result.route == "forward":
        if stage != LAST_STAGE:
            return "next", {"record_id": record_id, "data": data}
        status = "approved"
    else:
        status = STATUS_OF_ROUTE[result.route]
    decision = {
        "record_id": record_id,
        "status": status,
        "decided_by_stage": stage,
        "reasons": result.reasons,
        "data": data,
    }
    return OUTPUT_OF_STATUS[status], decision


def kind_of(value: dict[str, Any]) -> str:
    """The output kind of a value :func:`step` made: a decision goes to its status's topic,
    an envelope to the next stage."""
    status = value.get("status")
    return "next" if status is None else OUTPUT_OF_STATUS[status]


def destination(topology: Topology, stage: str, kind: str) -> str:
    """The topic of an output kind from :func:`step`."""
    return topology.next_topic(stage) if kind == "next" else topology.output(kind)
