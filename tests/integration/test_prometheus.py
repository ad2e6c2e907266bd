"""A real Prometheus server (Debian's ``prometheus`` package) scrapes running workers and an
API process (``serve``), and every PromQL expression of the Grafana dashboard returns at least
one series through its HTTP API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from api_helpers import ApiProcess
from broker_fixtures import ensure_topics
from harness import read_outcomes, samples

from stream_engine.runtime.cluster.broker import free_port
from stream_engine.runtime.cluster.topics import pipeline_topics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "stream_engine.json"
REQUIRED = "STREAM_ENGINE_REQUIRE_PROMETHEUS"


@pytest.fixture
def prometheus_binary() -> str:
    """The prometheus executable; CI installs it (apt), elsewhere the test is skipped."""
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get(REQUIRED):
            pytest.fail("prometheus is not installed: apt-get install prometheus")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return found


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard (panels and template variables), with the
    variables set to match everything."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", text or "")
        if match:
            exprs.append(match.group(1))
    return [e.replace("$pipeline", ".*").replace("$stage", ".*") for e in exprs]


def api(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def test_every_dashboard_query_returns_series_from_a_real_prometheus(
    prometheus_binary, make_pipeline, kafka, broker, client_for, worker_process, tmp_path
):
    onboarding = make_pipeline(
        api__anonymous=True,
        services__kyc__params__fail_rate=0.3,
        services__kyc__retry={"attempts": 1},
        services__kyc__circuit_breaker={"failure_threshold": 1000, "reset_timeout_s": 1},
        stages__compliance__rules__kyc_identity_verification__retry={
            "attempts": 3,
            "backoff_s": 0.001,
            "retry_on": ["service_error"],
        },
    )
    leads = make_pipeline("lead_enrichment")
    targets = []
    for pipeline in (onboarding, leads):
        await ensure_topics(pipeline, kafka)
        worker = worker_process(pipeline.effective.path)
        await asyncio.to_thread(worker.wait_ready)
        url = re.search(r"metrics: http://([^/\s]+)/metrics", worker.log.read_text()).group(1)
        targets.append(url)
    api = ApiProcess.serve(onboarding.effective.path, broker, log=tmp_path / "api.log")
    api_url = await asyncio.to_thread(api.wait_listening)
    targets.append(api_url.removeprefix("http://"))
    server, port = await asyncio.to_thread(start_prometheus, prometheus_binary, targets, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(_decide_once, api_url, samples("customer_onboarding")[0])
        for pipeline, base_name in (
            (onboarding, "customer_onboarding"),
            (leads, "lead_enrichment"),
        ):
            client = await client_for(pipeline)
            records = samples(base_name)
            await client.publish_many([*records, b"\xff not json"])
            await read_outcomes(kafka, pipeline_topics(pipeline), len(records) + 1, 120)
        missing = await asyncio.to_thread(_until_every_query_has_series, base, 90)
    finally:
        api.kill()
        server.terminate()
        server.wait(timeout=30)

    assert missing == [], f"queries without a series: {missing}"


def _decide_once(url: str, record: dict) -> None:
    """One decide call, so the API's request series exist (retried until it is ready)."""
    deadline = time.monotonic() + 60
    body = json.dumps(record).encode()
    while True:
        request = urllib.request.Request(f"{url}/v1/decide", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status in (200, 202):
                    return
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def start_prometheus(
    binary: str, targets: list[str], workdir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Prometheus on a free loopback port, scraping ``targets`` every second."""
    port = free_port()
    config = workdir / "prometheus.yml"
    scrape = {"job_name": "stream-engine", "static_configs": [{"targets": targets}]}
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [scrape],
            }
        )
    )
    with open(workdir / "prometheus.log", "wb") as log:
        server = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'db'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )  # fmt: skip
    return server, port


def _until_every_query_has_series(base: str, timeout_s: float) -> list[str]:
    """Queries that still return nothing when the deadline passes ([] once all do)."""
    queries = dashboard_queries()
    assert len(queries) >= 15
    deadline = time.monotonic() + timeout_s
    missing = queries
    while time.monotonic() < deadline:
        try:
            missing = [
                q for q in queries if not api(base, "/api/v1/query", query=q)["data"]["result"]
            ]
        except OSError:
            missing = queries  # not listening yet
        if not missing:
            return []
        time.sleep(1.0)
    return missing
