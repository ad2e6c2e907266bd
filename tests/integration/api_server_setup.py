"""One pipeline, its stage workers (in process) and a real API server on the shared broker, for
the HTTP API suites (test_api_contract.py, test_api_client.py): the onboarding example with
two API keys, small limits (so 413s are cheap), an ``input.schema`` with its own ``$defs``, and
a KYC service slow enough that a decide call with a small ``timeout_ms`` really times out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from broker_fixtures import CONFIGS, FAST_RUNTIME, copy_beside, ensure_topics
from harness import samples

from stream_engine.api.security import key_hash
from stream_engine.api.server import ApiServer, running_api
from stream_engine.config.compiled import CompiledPipeline
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.settings import KafkaSettings
from stream_engine.runtime.worker import StageWorker

#: A key with every scope, and one that may only read decisions.
API_KEY = "se_test_full_" + "a" * 32
READ_KEY = "se_test_read_" + "b" * 32
MAX_RECORDS = 3
MAX_BODY_BYTES = 4096
#: How long each KYC answer takes: an approved record needs at least this long.
KYC_LATENCY_MS = 300
#: A decide call's wait when it must be decided (generous: the first one waits for the groups).
DECIDED_MS = 20_000
INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["application_id"],
    "properties": {
        "application_id": {"$ref": "#/$defs/id"},
        "annual_income": {"$ref": "#/$defs/money"},
    },
    "$defs": {"id": {"type": "string", "minLength": 1}, "money": {"type": "number", "minimum": 0}},
}

_ids = itertools.count()
_SAMPLES = samples()
#: Sample 2 is approved (through the slow KYC); sample 1 is rejected in data_quality.
APPROVED, REJECTED = _SAMPLES[1], _SAMPLES[0]


def fresh(record: dict[str, Any]) -> dict[str, Any]:
    """The record under an id no other test used (the decision does not depend on the id)."""
    return record | {"application_id": f"API-{next(_ids)}-{uuid.uuid4().hex[:8]}"}


def api_pipeline(directory: Path, broker: str) -> CompiledPipeline:
    """The onboarding example under a name of its own, set up for the API suites."""
    source = CONFIGS / "customer_onboarding.yaml"
    data = yaml.safe_load(source.read_text())
    data["pipeline"] = name = f"api{uuid.uuid4().hex[:8]}_customer_onboarding"
    data["samples"] = copy_beside(source.parent / data["samples"], directory, name)
    data["topics"]["file"] = copy_beside(source.parent / data["topics"]["file"], directory, name)
    data["kafka"] = {"bootstrap_servers": broker}
    data.setdefault("runtime", {}).update(FAST_RUNTIME, driver="batch")
    data["input"]["schema"] = INPUT_SCHEMA
    data["services"]["kyc"]["params"]["latency_ms"] = KYC_LATENCY_MS
    data["api"] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_records": MAX_RECORDS,
        "max_body_bytes": MAX_BODY_BYTES,
        "access_log": False,
        "keys": [
            {"id": "app", "hash": key_hash(API_KEY)},
            {"id": "reader", "hash": key_hash(READ_KEY), "scopes": ["read"]},
        ],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_pipeline(path)


@contextlib.asynccontextmanager
async def serving(directory: Path, broker: str) -> AsyncIterator[ApiServer]:
    """Topics, the stage workers and the API server of a fresh ``api_pipeline``, started for
    the block; yields once ``/ready`` would answer 200."""
    pipeline = api_pipeline(directory, broker)
    kafka = KafkaSettings(bootstrap_servers=broker)
    await ensure_topics(pipeline, kafka)
    worker = StageWorker(pipeline, kafka)
    await worker.start()
    try:
        async with running_api(pipeline, kafka) as server:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30.0
            while (why := server.unready()) is not None:
                assert loop.time() < deadline, f"API not ready in 30s: {why}"
                await asyncio.sleep(0.05)
            yield server
    finally:
        await worker.stop()
