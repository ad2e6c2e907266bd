"""Rules that remember across records: ``Velocity``, ``Duplicate``, ``DistinctCount`` and
``Aggregate``, each keeping its state per ``key`` in its stage's store (core/stores.py).

Keys. ``key`` names a field, or a list of fields (dotted paths allowed); every stateful rule
of a stage shares one key, by which the stage's records are partitioned. A record without it
(absent, null or empty) is not counted: SKIP ``no <field>: not counted`` (``on_missing_key:
skip``, the default) or FAIL (``fail``). When a key field is PII the store holds a keyed hash
of the key, and no rule puts the key's value in a message or its details.

Time. A record's event time is ``time_field`` (ISO 8601 text, no zone meaning UTC, or epoch
seconds - milliseconds above 1e11), by default the input message's Kafka timestamp; a value
that is no time is an ERROR of the rule. Each store has a stream time: the latest event time
its partition has seen. A record more than ``grace`` (default ``0s``) before the stream time
is LATE: it is counted as if at ``stream time - grace`` - never dropped - its details say
``late_by_ms``, and the store's ``late_total`` counts it (a metric). Windows are inclusive:
a sliding ``window: 10m`` ending at a record's time ``t`` holds the records of ``[t - 10m,
t]``, the record itself included; a tumbling one (``Aggregate``) the records of its bucket,
aligned to the epoch, up to ``t``; ``Duplicate`` finds the key seen at most ``within`` away.

Bounds. Every write gives the key an expiry just past its latest time + window + grace, so
the store's sweep removes keys whose window has passed; every write also drops the entries no
later record's window can reach, and keeps at most ``max_entries`` (default 1000) per key,
dropping the oldest (the details then say ``saturated: true``; thresholds must be below it).

Idempotence. A window remembers the delivery (``StoreView.identity``: where the record
entered the pipeline) of each record it counted; a redelivery (a crash, a rebalance) is not
counted again and gets the answer it got the first time, the count including itself. A second
publish of the same record is another delivery: ``Duplicate`` is what catches it.

State values are JSON (the changelog carries them): a window is a list of
``[t_ms, identity, value]`` entries in time order; ``Duplicate`` keeps ``[t_ms, identity,
record_id]`` of the first sighting. Stateful rules never await.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Generic, TypeVar

from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import Verdict, display_float, failed, passed, skipped
from stream_engine.core.rule import RuleContext
from stream_engine.core.stores import KeyedState, StoreSpec, key_of, value_at
from stream_engine.core.windows import (
    Entry,
    between,
    bucket_start,
    cap,
    entries_of,
    event_time_ms,
    find,
    insert,
    iso_ms,
    parse_duration,
    place,
    since,
)
from stream_engine.errors import EventTimeError, RuleEvaluationError, StateUnavailableError
from stream_engine.rules.base import ConfiguredRule, register_rule
from stream_engine.rules.stateful_params import (
    AggregateOpName,
    AggregateParams,
    DistinctParams,
    DuplicateParams,
    StatefulParams,
    VelocityParams,
    WindowParams,
    is_number,
)

SP = TypeVar("SP", bound=StatefulParams)
WP = TypeVar("WP", bound=WindowParams)


# -- the shared parts ----------------------------------------------------------------------


class StatefulRule(ConfiguredRule[SP], Generic[SP]):
    """What every rule that remembers does: find its store, key the record as the processor
    partitions it, and place the record in time."""

    def __init__(self, params: SP) -> None:
        super().__init__(params)
        key = params.key
        self.key_fields: tuple[str, ...] = (key,) if isinstance(key, str) else tuple(key)
        self.grace_ms = parse_duration(params.grace)
        self.pii = PiiInputs()

    def state_key(self) -> tuple[str, ...]:
        return self.key_fields

    def bind_store(self, name: str, spec: StoreSpec | None = None) -> None:
        super().bind_store(name, spec or StoreSpec(name, "", self.key_fields))
        self.bound()

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        self.pii = pii
        self.bound()
        return self.pii_notes()

    def bound(self) -> None:
        """Called when the store or the PII fields become known (in either order)."""

    def pii_notes(self) -> list[str]:
        """Warnings about what the rule shows of PII (``learn_pii``); none by default."""
        return []

    def evaluate(self, ctx: RuleContext) -> Verdict:
        view, spec = ctx.stores, self.store_spec
        if view is None or spec is None:
            raise StateUnavailableError(
                f"{type(self).__name__} remembers records across a stage and was run without "
                "state: it needs the stores of a compiled stage"
            )
        try:
            state = view.state(self.store_name)
        except KeyError:
            raise StateUnavailableError(
                f"{type(self).__name__}: no store '{self.store_name}' for this record's partition"
            ) from None
        key = key_of(ctx.data, spec)
        if key is None:
            return self._missing_key(ctx.data)
        event = self._event_ms(ctx.data, view.time_ms)
        return self.decide(ctx, state, key, event, view.identity)

    @abstractmethod
    def decide(
        self, ctx: RuleContext, state: KeyedState, key: str, event_ms: int, identity: str
    ) -> Verdict:
        """The verdict on a keyed record at ``event_ms``, delivered as ``identity``."""

    def _missing_key(self, data: dict[str, Any]) -> Verdict:
        name = next(
            (f for f in self.key_fields if value_at(data, f) in (None, "")), self.key_fields[0]
        )
        if self.params.on_missing_key == "fail":
            return failed(f"no {name}: not counted", missing=name)
        return skipped(f"no {name}: not counted")

    def _event_ms(self, data: dict[str, Any], default_ms: int) -> int:
        name = self.params.time_field
        if name is None:
            return default_ms
        value = value_at(data, name)
        if value is None:
            raise EventTimeError(f"no {name}: the record has no event time")
        return event_time_ms(value, name, quote=not self.pii.holds(name))


def expiry(latest_ms: int, window_ms: int, grace_ms: int) -> int:
    """When a key may go: once stream time is past its latest entry's window and grace (the
    window includes its edge, so the key lives one millisecond beyond it)."""
    return latest_ms + window_ms + grace_ms + 1


def _late(late_by_ms: int, saturated: bool) -> dict[str, Any]:
    """The details a late or saturated count adds."""
    notes: dict[str, Any] = {}
    if late_by_ms:
        notes["late_by_ms"] = late_by_ms
    if saturated:
        notes["saturated"] = True
    return notes


def _records(count: int) -> str:
    return f"{count} record{'' if count == 1 else 's'}"


class WindowRule(StatefulRule[WP], Generic[WP]):
    """A rule over a window of the key's recent records: the entry each record adds, and
    the verdict on the window that ends at it."""

    def __init__(self, params: WP) -> None:
        super().__init__(params)
        self.window_ms = parse_duration(params.window)

    def start_of(self, at_ms: int) -> int:
        """The first time of the window that ends at ``at_ms`` (sliding: a window before)."""
        return at_ms - self.window_ms

    @abstractmethod
    def entry_value(self, data: dict[str, Any]) -> Any:
        """What the window keeps of a record (JSON), or a Verdict when it is not counted;
        raise ``RuleEvaluationError`` for a value it cannot keep."""

    @abstractmethod
    def answer(self, window: list[Entry], start_ms: int, notes: dict[str, Any]) -> Verdict:
        """The verdict on the entries of the window starting at ``start_ms``."""

    def decide(
        self, ctx: RuleContext, state: KeyedState, key: str, event_ms: int, identity: str
    ) -> Verdict:
        value = self.entry_value(ctx.data)
        if isinstance(value, Verdict):
            return value
        entries = entries_of(state.get(key))
        counted = find(entries, identity)
        if counted is not None:  # a redelivery: the answer it got, counting nothing
            state.advance(event_ms)
            at = int(counted[0])
            full = len(entries) >= self.params.max_entries
            return self._answer(entries, at, _late(max(0, at - event_ms), full))
        placed = place(state, event_ms, self.grace_ms)
        state.advance(event_ms)
        entry: Entry = [placed.at_ms, identity, value]
        entries = since(insert(entries, entry), self.start_of(state.clock - self.grace_ms))
        entries, dropped = cap(entries, self.params.max_entries, entry)
        if placed.late_by_ms:
            state.late_total += 1
        state.put(key, entries, expiry(int(entries[-1][0]), self.window_ms, self.grace_ms))
        return self._answer(entries, placed.at_ms, _late(placed.late_by_ms, dropped))

    def _answer(self, entries: list[Entry], at_ms: int, notes: dict[str, Any]) -> Verdict:
        start = self.start_of(at_ms)
        return self.answer(between(entries, start, at_ms), start, notes)


def _number(data: dict[str, Any], name: str) -> Any:
    """The numeric value of a field; None when absent; ``RuleEvaluationError`` otherwise."""
    value = value_at(data, name)
    if value is None or is_number(value):
        return value
    raise RuleEvaluationError(f"{name}: not a number (a {type(value).__name__})")


# -- the rules -----------------------------------------------------------------------------


@register_rule("Velocity")
class Velocity(WindowRule[VelocityParams]):
    """FAIL when more than `max_count` records of one key fall in a sliding `window` ending
    at the record (itself included), or, with `sum_field`, when their sum of that field is
    above `max_sum`. Details: count (and sum), window, threshold, window_start, and
    late_by_ms or saturated when they apply. State, time and redelivery: see the stateful
    rules in the README."""

    Params = VelocityParams
    #: The sum stays out of messages and details (``sum_field`` is PII; ``learn_pii``).
    _hide_sum = False

    def bound(self) -> None:
        field = self.params.sum_field
        self._hide_sum = field is not None and self.pii.hides(field)

    def entry_value(self, data: dict[str, Any]) -> Any:
        field = self.params.sum_field
        if field is None:
            return None
        value = _number(data, field)
        return skipped(f"no {field}: not counted") if value is None else value

    def answer(self, window: list[Entry], start_ms: int, notes: dict[str, Any]) -> Verdict:
        p = self.params
        count = len(window)
        details: dict[str, Any] = {"count": count}
        if p.sum_field is None:
            threshold: float = p.max_count or 0
            over = count > threshold
            message = f"{_records(count)} for this key in {p.window} (max {p.max_count})"
        else:
            threshold = p.max_sum or 0.0
            total = sum(e[2] for e in window if is_number(e[2]))
            over = total > threshold
            shown = display_float(total) if isinstance(total, float) else total
            if self._hide_sum:
                side = "above" if over else "within"
                message = (
                    f"{p.sum_field} for this key in {p.window} is {side} the max ({_n(threshold)})"
                )
            else:
                details["sum"] = shown
                message = (
                    f"{p.sum_field} totals {shown} over {_records(count)} for this key in "
                    f"{p.window} (max {_n(threshold)})"
                )
        details.update(
            window=p.window, threshold=_n(threshold), window_start=iso_ms(start_ms), **notes
        )
        return (failed if over else passed)(message, **details)


def _n(value: float) -> float | int:
    """A threshold as written: 5000.0 shown as 5000."""
    return int(value) if float(value).is_integer() else value


@register_rule("Duplicate")
class Duplicate(StatefulRule[DuplicateParams]):
    """FAIL when the key was already seen, at most `within` away, by another delivery (a
    second publish, not a redelivery of the first one, which passes). Details name the
    earlier record (earlier_record_id) and when it was seen (earlier_at). The first sighting
    is kept: a duplicate does not move it; one seen after the horizon starts a new one."""

    Params = DuplicateParams

    def __init__(self, params: DuplicateParams) -> None:
        super().__init__(params)
        self.within_ms = parse_duration(params.within)

    def decide(
        self, ctx: RuleContext, state: KeyedState, key: str, event_ms: int, identity: str
    ) -> Verdict:
        first = _sighting(state.get(key))
        within = self.params.within
        if first is not None and first[1] == identity:  # the first sighting, delivered again
            state.advance(event_ms)
            notes = _late(max(0, first[0] - event_ms), False)
            return passed(f"not seen in the {within} before", first_at=iso_ms(first[0]), **notes)
        placed = place(state, event_ms, self.grace_ms)
        state.advance(event_ms)
        if placed.late_by_ms:
            state.late_total += 1
        notes = _late(placed.late_by_ms, False)
        if first is not None and abs(placed.at_ms - first[0]) <= self.within_ms:
            at, earlier = iso_ms(first[0]), first[2]
            return failed(
                f"duplicate of record {earlier}, seen at {at} (within {within})",
                earlier_record_id=earlier,
                earlier_at=at,
                within=within,
                **notes,
            )
        expires = expiry(placed.at_ms, self.within_ms, self.grace_ms)
        state.put(key, [placed.at_ms, identity, ctx.record_id], expires)
        return passed(f"not seen in the {within} before", first_at=iso_ms(placed.at_ms), **notes)


def _sighting(raw: Any) -> tuple[int, str, str] | None:
    """A stored first sighting (time, identity, record id), or None for anything else."""
    if isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], int):
        return raw[0], str(raw[1]), str(raw[2])
    return None


@register_rule("DistinctCount")
class DistinctCount(WindowRule[DistinctParams]):
    """FAIL when more than `max_distinct` distinct values of `field` are among one key's
    records in a sliding `window` ending at the record (e.g. merchants per card). The store
    keeps a hash of a PII field's values, never the values. A record without the field is
    not counted (SKIP). Details: distinct, records, window, threshold, window_start."""

    Params = DistinctParams

    def __init__(self, params: DistinctParams) -> None:
        super().__init__(params)
        self._values = StoreSpec("", "", (params.field,))

    def bound(self) -> None:
        spec = self.store_spec
        hashed = self.pii.holds(self.params.field)
        key = spec.hash_key if spec is not None else None
        self._values = StoreSpec(self.store_name, "", (self.params.field,), key, hashed)

    def entry_value(self, data: dict[str, Any]) -> Any:
        value = key_of(data, self._values)
        return skipped(f"no {self.params.field}: not counted") if value is None else value

    def answer(self, window: list[Entry], start_ms: int, notes: dict[str, Any]) -> Verdict:
        p = self.params
        distinct = len({e[2] for e in window})
        message = f"{distinct} distinct {p.field} for this key in {p.window} (max {p.max_distinct})"
        return (failed if distinct > p.max_distinct else passed)(
            message,
            distinct=distinct,
            records=len(window),
            window=p.window,
            threshold=p.max_distinct,
            window_start=iso_ms(start_ms),
            **notes,
        )


@register_rule("Aggregate")
class Aggregate(WindowRule[AggregateParams]):
    """Keep running aggregates of one key's records - count, or sum, min, max, last or avg of
    a numeric field - over a sliding window ending at the record, or a tumbling one (fixed
    buckets aligned to the epoch). Always PASS; details.state holds each aggregate by name
    (null when there is nothing to aggregate; a sum of nothing is 0), which later rules read
    in CEL as `state.<rule>.<name>`."""

    Params = AggregateParams

    def __init__(self, params: AggregateParams) -> None:
        super().__init__(params)
        aggregates = params.aggregates
        #: The fields an entry keeps, in order; each aggregate's position among them.
        self.fields = tuple(dict.fromkeys(a.field for a in aggregates.values() if a.field))
        self._ops = [
            (name, a.op, self.fields.index(a.field) if a.field else -1)
            for name, a in aggregates.items()
        ]

    def state_names(self) -> tuple[str, ...]:
        """The names later rules read as ``state.<rule>.<name>``."""
        return tuple(self.params.aggregates)

    def pii_notes(self) -> list[str]:
        return [
            f"aggregates.{name}: aggregates PII field {a.field}; its value is in the "
            "details (details.state) for later rules to read"
            for name, a in self.params.aggregates.items()
            if a.field is not None and self.pii.holds(a.field)
        ]

    def start_of(self, at_ms: int) -> int:
        if self.params.kind == "tumbling":
            return bucket_start(at_ms, self.window_ms)
        return at_ms - self.window_ms

    def entry_value(self, data: dict[str, Any]) -> Any:
        return [_number(data, name) for name in self.fields]

    def answer(self, window: list[Entry], start_ms: int, notes: dict[str, Any]) -> Verdict:
        p = self.params
        columns = [_column(window, i) for i in range(len(self.fields))]
        values = {name: _aggregate(op, window, columns, i) for name, op, i in self._ops}
        return passed(
            f"{_records(len(window))} for this key in the {p.window} {p.kind} window",
            state=values,
            window=p.window,
            kind=p.kind,
            window_start=iso_ms(start_ms),
            records=len(window),
            **notes,
        )


def _column(window: list[Entry], position: int) -> list[Any]:
    """The numbers one field contributed to a window's entries (absent values left out)."""
    out = []
    for entry in window:
        kept = entry[2]
        if isinstance(kept, list) and position < len(kept) and is_number(kept[position]):
            out.append(kept[position])
    return out


def _aggregate(
    op: AggregateOpName, window: list[Entry], columns: list[list[Any]], position: int
) -> Any:
    """One aggregate over a window (``position``: its field's column)."""
    if op == "count":
        return len(window)
    values = columns[position]
    if op == "sum":
        return _shown(sum(values))
    if not values:
        return None
    if op == "min":
        return min(values)
    if op == "max":
        return max(values)
    if op == "last":
        return values[-1]
    return _shown(sum(values) / len(values))


def _shown(value: float) -> float:
    return display_float(value) if isinstance(value, float) else value
