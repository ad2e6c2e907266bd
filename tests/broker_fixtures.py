"""Broker fixtures for the integration and fault suites (a pytest plugin loaded by
tests/conftest.py): one broker per test session - the embedded Tansu
broker, or with ``--broker-kind=kafka`` / ``STREAM_ENGINE_TEST_BROKER=kafka`` a real Apache Kafka
4.x (tests/kafka) - and a fresh pipeline per test (its own name, so its own topics and consumer
groups)."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import WorkerProcess

from stream_engine.client import Client
from stream_engine.config.compiled import CompiledPipeline
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.broker import EmbeddedBroker
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.cluster.topics import create_topics, topic_specs
from stream_engine.runtime.worker import StageWorker

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
REQUIRE_KAFKA = "STREAM_ENGINE_REQUIRE_KAFKA"  # CI: fail instead of skipping without Java/Maven

# Short timeouts so consumer groups form in a few seconds (the embedded broker makes a join
# wait half the session timeout). Apache Kafka is started with group.min.session.timeout.ms=1000
# so it accepts the same settings.
FAST_RUNTIME = {
    "session_timeout_s": 3.0,
    "heartbeat_interval_s": 0.5,
    "commit_interval_s": 0.2,
    "batch_wait_ms": 20,
    "shutdown_timeout_s": 15.0,
}

_counter = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs a broker; tests/fault is the fault suite."""
    for item in items:
        where = str(item.path).replace(os.sep, "/")
        if "tests/integration/" in where:
            item.add_marker(pytest.mark.integration)
        if "tests/fault/" in where:
            item.add_marker(pytest.mark.fault)


@pytest.fixture(scope="session")
def broker_kind(pytestconfig: pytest.Config) -> str:
    """``embedded`` or ``kafka`` (tests/conftest.py settles it)."""
    kind: str = pytestconfig.getoption("broker_kind")
    return kind


@pytest.fixture(scope="session")
def broker_server(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The broker shared by the session: an ``EmbeddedBroker``, or for ``kafka`` an
    ``ApacheKafka`` (tests/kafka/apache_kafka.py: ``restart()``, ``kill()``, ``start()``)."""
    if broker_kind == "kafka":
        missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
        if missing:
            if os.environ.get(REQUIRE_KAFKA):
                pytest.fail(f"Apache Kafka needs {' and '.join(missing)} (Java 17, Maven)")
            pytest.skip(f"Apache Kafka needs {' and '.join(missing)} (Java 17, Maven)")
        sys.path.insert(0, str(ROOT / "tests" / "kafka"))
        from apache_kafka import ApacheKafka

        home = tmp_path_factory.mktemp("kafka")
        with ApacheKafka(home / "data", log_file=home / "kafka.log") as node:
            yield node
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(0, log) as running:
        yield running


@pytest.fixture(scope="session")
def broker(broker_server: Any) -> str:
    """The bootstrap address of the broker shared by the session."""
    bootstrap: str = broker_server.bootstrap
    return bootstrap


@pytest.fixture
def kafka(broker: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=broker)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_path(d, "services.kyc.params.fail_rate", 1.0)``."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


PipelineFactory = Callable[..., CompiledPipeline]


def copy_beside(file: Path, directory: Path, prefix: str) -> str:
    """Copy ``file`` into ``directory`` as ``<prefix>.<name>``; returns the new name."""
    name = f"{prefix}.{file.name}"
    shutil.copyfile(file, directory / name)
    return name


@pytest.fixture
def make_pipeline(tmp_path: Path, broker: str, driver: str) -> PipelineFactory:
    """Writes a copy of an example pipeline under a unique name, with fast runtime settings
    and the given ``dotted.path=value`` changes, and loads it (its samples and topics file
    copied beside it). Returns the compiled pipeline; its file is ``pipeline.effective.path``."""

    def make(base: str = "customer_onboarding", **changes: Any) -> CompiledPipeline:
        source = CONFIGS / f"{base}.yaml"
        data = yaml.safe_load(source.read_text())
        data["pipeline"] = f"it{next(_counter)}_{uuid.uuid4().hex[:6]}_{base}"
        # A pipeline reads files in its own directory only: copy the ones it names beside it.
        prefix = data["pipeline"]
        data["samples"] = copy_beside(source.parent / data["samples"], tmp_path, prefix)
        topics = data["topics"]
        topics["file"] = copy_beside(source.parent / topics["file"], tmp_path, prefix)
        data["kafka"] = {"bootstrap_servers": broker}
        data.setdefault("runtime", {}).update(FAST_RUNTIME, driver=driver)
        for dotted, value in changes.items():
            set_path(data, dotted.replace("__", "."), value)
        path = tmp_path / f"{data['pipeline']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_pipeline(path)

    return make


async def ensure_topics(pipeline: CompiledPipeline, kafka: KafkaSettings) -> None:
    await create_topics(topic_specs(pipeline), kafka)


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., Any]]:
    """Starts in-process stage workers (topics created first) and stops them at the end."""
    workers: list[StageWorker] = []

    async def start(
        pipeline: CompiledPipeline, kafka: KafkaSettings, stages: list[str] | None = None
    ) -> StageWorker:
        await ensure_topics(pipeline, kafka)
        worker = StageWorker(pipeline, kafka, stages)
        await worker.start()
        workers.append(worker)
        return worker

    yield start
    await asyncio.gather(*(w.stop() for w in workers))


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[CompiledPipeline], Any]]:
    """Opens a ``Client`` for a pipeline; closed at the end of the test."""
    clients: list[Client] = []

    async def open_client(pipeline: CompiledPipeline) -> Client:
        client = Client(pipeline)
        await client.__aenter__()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.__aexit__(None, None, None)


@pytest.fixture
def worker_process(tmp_path: Path, broker: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts ``stream-engine run`` subprocesses; any still running at the end are killed."""
    started: list[WorkerProcess] = []

    def start(config: Path, *extra: str) -> WorkerProcess:
        proc = WorkerProcess.run(config, broker, *extra, log=tmp_path / f"worker{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
