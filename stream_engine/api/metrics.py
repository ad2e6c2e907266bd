"""The API process's metrics (prefix ``stream_engine_api_``), in a registry of its own served
on the API's ``/metrics``. Labels are bounded: the pipeline, the route template, the status
code, the key id (configured ids only) - never a record id or a key."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_engine.runtime.observe.metrics import PREFIX

API = PREFIX + "api_"
#: Request durations: decide calls wait for the pipeline, so up to tens of seconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)  # fmt: skip
#: Every metric the API exports, by its exposed name (counters with ``_total``).
API_METRIC_NAMES = tuple(
    API + name
    for name in (
        "requests_total", "request_duration_seconds", "records_published_total",
        "decide_timeouts_total", "refused_messages_total", "pending_decides", "view_decisions",
    )
)  # fmt: skip


class ApiMetrics:
    """Counters, histograms and gauges of one API process, every one labelled by pipeline."""

    def __init__(
        self, pipeline: str, pending: Callable[[], int], view_size: Callable[[], int]
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pipeline = pipeline
        self._requests = Counter(
            API + "requests", "HTTP requests answered, by route, status code and key id",
            ["pipeline", "route", "code", "key"], registry=r,
        )  # fmt: skip
        self._duration = Histogram(
            API + "request_duration_seconds", "Time from request to response, by route",
            ["pipeline", "route"], buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self._records = Counter(
            API + "records_published", "Records published to the input topic, by route",
            ["pipeline", "route"], registry=r,
        )  # fmt: skip
        self._timeouts = Counter(
            API + "decide_timeouts", "Decide calls answered 202 because the decision came late",
            ["pipeline"], registry=r,
        )  # fmt: skip
        self._refused = Counter(
            API + "refused_messages",
            "Output messages left out: not signed by the pipeline's workers, or not a decision",
            ["pipeline", "topic"], registry=r,
        )  # fmt: skip
        Gauge(
            API + "pending_decides", "Decide calls waiting for their decision", ["pipeline"],
            registry=r,
        ).labels(pipeline).set_function(pending)  # fmt: skip
        Gauge(
            API + "view_decisions", "Decisions kept for GET /v1/decisions/{id}", ["pipeline"],
            registry=r,
        ).labels(pipeline).set_function(view_size)  # fmt: skip

    def answered(self, route: str, code: int, key_id: str, seconds: float) -> None:
        """Count and time one answered request."""
        self._requests.labels(self.pipeline, route, str(code), key_id).inc()
        self._duration.labels(self.pipeline, route).observe(seconds)

    def published(self, route: str, count: int) -> None:
        """Count records published by one request."""
        self._records.labels(self.pipeline, route).inc(count)

    def timed_out(self) -> None:
        """Count a decide call answered 202."""
        self._timeouts.labels(self.pipeline).inc()

    def refused(self, topic: str) -> None:
        """Count an output message left out of the view."""
        self._refused.labels(self.pipeline, topic).inc()
