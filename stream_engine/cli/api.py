"""The commands of the HTTP API: ``serve`` (an API process for a pipeline on a cluster) and
``api-key`` (a new key and the hash to list in ``api.keys``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stream_engine.cli.kafka import kafka_settings, setup_logging
from stream_engine.cli.options import (
    ALLOW_OUTSIDE_OPTION,
    API_HOST_OPTION,
    API_PORT_OPTION,
    BROKER_OPTION,
    CONFIG_ARG,
    ENV_OPTION,
    boundary,
    load,
)
from stream_engine.cli.render import err, out, write_json

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline
    from stream_engine.runtime.cluster.settings import KafkaSettings
    from stream_engine.runtime.process import Companion


def dev_api(host: str | None, port: int | None) -> Companion:
    """The HTTP API as ``dev``'s companion: anonymous callers allowed (it is local)."""

    @contextlib.asynccontextmanager
    async def companion(pipeline: CompiledPipeline, kafka: KafkaSettings) -> AsyncIterator[str]:
        from stream_engine.api.server import running_api

        async with running_api(pipeline, kafka, True, host, port) as server:
            yield server.url

    return companion


@click.command()
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@BROKER_OPTION
@API_HOST_OPTION
@API_PORT_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log every request (route, status, key id).")
@boundary
def serve(
    config: Path,
    environment: str | None,
    allow_outside: bool,
    broker: str | None,
    api_host: str | None,
    api_port: int | None,
    verbose: bool,
) -> None:
    """Serve the pipeline's HTTP API against a Kafka cluster whose stages run elsewhere
    ('stream-engine run'): POST /v1/decide (publish and wait for the decision), POST
    /v1/records (publish only), GET /v1/decisions/ID, GET /v1/openapi.json, /health, /ready,
    /metrics. Callers need a key from api.keys unless api.anonymous is true. Several API
    processes may serve one pipeline. Prints 'api: URL' when listening."""
    from stream_engine.api.server import serve_api

    setup_logging(verbose)
    pipeline = load(config, environment, allow_outside)
    kafka = kafka_settings(pipeline, broker)

    def announce(url: str) -> None:
        err.print(f"api: {url}", markup=False)
        err.print(f"serving: {pipeline.plan.name} on {kafka.describe()}", markup=False)

    asyncio.run(serve_api(pipeline, kafka, announce, host=api_host, port=api_port))
    err.print("stopped", markup=False)


@click.command("api-key")
@click.option("--id", "key_id", default="caller", show_default=True, help="The key's id.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["decide", "submit", "read"]),
    help="A scope the key gets (repeatable; default: all three).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its entry as JSON.")
def api_key(key_id: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Make a new API key and print it once, with the entry to list under api.keys (only the
    hash goes in the pipeline file; give the key to the caller)."""
    from stream_engine.api.security import key_hash, new_key

    key = new_key()
    chosen = list(scopes or ("decide", "submit", "read"))
    entry = {"id": key_id, "hash": key_hash(key), "scopes": chosen}
    if as_json:
        write_json({"key": key, "entry": entry})
        return
    out.print(f"key: {key}", markup=False)
    out.print("add to the pipeline file under api.keys:", markup=False)
    out.print(f"  - id: {entry['id']}", markup=False)
    out.print(f'    hash: "{entry["hash"]}"', markup=False)
    out.print(f"    scopes: [{', '.join(chosen)}]", markup=False)


COMMANDS = (serve, api_key)
