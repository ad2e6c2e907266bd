"""The commands that talk to Kafka: run, dev, topics, publish, tail and dlq."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from stream_engine.cli.options import (
    ALLOW_OUTSIDE_OPTION,
    API_HOST_OPTION,
    API_PORT_OPTION,
    BROKER_OPTION,
    CONFIG_ARG,
    ENV_OPTION,
    METRICS_HOST_OPTION,
    METRICS_PORT_OPTION,
    boundary,
    load,
)
from stream_engine.cli.render import (
    err,
    live_summary,
    out,
    write_json,
)
from stream_engine.core.outcome import OutputKind

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline
    from stream_engine.runtime.cluster.settings import KafkaSettings
    from stream_engine.runtime.observe.endpoint import MetricsEndpoint
    from stream_engine.runtime.process import Summary
    from stream_engine.runtime.worker import StageWorker


def kafka_settings(pipeline: CompiledPipeline, broker: str | None) -> KafkaSettings:
    """The pipeline's connection settings. aiokafka's own line per unreachable bootstrap server
    is dropped: ``connected`` reports an unreachable cluster in one line."""
    from stream_engine.runtime.cluster.settings import KafkaSettings, quiet_libraries

    quiet_libraries()
    return KafkaSettings.for_pipeline(pipeline, broker)


def input_topic(pipeline: CompiledPipeline) -> str:
    """The topic records are published to (the first enabled stage's)."""
    from stream_engine.runtime.cluster.topics import pipeline_topics

    return pipeline_topics(pipeline).input


def setup_logging(verbose: bool) -> None:
    """Log to stderr, at INFO with ``--verbose``, else warnings only."""
    import logging

    from stream_engine.runtime.cluster.settings import quiet_libraries

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_libraries(verbose)


@click.command()
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@BROKER_OPTION
@click.option(
    "--stage",
    "stages",
    multiple=True,
    metavar="STAGE",
    help="Run only this stage (repeatable). Processes running the same stage share "
    "its consumer group and split its partitions.",
)
@METRICS_PORT_OPTION
@METRICS_HOST_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log progress at INFO level.")
@boundary
def run(
    config: Path,
    environment: str | None,
    allow_outside: bool,
    broker: str | None,
    stages: tuple[str, ...],
    metrics_port: int | None,
    metrics_host: str | None,
    verbose: bool,
) -> None:
    """Run the stage agents against a Kafka cluster: all enabled stages in this worker, or
    the ones named by --stage. SIGTERM/SIGINT finish the in-flight batch, commit and exit 0."""
    from stream_engine.runtime.observe import gc_tuning as collector
    from stream_engine.runtime.process import serve

    setup_logging(verbose)
    pipeline = load(config, environment, allow_outside)
    kafka = kafka_settings(pipeline, broker)

    def ready(worker: StageWorker, endpoint: MetricsEndpoint) -> None:
        collector.settle()
        names = ", ".join(agent.stage.name for agent in worker.agents)
        err.print(f"metrics: {endpoint.url}", markup=False)
        err.print(
            f"running: {pipeline.plan.name} stages {names} on {kafka.describe()}", markup=False
        )

    asyncio.run(
        serve(
            pipeline,
            kafka,
            stages or None,
            ready,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
    )
    err.print("stopped", markup=False)


@click.command()
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@click.option(
    "--port",
    type=int,
    default=9092,
    show_default=True,
    help="Port of the embedded broker on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also publish the config's sample records at a "
    "steady rate and show a live summary of the decisions.",
)
@click.option(
    "--rate",
    type=float,
    default=50.0,
    show_default=True,
    help="Records per second published by --demo.",
)
@METRICS_PORT_OPTION
@METRICS_HOST_OPTION
@API_PORT_OPTION
@API_HOST_OPTION
@click.option("--no-api", is_flag=True, help="Do not serve the HTTP API.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress at INFO level.")
@boundary
def dev(
    config: Path,
    environment: str | None,
    allow_outside: bool,
    port: int,
    demo: bool,
    rate: float,
    metrics_port: int | None,
    metrics_host: str | None,
    api_port: int | None,
    api_host: str | None,
    no_api: bool,
    verbose: bool,
) -> None:
    """Start a local Kafka-compatible broker (Tansu, in memory; no Docker, no Java), create
    the topics, run every stage and the HTTP API. Prints 'broker: 127.0.0.1:PORT' and
    'api: http://HOST:PORT' when ready; decide with 'curl -X POST URL/v1/decide -d @record.json',
    publish with 'stream-engine publish' and read with 'stream-engine tail' in another shell.
    The API takes callers without keys here (it listens on 127.0.0.1 unless --api-host)."""
    from stream_engine.cli.api import dev_api
    from stream_engine.runtime.process import dev as run_dev

    setup_logging(verbose)
    pipeline = load(config, environment, allow_outside)

    def announce(bootstrap: str) -> None:
        out.print(f"broker: {bootstrap}", markup=False)
        out.print(f"input topic: {input_topic(pipeline)} (Ctrl-C to stop)", markup=False)

    def metrics(url: str) -> None:
        out.print(f"metrics: {url}", markup=False)

    def api(url: str) -> None:
        out.print(f"api: {url}", markup=False)

    companion = None if no_api else dev_api(api_host, api_port)

    def start(demo_rate: float | None, show: Callable[[Summary], None] | None) -> None:
        asyncio.run(
            run_dev(
                pipeline, port, announce, demo_rate, show,
                metrics_port=metrics_port, metrics_host=metrics_host, announce_metrics=metrics,
                companion=companion, announce_companion=api,
            )
        )  # fmt: skip

    if not demo:
        start(None, None)
        return
    with live_summary() as show:
        start(rate, show)


@click.command()
@CONFIG_ARG
@click.argument("file", type=click.File("rb"))
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@BROKER_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="Input format (auto: by file extension, else JSON lines).",
)
@click.option("--rate", type=float, help="Records per second (default: as fast as possible).")
@boundary
def publish(
    config: Path,
    file: BinaryIO,
    environment: str | None,
    allow_outside: bool,
    broker: str | None,
    fmt: str,
    rate: float | None,
) -> None:
    """Publish JSON lines or CSV rows ('-' for stdin) to the pipeline's input topic, keyed by
    the record id field, with a progress bar and a final count."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from stream_engine.runtime.tools.topic_io import publish as send
    from stream_engine.runtime.tools.topic_io import read_records

    pipeline = load(config, environment, allow_outside)
    topic = input_topic(pipeline)
    values = list(read_records(file, fmt))
    with Progress(
        TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), console=err,
        transient=True, disable=not err.is_terminal,
    ) as progress:  # fmt: skip
        task = progress.add_task("publish", total=len(values))
        sent = asyncio.run(
            send(
                values,
                topic,
                kafka_settings(pipeline, broker),
                pipeline.plan.key_field,
                rate,
                lambda n: progress.advance(task, n),
            )
        )
    err.print(f"published {sent} record(s) to {topic}", markup=False)


@click.command()
@CONFIG_ARG
@click.argument("which", type=click.Choice([*(kind.value for kind in OutputKind), "all"]))
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@BROKER_OPTION
@click.option("--from-beginning", is_flag=True, help="Start at the oldest message.")
@click.option("--count", type=int, help="Stop after N messages.")
@click.option(
    "--timeout", "idle_timeout", type=float, help="Stop after this many seconds without a message."
)
@boundary
def tail(
    config: Path,
    which: str,
    environment: str | None,
    allow_outside: bool,
    broker: str | None,
    from_beginning: bool,
    count: int | None,
    idle_timeout: float | None,
) -> None:
    """Print an output topic, one JSON object per line (dead letters with their headers)."""
    from stream_engine.runtime.cluster.topics import pipeline_topics
    from stream_engine.runtime.tools.topic_io import tail as follow

    pipeline = load(config, environment, allow_outside)
    names = pipeline_topics(pipeline)
    chosen = list(OutputKind) if which == "all" else [OutputKind(which)]

    async def go() -> None:
        async for message in follow(
            [names.for_output(w) for w in chosen],
            kafka_settings(pipeline, broker),
            from_beginning,
            count,
            idle_timeout,
        ):
            write_json(message)
            sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())


COMMANDS = (run, dev, publish, tail)
