"""Metrics after a known set of records hold exactly the expected values, and a running
worker serves them with /health and /ready."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.error
import urllib.request
from collections import Counter

from broker_fixtures import ensure_topics
from harness import CONFIGS, WorkerProcess, offline_decisions, read_outcomes, samples
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_engine.runtime.cluster.topics import pipeline_topics


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from Prometheus text format."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def series(values, name: str, **match: str) -> dict[tuple, float]:
    return {
        labels: v
        for (n, labels), v in values.items()
        if n == name and all(dict(labels).get(k) == want for k, want in match.items())
    }


def with_numeric_zip(record: dict) -> dict:
    """A complete application whose zip code is a number: the address service errors and
    normalize_address (on_error: skip) records ERROR."""
    return record | {"application_id": record["application_id"] + "-NZ", "zip_code": 14202}


async def test_counters_hold_exactly_what_the_records_did(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline()
    decided = await offline_decisions(make_pipeline(), samples())
    approved = next(r for r in samples() if decided[r["application_id"]]["status"] == "approved")
    records = [*samples(), with_numeric_zip(approved)]
    expected = await offline_decisions(make_pipeline(), records)
    worker = await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many(records)
    await read_outcomes(kafka, pipeline_topics(pipeline), len(records))
    values = scrape(generate_latest(worker.registry).decode())

    name = pipeline.plan.name
    want_rules: Counter = Counter()
    want_cost: Counter = Counter()
    for decision in expected.values():
        for rule, result in decision["results"].items():
            want_rules[(result["stage"], rule, result["outcome"])] += 1
            want_cost[(result["stage"], rule)] += result["cost"]
    got_rules = {
        (d["stage"], d["rule"], d["outcome"]): v
        for labels, v in series(values, "stream_engine_rule_evaluations_total").items()
        for d in [dict(labels)]
        if d["pipeline"] == name
    }
    assert got_rules == dict(want_rules)
    assert {o for _, _, o in got_rules} == {"PASS", "FAIL", "SKIP", "ERROR"}

    statuses = Counter(d["status"] for d in expected.values())
    got_status = {
        dict(labels)["status"]: v
        for labels, v in series(values, "stream_engine_decisions_total", pipeline=name).items()
    }
    assert got_status == dict(statuses)
    latency = series(values, "stream_engine_decision_latency_seconds_count", pipeline=name)
    assert sum(latency.values()) == sum(v for s, v in statuses.items() if s != "dead_letter")

    got_cost = series(values, "stream_engine_cost_total", pipeline=name)
    assert {(dict(k)["stage"], dict(k)["rule"]) for k in got_cost} == {
        k for k, v in want_cost.items() if v
    }
    for labels, value in got_cost.items():
        d = dict(labels)
        assert abs(value - want_cost[(d["stage"], d["rule"])]) < 1e-6

    first = pipeline.plan.active_stages[0].name
    entered = series(values, "stream_engine_stage_records_total", pipeline=name, stage=first)
    assert sum(entered.values()) == len(records)
    calls = series(values, "stream_engine_service_calls_total", service="kyc", outcome="ok")
    compliance = sum(1 for d in expected.values() if "kyc_identity_verification" in d["results"])
    kyc_evaluated = sum(
        1
        for d in expected.values()
        if d["results"].get("kyc_identity_verification", {}).get("outcome") != "SKIP"
        and "kyc_identity_verification" in d["results"]
    )
    assert compliance >= kyc_evaluated
    assert sum(calls.values()) == kyc_evaluated
    assert series(
        values, "stream_engine_config_info", pipeline=name, hash=pipeline.plan.config_hash
    )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_a_running_worker_serves_metrics_health_and_readiness(
    make_pipeline, kafka, client_for, worker_process, driver
):
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    worker = worker_process(pipeline.effective.path)
    await asyncio.to_thread(worker.wait_ready)
    url = re.search(r"metrics: (http://\S+)/metrics", worker.log.read_text()).group(1)
    client = await client_for(pipeline)

    health = await asyncio.to_thread(get, url + "/health")
    await client.publish_many(samples()[:50])
    await read_outcomes(kafka, pipeline_topics(pipeline), 50)
    ready = await _until(lambda: get(url + "/ready")[0] == 200)
    lag_known = await _until(lambda: "stream_engine_consumer_lag{" in get(url + "/metrics")[1])
    status, text = await asyncio.to_thread(get, url + "/metrics")

    assert health[0] == 200
    assert ready
    assert lag_known
    assert status == 200
    values = scrape(text)
    assert series(values, "stream_engine_rule_evaluations_total", outcome="PASS")
    assert series(values, "stream_engine_consumer_lag")
    faust_metrics = any(name.startswith("faust_") for name, _ in values)
    assert faust_metrics == (driver == "faust"), "faust's own sensor metrics, with faust only"


async def _until(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return True
        await asyncio.sleep(0.2)
    return False


async def test_dev_demo_starts_a_broker_decides_sample_records_and_stops_on_sigint(tmp_path):
    config = str(CONFIGS / "customer_onboarding.yaml")
    args = ["dev", config, "--port", "0", "--metrics-port", "0", "--demo", "--rate", "200"]
    dev = WorkerProcess(args, tmp_path / "dev.log", ready_marker=b"metrics: http")
    try:
        await asyncio.to_thread(dev.wait_ready)
        text = dev.log.read_text()
        url = re.search(r"metrics: (http://\S+)/metrics", text).group(1)

        def decided() -> bool:
            values = scrape(get(url + "/metrics")[1])
            return sum(series(values, "stream_engine_decisions_total").values()) >= 50

        flowing = await _until(decided, 60)
        dev.signal(signal.SIGINT)
        code = await asyncio.to_thread(dev.wait, 60)
    finally:
        dev.kill()

    assert re.search(r"^broker: 127\.0\.0\.1:\d+$", text, re.M)
    assert flowing, dev.log.read_text()
    assert code == 0, dev.log.read_text()
