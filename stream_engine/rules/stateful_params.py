"""The params of the stateful rules (rules/stateful.py): keys, time, windows, thresholds, each
checked when the pipeline loads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from stream_engine.core.expr import is_cel_name
from stream_engine.core.windows import parse_duration
from stream_engine.rules.base import RuleParams, field_param

#: The entries a window keeps per key unless ``max_entries`` says otherwise.
MAX_ENTRIES = 1000
#: The most ``max_entries`` may be (the work per record is linear in it).
MAX_ENTRIES_LIMIT = 100_000


def _duration(text: str) -> str:
    parse_duration(text)
    return text.strip()


def _positive(text: str) -> str:
    if parse_duration(text) == 0:
        raise ValueError("must be longer than 0")
    return _duration(text)


#: A duration param as written (``90s``, ``10m``, ``24h``, ``7d``), checked when it loads.
Duration = Annotated[str, AfterValidator(_duration)]
#: A duration that must be longer than zero (a window, a horizon).
Span = Annotated[str, AfterValidator(_positive)]


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- params --------------------------------------------------------------------------------


class StatefulParams(RuleParams):
    key: str | list[str] = Field(
        description="the field, or list of fields (dotted paths allowed), the rule remembers "
        "records by; a stage's stateful rules share one key"
    )
    time_field: str | None = Field(
        None,
        description="the field holding the event time: ISO 8601 text (no zone: UTC) or epoch "
        "seconds (milliseconds above 1e11); default the input message's Kafka timestamp",
    )
    grace: Duration = Field(
        "0s",
        description="how far behind the stream time a record may be and still count at its "
        "own time; a later one counts at stream time - grace, with late_by_ms",
    )
    on_missing_key: Literal["skip", "fail"] = Field(
        "skip",
        description="a record without the key (absent, null or empty): skip (SKIP, not "
        "counted) or fail (FAIL)",
    )

    @field_validator("key")
    @classmethod
    def _key_fields(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names:
            raise ValueError("name at least one field")
        if any(not name.strip() or "" in name.split(".") for name in names):
            raise ValueError("a field name cannot be empty")
        if len(set(names)) < len(names):
            raise ValueError("a field is listed twice")
        return value


class WindowParams(StatefulParams):
    window: Span = Field(description="the length of the window: 90s, 10m, 24h, 7d")
    max_entries: int = Field(
        MAX_ENTRIES,
        ge=1,
        le=MAX_ENTRIES_LIMIT,
        description="the most records a window keeps per key; beyond it the oldest are "
        "dropped and the details say saturated: true",
    )


class VelocityParams(WindowParams):
    max_count: int | None = Field(
        None, ge=0, description="FAIL when more records than this are in the window"
    )
    sum_field: str | None = Field(
        None, description="sum this numeric field instead of counting records (needs max_sum)"
    )
    max_sum: float | None = Field(
        None, description="with sum_field: FAIL when the window's sum is above this"
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> VelocityParams:
        if self.sum_field is not None:
            if self.max_sum is None or self.max_count is not None:
                raise ValueError("with sum_field give max_sum (and no max_count)")
        elif self.max_count is None or self.max_sum is not None:
            raise ValueError("give max_count (or sum_field with max_sum)")
        elif self.max_count >= self.max_entries:
            raise ValueError(f"max_count must be below max_entries ({self.max_entries})")
        return self


class DuplicateParams(StatefulParams):
    within: Span = Field(
        description="the horizon: FAIL when the key was seen at most this long before (or "
        "after) by another delivery: 10m, 24h, 7d"
    )


class DistinctParams(WindowParams):
    field: str = field_param(
        description="the field whose distinct values are counted (hashed in the store when "
        "it is PII)"
    )
    max_distinct: int = Field(
        ge=0, description="FAIL when more distinct values than this are in the window"
    )

    @model_validator(mode="after")
    def _below_bound(self) -> DistinctParams:
        if self.max_distinct >= self.max_entries:
            raise ValueError(f"max_distinct must be below max_entries ({self.max_entries})")
        return self


AggregateOpName = Literal["count", "sum", "min", "max", "last", "avg"]


class AggregateOp(RuleParams):
    op: AggregateOpName = Field(
        description="count (records), or sum, min, max, last or avg of a numeric field"
    )
    field: str | None = Field(
        None, description="the numeric field aggregated (not for count; absent values skipped)"
    )

    @model_validator(mode="after")
    def _field_for_op(self) -> AggregateOp:
        if self.op == "count" and self.field is not None:
            raise ValueError("count counts records: it takes no field")
        if self.op != "count" and self.field is None:
            raise ValueError(f"{self.op} needs a field")
        return self


class AggregateParams(WindowParams):
    aggregates: dict[str, AggregateOp] = Field(
        min_length=1,
        description="name → {op, field}: the values later rules read in CEL as state.<rule>.<name>",
    )
    kind: Literal["sliding", "tumbling"] = Field(
        "sliding",
        description="sliding: the window ending at each record; tumbling: fixed buckets "
        "aligned to the epoch",
    )

    @field_validator("aggregates")
    @classmethod
    def _cel_names(cls, value: dict[str, AggregateOp]) -> dict[str, AggregateOp]:
        for name in value:
            if not is_cel_name(name):  # read as state.<rule>.<name>
                raise ValueError(
                    f"{name!r} is not a name CEL can read (letters, digits and _, not first "
                    "a digit, not a reserved word)"
                )
        return value
