"""The API's security through real HTTP against a real API process on a real broker: keys and
scopes (401, 403), rates (429 with ``Retry-After``), nothing published for a refused request,
TLS, CORS only when configured, and logs that never hold a record's values, its id or a key.

One pipeline's topics and one in-process worker serve the module; API processes are started
on them with different ``api:`` sections (the same pipeline name, so the same topics)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from broker_fixtures import CONFIGS, FAST_RUNTIME, copy_beside, ensure_topics
from harness import samples

from stream_engine.api.security import key_hash, new_key
from stream_engine.api.server import ApiServer
from stream_engine.config.compiled import CompiledPipeline
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.settings import KafkaSettings, connected
from stream_engine.runtime.cluster.topics import describe_topics, pipeline_topics
from stream_engine.runtime.worker import StageWorker

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORIGIN = "https://app.example"
KEYS = {name: new_key() for name in ("decider", "reader", "limited", "trickle")}
ENTRIES = [
    {"id": "decider", "hash": key_hash(KEYS["decider"]), "scopes": ["decide", "read"]},
    {"id": "reader", "hash": key_hash(KEYS["reader"]), "scopes": ["read"]},
    # 2 a second, no burst: a second request at once waits 0.5 s, said as Retry-After: 1.
    {
        "id": "limited",
        "hash": key_hash(KEYS["limited"]),
        "scopes": ["read"],
        "rate_per_s": 2,
        "burst": 1,
    },
    # One request, then none for 100 s.
    {"id": "trickle", "hash": key_hash(KEYS["trickle"]), "scopes": ["submit"], "rate_per_s": 0.01},
]
CORS = {"origins": [ORIGIN], "max_age_s": 300}


@dataclass
class Deployment:
    """The module's pipeline on the broker: its directory, its worker, the API with CORS."""

    name: str
    directory: Path
    kafka: KafkaSettings
    pipeline: CompiledPipeline
    api: ApiServer

    def variant(self, label: str, api: dict[str, Any]) -> CompiledPipeline:
        """The same pipeline (same topics) with another ``api:`` section."""
        return write_pipeline(self.directory, self.name, self.kafka, label, api)


def write_pipeline(
    directory: Path, name: str, kafka: KafkaSettings, label: str, api: dict[str, Any]
) -> CompiledPipeline:
    source = CONFIGS / "customer_onboarding.yaml"
    data = yaml.safe_load(source.read_text())
    data["pipeline"] = name
    data["samples"] = copy_beside(source.parent / data["samples"], directory, name)
    data["topics"]["file"] = copy_beside(source.parent / data["topics"]["file"], directory, name)
    data["kafka"] = {"bootstrap_servers": kafka.bootstrap_servers}
    data.setdefault("runtime", {}).update(FAST_RUNTIME, driver="batch")
    data["api"] = api
    path = directory / f"{name}.{label}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_pipeline(path)


@contextlib.asynccontextmanager
async def serving(pipeline: CompiledPipeline, kafka: KafkaSettings) -> AsyncIterator[ApiServer]:
    """An API process on a free port, ready (its view rebuilt) before the block."""
    server = ApiServer(pipeline, kafka, host="127.0.0.1", port=0)
    await server.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20.0
        while server.unready() is not None:
            assert loop.time() < deadline, server.unready()
            await asyncio.sleep(0.05)
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployment(
    broker: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    directory = tmp_path_factory.mktemp("api_security")
    name = f"apisec_{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=broker)
    pipeline = write_pipeline(directory, name, kafka, "cors", {"keys": ENTRIES, "cors": CORS})
    await ensure_topics(pipeline, kafka)
    worker = StageWorker(pipeline, kafka)
    await worker.start()
    try:
        async with serving(pipeline, kafka) as api:
            yield Deployment(name, directory, kafka, pipeline, api)
    finally:
        await worker.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def input_ends(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic`` (its partitions from the cluster: a
    consumer's own metadata need not know a topic created a moment ago)."""
    count = (await describe_topics([topic], kafka))[topic]
    assert count, f"{topic} has no partitions"
    partitions = [TopicPartition(topic, p) for p in range(count)]
    consumer = AIOKafkaConsumer(**kafka.consumer(group_id=None, enable_auto_commit=False))
    async with connected(consumer, kafka):
        ends = await consumer.end_offsets(partitions)
    return {tp.partition: offset for tp, offset in ends.items()}


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name]}


def a_record(application_id: str) -> dict[str, Any]:
    record = dict(samples()[1])
    record["application_id"] = application_id
    return record


async def test_no_key_a_wrong_key_and_a_malformed_authorization_are_401_with_www_authenticate(
    deployment: Deployment, http: aiohttp.ClientSession
):
    url = deployment.api.url + "/v1/decide"
    body = orjson.dumps(a_record("APP-401"))
    attempts: list[dict[str, str]] = [
        {},
        {"X-API-Key": new_key()},
        {"Authorization": f"Bearer {new_key()}"},
        {"Authorization": f"Basic {KEYS['decider']}"},
    ]

    for headers in attempts:
        async with http.post(url, data=body, headers=headers) as response:
            problem = await response.json(content_type=None)
            assert response.status == 401, headers
            assert response.content_type == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="stream-engine"')
            assert problem["status"] == 401
            assert problem["instance"] == "/v1/decide"


async def test_a_key_without_the_scope_is_403_on_each_endpoint_it_lacks(
    deployment: Deployment, http: aiohttp.ClientSession
):
    base = deployment.api.url
    body = orjson.dumps(a_record("APP-403"))

    async with http.post(base + "/v1/decide", data=body, headers=key("reader")) as decide:
        problem = await decide.json(content_type=None)
    async with http.post(base + "/v1/records", data=body, headers=key("decider")) as submit:
        assert submit.status == 403
    async with http.get(base + "/v1/decisions/APP-403", headers=key("trickle")) as read:
        assert read.status == 403

    assert decide.status == 403
    assert "'reader' lacks the 'decide' scope" in problem["detail"]
    assert KEYS["reader"] not in problem["detail"]


async def test_over_its_rate_a_key_is_429_with_retry_after_in_seconds_then_served_after_it(
    deployment: Deployment, http: aiohttp.ClientSession
):
    url = deployment.api.url + "/v1/decisions/APP-RATE"
    async with http.get(url, headers=key("limited")) as first:
        assert first.status == 404  # served: the record is not known

    async with http.get(url, headers=key("limited")) as limited:
        problem = await limited.json(content_type=None)
        retry_after = limited.headers.get("Retry-After", "")

    assert limited.status == 429, problem
    assert retry_after.isdigit()
    assert int(retry_after) == 1
    assert problem["retry_after_s"] == 1
    await asyncio.sleep(int(retry_after))  # what the server said to wait
    async with http.get(url, headers=key("limited")) as again:
        assert again.status == 404


async def test_a_refused_request_publishes_nothing_to_the_input_topic(
    deployment: Deployment, http: aiohttp.ClientSession
):
    base = deployment.api.url
    topic = pipeline_topics(deployment.pipeline).input
    before = await input_ends(deployment.kafka, topic)
    body = orjson.dumps(a_record("APP-REFUSED"))
    refusals = [
        ("/v1/decide", b"", {}, 401),
        ("/v1/decide", body, {"X-API-Key": new_key()}, 401),
        ("/v1/records", body, {"Authorization": "Token abc"}, 401),
        ("/v1/decide", body, key("reader"), 403),
        ("/v1/records", body, key("reader"), 403),
        ("/v1/records", b"{not json", key("trickle"), 400),  # spends trickle's one token
        ("/v1/records", body, key("trickle"), 429),
    ]
    statuses = []
    for path, data, headers, _ in refusals:
        async with http.post(base + path, data=data, headers=headers) as response:
            statuses.append(response.status)

    assert statuses == [status for *_, status in refusals]
    assert await input_ends(deployment.kafka, topic) == before


async def test_a_scoped_key_gets_its_decision_through_the_running_stages(
    deployment: Deployment, http: aiohttp.ClientSession
):
    base = deployment.api.url
    record = a_record("APP-HAPPY-1")

    async with http.post(
        base + "/v1/decide?timeout_ms=20000", data=orjson.dumps(record), headers=key("decider")
    ) as response:
        decision = await response.json()
    async with http.get(
        base + "/v1/decisions/APP-HAPPY-1",
        headers={"Authorization": f"Bearer {KEYS['decider']}"},
    ) as lookup:
        found = await lookup.json()

    assert response.status == 200, decision
    assert decision["record_id"] == "APP-HAPPY-1"
    assert decision["status"] in ("approved", "rejected", "review", "completed")
    assert lookup.status == 200
    assert found["record_id"] == "APP-HAPPY-1"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (the test's CA), and that key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stream-engine test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert_file, key_file = directory / "api.crt", directory / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_with_tls_https_answers_to_a_client_trusting_the_ca_and_plain_http_fails(
    deployment: Deployment, http: aiohttp.ClientSession, tmp_path: Path
):
    cert_file, key_file = self_signed(tmp_path)
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    pipeline = deployment.variant("tls", {"keys": ENTRIES, "tls": tls})
    trusting = ssl.create_default_context(cafile=str(cert_file))

    async with serving(pipeline, deployment.kafka) as api:
        assert api.url.startswith("https://127.0.0.1:")
        plain = api.url.replace("https://", "http://", 1)
        async with http.get(
            api.url + "/v1/decisions/APP-TLS", headers=key("reader"), ssl=trusting
        ) as over_tls:
            assert over_tls.status == 404  # authenticated and served over TLS
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.get(api.url + "/health")  # the default CAs do not know it
        with pytest.raises(aiohttp.ClientError):
            await http.get(plain + "/health")


def cors_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-")}


async def test_a_preflight_from_a_listed_origin_is_answered_without_a_key(
    deployment: Deployment, http: aiohttp.ClientSession
):
    asking = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key",
    }

    async with http.options(deployment.api.url + "/v1/decide", headers=asking) as preflight:
        headers = cors_headers(preflight)
        vary = preflight.headers.get("Vary", "")
    async with http.post(
        deployment.api.url + "/v1/decide", data=b"{}", headers={"Origin": ORIGIN}
    ) as refused:
        refused_headers = cors_headers(refused)

    assert preflight.status == 204
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-allow-methods"] == "POST"
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert allowed == {"content-type", "x-api-key", "authorization", "record-id", "traceparent"}
    assert headers["access-control-max-age"] == "300"
    assert "Origin" in vary
    assert refused.status == 401  # a browser may read the refusal, and its Retry-After
    assert refused_headers["access-control-allow-origin"] == ORIGIN
    assert refused_headers["access-control-expose-headers"] == "Location, Retry-After"


async def test_an_origin_that_is_not_listed_exactly_gets_no_cors_header(
    deployment: Deployment, http: aiohttp.ClientSession
):
    base = deployment.api.url
    for origin in ("https://evil.example", "http://app.example", "https://app.example.evil"):
        asking = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        async with http.options(base + "/v1/decide", headers=asking) as preflight:
            assert preflight.status == 204
            assert cors_headers(preflight) == {}, origin
        async with http.get(
            base + "/v1/decisions/APP-X", headers={"Origin": origin, **key("reader")}
        ) as read:
            assert read.status == 404
            assert cors_headers(read) == {}, origin


async def test_without_a_cors_section_no_answer_carries_a_cors_header(
    deployment: Deployment, http: aiohttp.ClientSession
):
    pipeline = deployment.variant("plain", {"keys": ENTRIES})
    calls = [
        ("OPTIONS", "/v1/decide", {"Access-Control-Request-Method": "POST"}, 405),
        ("POST", "/v1/decide", {}, 401),
        ("GET", "/v1/decisions/APP-X", key("reader"), 404),
        ("GET", "/v1/openapi.json", {}, 200),
        ("GET", "/health", {}, 200),
    ]

    async with serving(pipeline, deployment.kafka) as api:
        for method, path, headers, status in calls:
            async with http.request(
                method, api.url + path, headers={"Origin": ORIGIN, **headers}
            ) as response:
                assert response.status == status, (method, path)
                assert cors_headers(response) == {}, (method, path)
                assert "Origin" not in response.headers.get("Vary", ""), (method, path)


async def test_no_log_line_holds_a_records_values_its_id_or_a_key(
    deployment: Deployment, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    for name in list(logging.Logger.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    base = deployment.api.url
    record_id = f"APP-SECRET-{uuid.uuid4().hex[:8]}"
    record = a_record(record_id) | {"ssn": "987-65-4329", "last_name": "Quetzalcoatl"}
    wrong = new_key()

    async with http.post(
        base + "/v1/decide?timeout_ms=20000", data=orjson.dumps(record), headers=key("decider")
    ) as decided:
        assert decided.status == 200
    async with http.get(
        base + f"/v1/decisions/{record_id}",
        headers={"Authorization": f"Bearer {KEYS['decider']}"},
    ) as found:
        assert found.status == 200
    async with http.post(
        base + "/v1/decide", data=orjson.dumps(record), headers={"X-API-Key": wrong}
    ) as refused:
        assert refused.status == 401
    async with http.post(
        base + "/v1/records", data=orjson.dumps(record), headers=key("reader")
    ) as forbidden:
        assert forbidden.status == 403

    lines = [logging.Formatter().format(r) for r in caplog.records]
    secrets = [record_id, "987-65-4329", "987654329", "Quetzalcoatl", KEYS["decider"], wrong]
    secrets += [KEYS["reader"], key_hash(KEYS["decider"]).removeprefix("sha256:")]
    leaked = [(s, line) for line in lines for s in secrets if s in line]
    assert leaked == []
    by_logger = {r.name for r in caplog.records}
    assert {"aiokafka.producer.producer", "aiokafka.conn"} <= by_logger  # debug lines came
    access = [line for line in lines if "key=" in line]
    assert any("POST /v1/decide 200 key=decider" in line for line in access), access
    assert any("GET /v1/decisions/{record_id} 200 key=decider" in line for line in access)
    assert any("POST /v1/decide 401 key=-" in line for line in access)
    assert any("POST /v1/records 403 key=reader" in line for line in access)
