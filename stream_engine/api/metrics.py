"""The API process's metrics (prefix ``stream_engine_api_``), in a registry of its own served
on the API's ``/metrics``. Labels are bounded: the route template, the status code, the key id
(configured ids only) - never a record id or a key."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_engine.runtime.observe.metrics import PREFIX

API = PREFIX + "api_"
#: Request durations: decide calls wait for the pipeline, so up to tens of seconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)  # fmt: skip


class ApiMetrics:
    """Counters, histograms and gauges of one API process."""

    def __init__(self, pending: Callable[[], int], view_size: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            API + "requests", "HTTP requests answered, by route, status code and key id",
            ["route", "code", "key"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            API + "request_duration_seconds", "Time from request to response, by route",
            ["route"], buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.records = Counter(
            API + "records_published", "Records published to the input topic, by route",
            ["route"], registry=r,
        )  # fmt: skip
        self.timeouts = Counter(
            API + "decide_timeouts", "Decide calls answered 202 because the decision came late",
            registry=r,
        )  # fmt: skip
        self.refused = Counter(
            API + "refused_messages",
            "Output messages left out: not signed by the pipeline's workers, or not a decision",
            ["topic"], registry=r,
        )  # fmt: skip
        pending_gauge = Gauge(
            API + "pending_decides", "Decide calls waiting for their decision", registry=r
        )
        pending_gauge.set_function(pending)
        view_gauge = Gauge(
            API + "view_decisions", "Decisions kept for GET /v1/decisions/{id}", registry=r
        )
        view_gauge.set_function(view_size)
