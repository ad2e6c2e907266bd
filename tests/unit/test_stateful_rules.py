"""The four stateful rules - Velocity, Duplicate, DistinctCount, Aggregate - fed record after
record through a stage's stores as the processor feeds them: thresholds, sliding and tumbling
windows, late and out-of-order records, redeliveries counted once, bounds, expiry and PII."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.core.stores import KeyedState, StageState, StoreSpec
from stream_engine.errors import EventTimeError, RuleEvaluationError, StateUnavailableError
from stream_engine.pipeline import load_pipeline
from stream_engine.rules import RULES

T0 = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
MINUTE = 60_000


def at(minutes: float) -> str:
    """An event time ``minutes`` after T0, as ISO text."""
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def iso(minutes: float) -> str:
    """The same time as the details show it."""
    return (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")


class Harness:
    """One rule bound to its store, and the stage's stores it is fed through, each record a
    new delivery unless told otherwise."""

    def __init__(self, cls: str, pii: tuple[str, ...] = (), **params: Any) -> None:
        self.rule = RULES.get(cls).from_params(params)
        inputs = PiiInputs(frozenset(pii))
        self.notes = self.rule.learn_pii(inputs)
        fields = self.rule.state_key()
        hashed = any(inputs.holds(f) for f in fields)
        self.spec = StoreSpec("r", "s", fields, b"secret", hashed)
        self.rule.bind_store("r", self.spec)
        self.stage = StageState((self.spec,))
        self.deliveries = 0

    def feed(self, data: dict[str, Any], identity: str | None = None, time_ms: int = 0) -> Verdict:
        self.deliveries += 1
        identity = identity or f"in/0/{self.deliveries}"
        view = self.stage.view(0, identity, time_ms)
        record_id = str(data.get("id", f"R{self.deliveries}"))
        verdict = self.rule.evaluate(RuleContext(record_id, dict(data), {}, "s", stores=view))
        assert isinstance(verdict, Verdict)
        return verdict

    @property
    def state(self) -> KeyedState:
        return self.stage.open(0)["r"]

    def entries(self) -> int:
        return sum(len(v) for v in self.state.store._entries.values())  # type: ignore[attr-defined]


def velocity(**params: Any) -> Harness:
    defaults = {"key": "card", "time_field": "at", "window": "10m", "max_count": 3}
    return Harness("Velocity", **{**defaults, **params})


def outcomes(verdicts: list[Verdict]) -> list[str]:
    return [v.outcome.value for v in verdicts]


# -- Velocity --------------------------------------------------------------------------------


def test_velocity_passes_up_to_max_count_and_fails_the_record_beyond_it():
    h = velocity()
    verdicts = [h.feed({"card": "C1", "at": at(m)}) for m in (0, 1, 2, 3)]

    assert outcomes(verdicts) == ["PASS", "PASS", "PASS", "FAIL"]
    last = verdicts[-1]
    assert last.message == "4 records for this key in 10m (max 3)"
    assert last.details == {
        "count": 4,
        "window": "10m",
        "threshold": 3,
        "window_start": iso(-7),
    }


def test_velocity_counts_each_key_apart():
    h = velocity()
    for m in (0, 1, 2):
        h.feed({"card": "C1", "at": at(m)})
    verdict = h.feed({"card": "C2", "at": at(3)})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details["count"] == 1


def test_velocity_slides_with_both_edges_included():
    h = velocity()
    counts = [h.feed({"card": "C1", "at": at(m)}).details["count"] for m in (0, 1, 2, 10, 11, 13)]
    # at 10 the window [0, 10] still holds 0; at 13 it is [3, 13]
    assert counts == [1, 2, 3, 4, 4, 3]


def test_velocity_with_sum_field_sums_the_window_and_fails_above_max_sum():
    h = velocity(max_count=None, sum_field="amount", max_sum=5000, window="1h")
    verdicts = [h.feed({"card": "C1", "at": at(m), "amount": a}) for m, a in ((0, 2000), (5, 2500))]
    over = h.feed({"card": "C1", "at": at(10), "amount": 1000.5})

    assert outcomes(verdicts) == ["PASS", "PASS"]
    assert over.outcome is Outcome.FAIL
    assert over.details["sum"] == 5500.5
    assert over.details["threshold"] == 5000
    assert over.message == "amount totals 5500.5 over 3 records for this key in 1h (max 5000)"


def test_velocity_skips_a_record_without_the_summed_field_and_errors_on_one_not_a_number():
    h = velocity(max_count=None, sum_field="amount", max_sum=5000)
    skipped = h.feed({"card": "C1", "at": at(0)})
    assert (skipped.outcome, skipped.message) == (Outcome.SKIP, "no amount: not counted")
    with pytest.raises(RuleEvaluationError, match=r"amount: not a number \(a str\)"):
        h.feed({"card": "C1", "at": at(1), "amount": "12.50"})
    assert h.entries() == 0  # neither was counted


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"max_count": 1000}, "max_count must be below max_entries (1000)"),
        ({"max_count": 5, "max_entries": 5}, "max_count must be below max_entries (5)"),
        ({"max_count": None}, "give max_count"),
        ({"sum_field": "amount"}, "with sum_field give max_sum"),
        ({"window": "10 minutes"}, "not a duration"),
        ({"window": "0s"}, "must be longer than 0"),
        ({"grace": "soon"}, "not a duration"),
        ({"key": []}, "name at least one field"),
    ],
)
def test_velocity_params_are_refused_where_they_are_wrong(params, error):
    base = {"key": "card", "window": "10m", "max_count": 3}
    with pytest.raises(ValidationError, match=re.escape(error)):
        RULES.get("Velocity").from_params({**base, **params})


# -- Duplicate -------------------------------------------------------------------------------


def duplicate(**params: Any) -> Harness:
    return Harness("Duplicate", **{"key": "tx", "time_field": "at", "within": "24h", **params})


def test_duplicate_fails_a_key_seen_within_the_horizon_and_names_the_earlier_record():
    h = duplicate()
    first = h.feed({"id": "A", "tx": "T1", "at": at(0)})
    again = h.feed({"id": "B", "tx": "T1", "at": at(60)})

    assert first.outcome is Outcome.PASS
    assert first.message == "not seen in the 24h before"
    assert again.outcome is Outcome.FAIL
    assert again.details == {"earlier_record_id": "A", "earlier_at": iso(0), "within": "24h"}
    assert again.message == f"duplicate of record A, seen at {iso(0)} (within 24h)"


def test_duplicate_keeps_the_first_sighting_and_passes_a_key_seen_after_the_horizon():
    h = duplicate()
    h.feed({"id": "A", "tx": "T1", "at": at(0)})
    assert h.feed({"id": "B", "tx": "T1", "at": at(20 * 60)}).outcome is Outcome.FAIL
    # 25h after A (5h after B, which did not move the first sighting): a new first sighting
    later = h.feed({"id": "C", "tx": "T1", "at": at(25 * 60)})
    assert later.outcome is Outcome.PASS
    assert later.details == {"first_at": iso(25 * 60)}
    assert h.feed({"id": "D", "tx": "T1", "at": at(26 * 60)}).details["earlier_record_id"] == "C"


def test_duplicate_passes_a_redelivery_of_the_first_delivery_and_fails_a_second_publish():
    h = duplicate()
    record = {"id": "A", "tx": "T1", "at": at(0)}
    first = h.feed(record, identity="in/0/7")
    redelivered = h.feed(record, identity="in/0/7")
    republished = h.feed(record, identity="in/0/8")

    assert (first.outcome, redelivered.outcome) == (Outcome.PASS, Outcome.PASS)
    assert redelivered.details == first.details
    assert republished.outcome is Outcome.FAIL


# -- DistinctCount ---------------------------------------------------------------------------


def distinct(**params: Any) -> Harness:
    defaults = {"key": "card", "time_field": "at", "field": "merchant", "window": "1h"}
    return Harness("DistinctCount", **{**defaults, "max_distinct": 2, **params})


def test_distinct_count_fails_when_a_key_has_more_distinct_values_than_the_max():
    h = distinct()
    verdicts = [
        h.feed({"card": "C1", "at": at(m), "merchant": merchant})
        for m, merchant in ((0, "M1"), (1, "M2"), (2, "M1"), (3, "M3"), (70, "M4"))
    ]
    assert outcomes(verdicts) == ["PASS", "PASS", "PASS", "FAIL", "PASS"]
    assert verdicts[3].message == "3 distinct merchant for this key in 1h (max 2)"
    assert verdicts[3].details["distinct"] == 3
    assert verdicts[3].details["records"] == 4
    assert verdicts[4].details["distinct"] == 1  # at 70 the window [10, 70] holds only M4


def test_distinct_count_skips_a_record_without_the_field():
    verdict = distinct().feed({"card": "C1", "at": at(0)})
    assert (verdict.outcome, verdict.message) == (Outcome.SKIP, "no merchant: not counted")


def test_distinct_count_of_a_pii_field_stores_hashes_not_values():
    h = distinct(field="email", max_distinct=5, pii=("email",))
    for m, email in ((0, "ann@example.com"), (1, "bob@example.com"), (2, "ann@example.com")):
        verdict = h.feed({"card": "C1", "at": at(m), "email": email})
    assert verdict.details["distinct"] == 2
    changes = b"".join(raw or b"" for _, raw in h.state.drain())
    assert b"example.com" not in changes
    assert b'"h:' in changes


# -- Aggregate -------------------------------------------------------------------------------

AGGREGATES = {
    "n": {"op": "count"},
    "total": {"op": "sum", "field": "amount"},
    "smallest": {"op": "min", "field": "amount"},
    "largest": {"op": "max", "field": "amount"},
    "latest": {"op": "last", "field": "amount"},
    "mean": {"op": "avg", "field": "amount"},
}


def aggregate(**params: Any) -> Harness:
    defaults = {"key": "card", "time_field": "at", "window": "1h", "aggregates": AGGREGATES}
    return Harness("Aggregate", **{**defaults, **params})


def test_aggregate_puts_its_sliding_aggregates_under_details_state_and_always_passes():
    h = aggregate()
    for m, amount in ((0, 100), (10, 40.5), (20, 300)):
        verdict = h.feed({"card": "C1", "at": at(m), "amount": amount})
    later = h.feed({"card": "C1", "at": at(65), "amount": 10})  # [5, 65]: 0 has left

    assert verdict.outcome is Outcome.PASS
    assert verdict.details["state"] == {
        "n": 3,
        "total": 440.5,
        "smallest": 40.5,
        "largest": 300,
        "latest": 300,
        "mean": pytest.approx(146.833333333),
    }
    assert verdict.details["window"] == "1h"
    assert verdict.details["kind"] == "sliding"
    assert later.details["state"]["n"] == 3
    assert later.details["state"]["total"] == 350.5
    assert later.details["window_start"] == iso(5)
    assert orjson.loads(orjson.dumps(later.details)) == later.details  # JSON numbers


def test_aggregate_state_is_null_when_there_is_nothing_to_aggregate_and_a_sum_of_nothing_is_0():
    verdict = aggregate().feed({"card": "C1", "at": at(0)})
    assert verdict.details["state"] == {
        "n": 1,
        "total": 0,
        "smallest": None,
        "largest": None,
        "latest": None,
        "mean": None,
    }


def test_a_tumbling_aggregate_starts_again_in_each_bucket_aligned_to_the_epoch():
    h = aggregate(kind="tumbling", aggregates={"n": {"op": "count"}, "total": AGGREGATES["total"]})
    first = [h.feed({"card": "C1", "at": at(m), "amount": 10}) for m in (5, 50)]
    next_bucket = h.feed({"card": "C1", "at": at(65), "amount": 7})

    assert first[-1].details["state"] == {"n": 2, "total": 20}
    assert first[-1].details["window_start"] == iso(0)
    assert next_bucket.details["state"] == {"n": 1, "total": 7}
    assert next_bucket.details["window_start"] == iso(60)
    assert next_bucket.details["kind"] == "tumbling"


def test_aggregate_names_its_state_values_and_refuses_names_cel_cannot_read():
    assert aggregate().rule.state_names() == tuple(AGGREGATES)
    for bad in ("1st", "in", "total-amount"):
        with pytest.raises(ValidationError, match="not a name CEL can read"):
            RULES.get("Aggregate").from_params(
                {"key": "card", "window": "1h", "aggregates": {bad: {"op": "count"}}}
            )
    with pytest.raises(ValidationError, match="sum needs a field"):
        RULES.get("Aggregate").from_params(
            {"key": "card", "window": "1h", "aggregates": {"t": {"op": "sum"}}}
        )


def test_aggregate_warns_that_an_aggregate_of_a_pii_field_is_in_its_details():
    h = aggregate(pii=("amount",))
    assert any(note.startswith("aggregates.total: aggregates PII field amount") for note in h.notes)


# -- every rule: redelivery, time, bounds, keys ----------------------------------------------

EVERY_RULE = {
    "velocity": lambda **extra: velocity(max_count=5, **extra),
    "duplicate": lambda **extra: duplicate(key="card", **extra),
    "distinct": lambda **extra: distinct(max_distinct=5, **extra),
    "aggregate": lambda **extra: aggregate(**extra),
}


@pytest.mark.parametrize("make", EVERY_RULE.values(), ids=EVERY_RULE.keys())
def test_a_redelivery_is_counted_once_and_gets_the_answer_it_got_first(make):
    h = make()
    record = {"card": "C1", "at": at(0), "merchant": "M1", "amount": 50}
    first = h.feed(record, identity="in/0/1")
    stored = h.state.get("C1")
    h.state.drain()
    again = h.feed(record, identity="in/0/1")

    assert (again.outcome, again.message, again.details) == (
        first.outcome,
        first.message,
        first.details,
    )
    assert h.state.get("C1") == stored
    assert [key for key, _ in h.state.drain()] == []  # nothing written


def test_a_redelivery_answers_the_window_that_ended_at_it_not_the_latest():
    h = velocity()
    h.feed({"card": "C1", "at": at(0)}, identity="in/0/1")
    h.feed({"card": "C1", "at": at(1)}, identity="in/0/2")
    assert h.feed({"card": "C1", "at": at(0)}, identity="in/0/1").details["count"] == 1
    assert h.feed({"card": "C1", "at": at(2)}, identity="in/0/3").details["count"] == 3


def test_a_record_out_of_order_within_grace_counts_at_its_own_time():
    h = velocity(grace="5m")
    h.feed({"card": "C1", "at": at(10)})
    early = h.feed({"card": "C1", "at": at(7)})

    assert "late_by_ms" not in early.details
    assert early.details["count"] == 1  # the window [-3, 7] does not hold 10
    assert early.details["window_start"] == iso(-3)
    assert h.state.late_total == 0
    assert h.feed({"card": "C1", "at": at(11)}).details["count"] == 3


@pytest.mark.parametrize("make", EVERY_RULE.values(), ids=EVERY_RULE.keys())
def test_a_record_later_than_grace_is_counted_at_the_edge_with_late_by_ms(make):
    h = make()
    h.feed({"card": "C2", "at": at(30), "merchant": "M1", "amount": 1})
    late = h.feed({"card": "C1", "at": at(5), "merchant": "M1", "amount": 1})

    assert late.outcome is Outcome.PASS
    assert late.details["late_by_ms"] == 25 * MINUTE
    assert h.state.late_total == 1
    assert h.state.clock == int((T0 + timedelta(minutes=30)).timestamp() * 1000)


def test_a_late_record_is_never_dropped_it_counts_in_the_windows_after_it():
    h = velocity(grace="1m")
    h.feed({"card": "C2", "at": at(30)})
    late = h.feed({"card": "C1", "at": at(5)})
    assert late.details["window_start"] == iso(19)  # counted at 29 = 30 - grace
    assert h.feed({"card": "C1", "at": at(31)}).details["count"] == 2


@pytest.mark.parametrize("make", EVERY_RULE.values(), ids=EVERY_RULE.keys())
def test_a_record_without_the_key_is_skipped_and_not_counted(make):
    h = make()
    for data in ({"at": at(0)}, {"card": None, "at": at(0)}, {"card": "", "at": at(0)}):
        verdict = h.feed(data)
        assert (verdict.outcome, verdict.message) == (Outcome.SKIP, "no card: not counted")
    assert len(h.state) == 0


def test_on_missing_key_fail_fails_a_record_without_the_key_naming_the_missing_field():
    h = velocity(key=["card", "merchant.id"], on_missing_key="fail")
    verdict = h.feed({"card": "C1", "merchant": {"name": "x"}, "at": at(0)})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "no merchant.id: not counted"
    ok = h.feed({"card": "C1", "merchant": {"id": 7}, "at": at(0)})
    assert ok.outcome is Outcome.PASS


@pytest.mark.parametrize("make", EVERY_RULE.values(), ids=EVERY_RULE.keys())
def test_an_event_time_that_is_no_time_is_an_error_of_the_rule(make):
    h = make()
    with pytest.raises(EventTimeError, match="at: not an event time"):
        h.feed({"card": "C1", "at": "last tuesday", "merchant": "M1", "amount": 1})
    with pytest.raises(EventTimeError, match="no at: the record has no event time"):
        h.feed({"card": "C1", "merchant": "M1", "amount": 1})
    assert len(h.state) == 0


def test_without_time_field_the_event_time_is_the_messages_kafka_timestamp():
    h = velocity(time_field=None)
    stamp = 1_793_872_800_000
    verdict = h.feed({"card": "C1"}, time_ms=stamp)
    assert verdict.details["window_start"] == iso(-10)
    assert h.state.clock == stamp


def test_a_stateful_rule_run_without_state_is_an_error_saying_it_needs_state():
    rule = RULES.get("Velocity").from_params({"key": "card", "window": "1m", "max_count": 1})
    with pytest.raises(StateUnavailableError, match="run without state"):
        rule.evaluate(RuleContext("r", {"card": "C1"}, {}))


def test_a_window_keeps_at_most_max_entries_and_says_when_it_is_saturated():
    h = velocity(max_entries=5, max_count=3)
    verdicts = [h.feed({"card": "C1", "at": at(m / 10)}) for m in range(7)]

    assert [v.details.get("saturated", False) for v in verdicts] == [False] * 5 + [True] * 2
    assert verdicts[-1].details["count"] == 5
    assert verdicts[-1].outcome is Outcome.FAIL
    assert len(h.state.get("C1")) == 5


def test_a_window_forgets_the_entries_no_later_window_can_reach():
    h = velocity()
    for m in range(5):
        h.feed({"card": "C1", "at": at(m)})
    h.feed({"card": "C1", "at": at(14)})  # the window of the stream time: [4, 14]
    assert [entry[0] for entry in h.state.get("C1")] == [
        int((T0 + timedelta(minutes=m)).timestamp() * 1000) for m in (4, 14)
    ]


@pytest.mark.parametrize("make", EVERY_RULE.values(), ids=EVERY_RULE.keys())
def test_a_key_expires_once_stream_time_passes_its_window_and_grace(make):
    h = make()
    h.feed({"card": "C1", "at": at(0), "merchant": "M1", "amount": 1})
    horizon = getattr(h.rule, "window_ms", getattr(h.rule, "within_ms", 0)) / MINUTE
    h.feed({"card": "C2", "at": at(horizon), "merchant": "M1", "amount": 1})
    assert h.state.sweep() == 0  # the window still reaches C1's edge
    h.feed({"card": "C2", "at": at(horizon + 0.001), "merchant": "M1", "amount": 1})
    assert h.state.sweep() == 1
    assert h.state.get("C1") is None
    assert h.state.get("C2") is not None


@pytest.mark.parametrize("make", EVERY_RULE.values(), ids=EVERY_RULE.keys())
def test_a_pii_key_is_hashed_in_the_store_and_never_in_messages_or_details(make):
    secret = "4111-1111-1111-1111"
    h = make(pii=("card",))
    verdicts = [
        h.feed({"card": secret, "at": at(m), "merchant": f"M{m}", "amount": 1, "id": f"X{m}"})
        for m in range(3)
    ]
    text = orjson.dumps([[v.message, v.details] for v in verdicts])
    assert secret.encode() not in text
    assert "1111" not in text.decode()
    keys = [key for key, _ in h.state.drain() if not key.startswith("\x00")]
    assert keys
    assert all(key.startswith("h:") for key in keys)


# -- in a compiled pipeline ------------------------------------------------------------------


def test_the_compiler_binds_each_stateful_rule_to_its_compiled_store_spec(tmp_path: Path):
    config = {
        "pipeline": "cards",
        "input": {"key_field": "tx"},
        "pii_fields": ["card"],
        "stages": {
            "screening": {
                "rules": {
                    "seen": {"class": "Duplicate", "params": {"key": "tx", "within": "24h"}},
                }
            },
            "velocity": {
                "rules": {
                    "burst": {
                        "class": "Velocity",
                        "params": {"key": "card", "window": "10m", "max_count": 3},
                    }
                }
            },
        },
    }
    path = tmp_path / "cards.yaml"
    path.write_text(yaml.safe_dump(config))
    plan = load_pipeline(path).plan
    [seen] = plan.stage("screening").rules
    [burst] = plan.stage("velocity").rules

    assert seen.rule.store_spec == plan.stage("screening").stores[0]
    assert burst.rule.store_spec is plan.stage("velocity").stores[0]
    assert burst.rule.store_spec.hashed
    assert not seen.rule.store_spec.hashed
