"""Every stream_engine metric (docs/ARCHITECTURE.md, prefix ``stream_engine_``), in one place.

The hot path only adds to plain dictionaries, once per batch; prometheus-client reads them
when scraped, through a custom collector. That keeps locks and per-observation calls out of
the per-record path. Label values are bounded: pipeline, stage, rule, outcome, route, status,
reason, service, topic, partition - never a record id."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from stream_engine.core.breaker import BreakerState
from stream_engine.core.decision import Decision, StageOutcome
from stream_engine.core.outcome import Status
from stream_engine.core.state import DeadLetter
from stream_engine.runtime.state.figures import StoreFigures

PREFIX = "stream_engine_"

Labels = tuple[str, ...]

FAST_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
                0.1, 0.5, 1.0, 5.0)  # fmt: skip
SLOW_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0)  # fmt: skip

#: Restoring a partition's stores takes from milliseconds to many minutes.
RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                   600.0)  # fmt: skip

BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric: its name (without prefix and ``_total``), kind, labels and help."""

    name: str
    kind: str  # counter | gauge | histogram
    labels: Labels
    help: str
    buckets: tuple[float, ...] = ()


#: The labels of a store's metrics: its stateful rule is its name.
STORE: Labels = ("pipeline", "stage", "rule")

SPECS: tuple[Spec, ...] = (
    Spec("rule_evaluations", "counter", ("pipeline", "stage", "rule", "outcome"),
         "Rule evaluations by outcome (PASS, FAIL, SKIP, ERROR)"),
    Spec("rule_duration_seconds", "histogram", ("pipeline", "stage", "rule"),
         "Time one rule evaluation took, retries included", FAST_BUCKETS),
    Spec("stage_records", "counter", ("pipeline", "stage", "route"),
         "Records a stage handled, by the route it chose"),
    Spec("stage_batch_duration_seconds", "histogram", ("pipeline", "stage"),
         "Time a stage took for one batch: decode, rules, produce and acknowledgements",
         SLOW_BUCKETS),
    Spec("decisions", "counter", ("pipeline", "status"), "Final decisions by status"),
    Spec("decision_latency_seconds", "histogram", ("pipeline", "status"),
         "From the input message's timestamp to the decision", SLOW_BUCKETS),
    Spec("dead_letters", "counter", ("pipeline", "stage", "reason"), "Dead letters by reason"),
    Spec("retries", "counter", ("pipeline", "stage", "rule"), "Rule attempts beyond the first"),
    Spec("service_calls", "counter", ("service", "outcome"),
         "Service call attempts: ok, timeout, service_error, client_error, circuit_open"),
    Spec("circuit_breaker_state", "gauge", ("service",),
         "Circuit breaker state: 0 closed, 1 half-open, 2 open"),
    Spec("cost", "counter", ("pipeline", "stage", "rule"), "Cost charged by rule evaluations"),
    Spec("budget_exceeded", "counter", ("pipeline",), "Records stopped by their cost budget"),
    Spec("consumer_lag", "gauge", ("topic", "partition"),
         "Messages between the consumer's position and the partition's end offset"),
    Spec("config_info", "gauge", ("pipeline", "version", "hash", "envelope_auth"),
         "The running pipeline configuration (value 1); envelope_auth is on or off"),
    Spec("poison_records", "counter", ("pipeline", "stage"),
         "Records dead-lettered after an internal error on every attempt"),
    Spec("config_mixed_decisions", "counter", ("pipeline",),
         "Decisions whose stages ran under different configurations (a rollout)"),
    Spec("state_entries", "gauge", STORE,
         "Keys a stateful rule's store holds, summed over this worker's partitions"),
    Spec("state_expired_entries", "counter", STORE,
         "Store entries removed because stream time passed their expiry"),
    Spec("state_late_records", "counter", STORE,
         "Records a stateful rule saw later than its partition's stream time allows"),
    Spec("state_restore_lag", "gauge", STORE,
         "Changelog messages to read when each partition's store last began restoring, summed"),
    Spec("state_restore_duration_seconds", "histogram", STORE,
         "Time to restore one partition of a store from its changelog", RESTORE_BUCKETS),
    Spec("state_restore_rejected", "counter", STORE,
         "Changelog values skipped while restoring: not sealed by a pipeline key, or malformed"),
    Spec("state_restoring_partitions", "gauge", ("pipeline", "stage"),
         "Assigned partitions of a stage whose stores are still being restored"),
)  # fmt: skip

#: Metric names as Prometheus shows them (counters end in ``_total``).
METRIC_NAMES: tuple[str, ...] = tuple(
    PREFIX + s.name + ("_total" if s.kind == "counter" else "") for s in SPECS
)


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value


class Metrics(Collector):
    """The process's metrics: counters, gauges and histograms keyed by label tuples."""

    def __init__(self) -> None:
        self.specs = {s.name: s for s in SPECS}
        self.values: dict[str, defaultdict[Labels, float]] = {
            s.name: defaultdict(float) for s in SPECS if s.kind != "histogram"
        }
        self.histograms: dict[str, dict[Labels, _Histogram]] = {
            s.name: {} for s in SPECS if s.kind == "histogram"
        }

    # -- recording ------------------------------------------------------------------------

    def inc(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        """Add to a counter."""
        self.values[name][labels] += amount

    def set(self, name: str, labels: Labels, value: float) -> None:
        """Set a gauge."""
        self.values[name][labels] = value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        """Add an observation to a histogram."""
        series = self.histograms[name]
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = _Histogram(self.specs[name].buckets)
        histogram.observe(value)

    def config(self, pipeline: str, version: str, config_hash: str, auth: bool = True) -> None:
        """Which configuration this process runs, and whether it authenticates envelopes."""
        self.set("config_info", (pipeline, version, config_hash, "on" if auth else "off"), 1.0)

    def stage_batch(
        self,
        pipeline: str,
        stage: str,
        outcomes: Iterable[StageOutcome],
        decisions: Iterable[Decision],
        dead_letters: Iterable[DeadLetter],
        elapsed_s: float,
        poison: int = 0,
    ) -> None:
        """Everything one batch of one stage did."""
        evaluations = self.values["rule_evaluations"]
        retries = self.values["retries"]
        cost = self.values["cost"]
        routes = self.values["stage_records"]
        durations = self.histograms["rule_duration_seconds"]
        budget = 0
        for outcome in outcomes:
            routes[(pipeline, stage, outcome.route.value)] += 1
            budget += outcome.budget_exceeded
            for rule, result in outcome.results:
                evaluations[(pipeline, stage, rule, result.outcome.value)] += 1
                if result.attempts > 1:
                    retries[(pipeline, stage, rule)] += result.attempts - 1
                if result.cost:
                    cost[(pipeline, stage, rule)] += result.cost
                if result.attempts:
                    key = (pipeline, stage, rule)
                    histogram = durations.get(key)
                    if histogram is None:
                        histogram = durations[key] = _Histogram(FAST_BUCKETS)
                    histogram.observe(result.duration_ms / 1000.0)
        if budget:
            self.inc("budget_exceeded", (pipeline,), budget)
        for decision in decisions:
            status = decision.status.value
            self.inc("decisions", (pipeline, status))
            if decision.foreign_configs:
                self.inc("config_mixed_decisions", (pipeline,))
            self.observe("decision_latency_seconds", (pipeline, status), decision.latency_ms / 1e3)
        for letter in dead_letters:
            self.inc("dead_letters", (pipeline, letter.stage or stage, letter.reason.value))
            self.inc("decisions", (pipeline, Status.DEAD_LETTER.value))
        if poison:
            self.inc("poison_records", (pipeline, stage), poison)
        self.observe("stage_batch_duration_seconds", (pipeline, stage), elapsed_s)

    def stage_started(self, pipeline: str, stage: str) -> None:
        """Series a stage exports from its start, at 0, so a rate over them means something
        before the first event (rare ones: poison records)."""
        self.values["poison_records"][(pipeline, stage)] += 0.0
        self.values["config_mixed_decisions"][(pipeline,)] += 0.0

    def state(self, pipeline: str, stage: str, figures: Iterable[StoreFigures],
              restoring: int) -> None:  # fmt: skip
        """A stage's stores as they are now (the counters are totals since start)."""
        for figure in figures:
            labels = (pipeline, stage, figure.store)
            self.set("state_entries", labels, figure.entries)
            self.set("state_expired_entries", labels, figure.expired)
            self.set("state_late_records", labels, figure.late)
            self.set("state_restore_lag", labels, figure.restore_lag)
            self.set("state_restore_rejected", labels, figure.rejected)
        self.set("state_restoring_partitions", (pipeline, stage), restoring)

    def restored(self, pipeline: str, stage: str, seconds: Mapping[str, float]) -> None:
        """One partition restored: how long each store took."""
        for store, elapsed in seconds.items():
            self.observe("state_restore_duration_seconds", (pipeline, stage, store), elapsed)

    def service_call(self, service: str, outcome: str) -> None:
        """A ``CallObserver`` for ``GuardedService``."""
        self.values["service_calls"][(service, outcome)] += 1

    def breaker(self, service: str, state: BreakerState) -> None:
        """A breaker listener: the state as 0 / 1 / 2."""
        self.set("circuit_breaker_state", (service,), BREAKER_VALUE[state])

    def lag(self, topic: str, partition: int, lag: float) -> None:
        """Consumer lag of one assigned partition."""
        self.set("consumer_lag", (topic, str(partition)), max(lag, 0.0))

    def forget_lag(self, keep: Sequence[tuple[str, int]]) -> None:
        """Drop the lag of partitions this process no longer owns."""
        kept = {(t, str(p)) for t, p in keep}
        series = self.values["consumer_lag"]
        for labels in [k for k in series if k not in kept]:
            del series[labels]

    # -- exposition -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """prometheus-client reads the current values here on every scrape."""
        for spec in SPECS:
            name = PREFIX + spec.name
            labels = list(spec.labels)
            family: Metric
            if spec.kind == "histogram":
                family = HistogramMetricFamily(name, spec.help, labels=labels)
                for key, hist in list(self.histograms[spec.name].items()):
                    if not hist.counts:
                        continue
                    running, buckets = 0, []
                    for bound, count in zip(
                        (*spec.buckets, float("inf")), hist.counts, strict=True
                    ):
                        running += count
                        buckets.append((_bound(bound), running))
                    family.add_metric(list(key), buckets, hist.total)
            elif spec.kind == "counter":
                family = CounterMetricFamily(name, spec.help, labels=labels)
                for key, value in list(self.values[spec.name].items()):
                    family.add_metric(list(key), value)
            else:
                family = GaugeMetricFamily(name, spec.help, labels=labels)
                for key, value in list(self.values[spec.name].items()):
                    family.add_metric(list(key), value)
            yield family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def new_registry(metrics: Metrics) -> CollectorRegistry:
    """A registry holding ``metrics`` (and, added by the runtime, faust's own sensors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return registry


__all__ = ["METRIC_NAMES", "SPECS", "Metrics", "new_registry"]
