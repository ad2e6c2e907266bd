"""The API's metrics: the names it lists are the ones it exports, each labelled by pipeline."""

from __future__ import annotations

from prometheus_client import generate_latest

from stream_engine.api.metrics import API_METRIC_NAMES, ApiMetrics


def exported(metrics: ApiMetrics) -> set[str]:
    names = set()
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_the_listed_api_metric_names_are_exactly_the_exported_ones() -> None:
    metrics = ApiMetrics("p", lambda: 3, lambda: 7)
    metrics.answered("/v1/decide", 200, "anonymous", 0.01)
    metrics.published("/v1/decide", 2)
    metrics.timed_out()
    metrics.refused("p.decisions")
    assert exported(metrics) == set(API_METRIC_NAMES)


def test_every_api_series_carries_the_pipeline_and_never_a_record_id() -> None:
    metrics = ApiMetrics("onboarding", lambda: 3, lambda: 7)
    metrics.answered("/v1/decisions/{record_id}", 404, "web", 0.001)
    text = generate_latest(metrics.registry).decode()
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert series
    assert all('pipeline="onboarding"' in line for line in series)
    assert 'stream_engine_api_pending_decides{pipeline="onboarding"} 3.0' in series
    assert 'route="/v1/decisions/{record_id}"' in text
