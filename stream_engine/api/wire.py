"""The API's bodies as pydantic models: the source of the OpenAPI document (``openapi.py``)
and of the shapes the handlers write. A decision is the output topics' own ``DecisionModel``;
a dead letter answers in ``DeadLetterAnswer``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream_engine.api.problems import TYPE_BASE, ProblemKind
from stream_engine.runtime.stage.contracts import DecisionModel


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchRequest(_Body):
    """Several records in one request (up to ``api.max_records``): published together, or,
    when one is refused, none."""

    records: list[dict[str, Any]] = Field(min_length=1)


class DeadLetterAnswer(_Body):
    """A record that stopped on the dead-letter topic: why and where (from its headers)."""

    record_id: str
    status: Literal["dead_letter"]
    reason: str | None
    stage: str | None
    rule: str | None
    message: str | None
    failed_at: str | None
    pipeline: str | None
    config_hash: str | None
    trace: str | None = None


class Link(_Body):
    """A record accepted but not (yet) decided: where its decision will be."""

    record_id: str
    href: str = Field(description="GET this path for the decision")


class Pending(Link):
    """A decide call whose decision did not come within ``timeout_ms``: the record is on the
    input topic and will be decided; poll ``href``."""

    status: Literal["pending"]


class Accepted(_Body):
    """Records the broker acknowledged (``POST /v1/records``), in request order."""

    accepted: list[Link]


class BatchDecisions(_Body):
    """The answers to a batch decide, in request order: decisions that came in time, and
    links for the rest (then the status is 202)."""

    decisions: list[DecisionModel | DeadLetterAnswer]
    pending: list[Link]


class ProblemError(_Body):
    """One refused record of a batch."""

    pointer: str = Field(description="JSON pointer of the record in the request body")
    kind: ProblemKind = Field(description="why this record was refused")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a URI naming the kind: " + TYPE_BASE + "<kind>")
    title: str = Field(description="the kind's title, the same for every problem of the kind")
    status: int = Field(ge=400, le=599, description="the HTTP status")
    detail: str = Field(description="what was wrong with this request")
    instance: str | None = Field(None, description="the route that refused it")
    errors: list[ProblemError] | None = Field(
        None, description="every refused record of a batch (nothing was published)"
    )
    retry_after_s: int | None = Field(None, description="seconds until the key may call again")


class Health(_Body):
    """``/health`` and ``/ready``: ``ok``/``ready``, or why not."""

    status: str
    reason: str | None = None


#: Every model the document names, by its component name.
COMPONENTS: tuple[type[BaseModel], ...] = (
    BatchRequest, DecisionModel, DeadLetterAnswer, Link, Pending, Accepted, BatchDecisions,
    Problem, Health,
)  # fmt: skip
