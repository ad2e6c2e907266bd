"""The wire contracts (docs/ARCHITECTURE.md) as pydantic models: the envelope every inter-stage
topic carries and the decision on the output topics. The hot path encodes plain dicts with
orjson; these models are the reference, the source of the JSON Schemas in ``topics/schemas/``,
and what the contract tests validate the codec's output against."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from stream_engine.core.outcome import Outcome, Route, Status


def _inline(kind: type[StrEnum]) -> WithJsonSchema:
    """A field's schema holds the enum's values itself, as a ``Literal`` would: the committed
    schemas do not change with the enum's docstring."""
    return WithJsonSchema({"enum": [member.value for member in kind], "type": "string"})


OutcomeName = Annotated[Outcome, _inline(Outcome)]
RouteName = Annotated[Route, _inline(Route)]
StatusName = Annotated[Status, _inline(Status)]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleResultModel(_Contract):
    """One rule evaluation."""

    stage: str
    outcome: OutcomeName
    message: str
    details: dict[str, Any]
    duration_ms: float = Field(ge=0)
    attempts: int = Field(ge=0)
    cost: float = Field(ge=0)
    error: str | None = Field(None, description="error kind, for ERROR outcomes")
    action: RouteName | None = Field(None, description="a route the rule asked for")


class AuditModel(_Contract):
    """One stage's visit."""

    stage: str
    started_at: str = Field(description="ISO-8601 UTC")
    duration_ms: float = Field(ge=0)
    route: RouteName
    worker: str
    config_version: str | None = Field(None, description="the configuration that ran the stage")
    config_hash: str | None = None


class CostModel(_Contract):
    """Cost spent on the record, in total and by rule."""

    total: float = Field(ge=0)
    by_rule: dict[str, float]
    budget: float | None = None


class SourceModel(_Contract):
    """Where the record entered the pipeline."""

    topic: str
    partition: int
    offset: int
    timestamp: int = Field(description="the producer's timestamp, milliseconds since the epoch")
    received: int | None = Field(
        None,
        description="when latency counts from (ms), set when the producer's timestamp was "
        "missing or outside input.timestamps",
    )
    note: str | None = Field(None, description="why the producer's timestamp was not believed")


class EnvelopeModel(_Contract):
    """What every inter-stage topic carries: the record so far and every result."""

    record_id: str = Field(min_length=1)
    pipeline: str
    config_version: str
    config_hash: str
    data: dict[str, Any]
    results: dict[str, RuleResultModel]
    audit: list[AuditModel]
    cost: CostModel
    source: SourceModel | None = None
    tenant: str | None = None
    trace: str | None = Field(None, description="W3C traceparent from the input headers")
    attempt: int | None = Field(
        None, ge=1, description="replay attempt, from the dlq.attempt header of a replayed record"
    )


class DeadLetterModel(_Contract):
    """Why a record was dead-lettered (in offline answers; on Kafka, in headers)."""

    reason: str
    stage: str
    rule: str
    error_class: str
    message: str
    attempts: int


class DecisionModel(_Contract):
    """The final word on a record, on the decisions, rejected and review topics."""

    record_id: str = Field(min_length=1)
    status: StatusName
    decided_at: str
    decided_by_stage: str
    reasons: list[str]
    failed_rules: dict[str, list[str]]
    results: dict[str, RuleResultModel]
    data: dict[str, Any]
    audit: list[AuditModel]
    cost: CostModel
    latency_ms: float = Field(ge=0)
    pipeline: str
    config_version: str
    config_hash: str
    config_mixed: bool = Field(
        False, description="true when a stage of the record ran under another configuration"
    )
    tenant: str | None = None
    source: SourceModel | None = None
    trace: str | None = None
    attempt: int | None = Field(
        None,
        ge=1,
        description="replay attempt, when the record came back from the dead-letter topic",
    )
    dead_letter: DeadLetterModel | None = None


SCHEMAS: dict[str, type[BaseModel]] = {"envelope": EnvelopeModel, "decision": DecisionModel}


def schema_text(name: str) -> str:
    """The JSON Schema of a contract, as committed under ``topics/schemas/``."""
    schema = SCHEMAS[name].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://stream-engine.dev/schemas/{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Regenerate every schema file; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMAS:
        path = directory / f"{name}.schema.json"
        path.write_text(schema_text(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(__file__).resolve().parents[3] / "topics" / "schemas"):
        print(path)
