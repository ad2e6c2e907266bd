"""The commands that administer a pipeline's topics: topics create, list and acls; dlq replay."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stream_engine.cli.kafka import kafka_settings
from stream_engine.cli.options import (
    ALLOW_OUTSIDE_OPTION,
    BROKER_OPTION,
    CONFIG_ARG,
    ENV_OPTION,
    boundary,
    load,
)
from stream_engine.cli.render import err, out, print_replay, print_topics
from stream_engine.errors import ConfigError, StreamEngineError

if TYPE_CHECKING:
    from datetime import datetime


def since_time(value: str | None) -> datetime | None:
    """``--since`` as an aware time (UTC unless the text gives a zone)."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group()
def topics() -> None:
    """Create or list a pipeline's topics (settings from the file its topics.file names)."""


@topics.command(name="create")
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@BROKER_OPTION
@boundary
def topics_create(
    config: Path, environment: str | None, allow_outside: bool, broker: str | None
) -> None:
    """Create the pipeline's topics that do not exist yet (idempotent)."""
    from stream_engine.runtime.cluster.topics import create_topics, topic_specs

    pipeline = load(config, environment, allow_outside)
    specs = topic_specs(pipeline)
    outcome = asyncio.run(create_topics(specs, kafka_settings(pipeline, broker)))
    for spec in specs:
        settings = "".join(f", {k}={v}" for k, v in spec.config.items())
        out.print(
            f"{outcome.get(spec.name, '?'):8} {spec.name} ({spec.partitions} partitions, "
            f"replication {spec.replication_factor}{settings})",
            markup=False,
        )


@topics.command(name="list")
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@BROKER_OPTION
@boundary
def topics_list(
    config: Path, environment: str | None, allow_outside: bool, broker: str | None
) -> None:
    """Show the pipeline's topics and their partition counts on the broker."""
    from stream_engine.runtime.cluster.topics import describe_topics, topic_specs

    pipeline = load(config, environment, allow_outside)
    specs = topic_specs(pipeline)
    counts = asyncio.run(describe_topics([s.name for s in specs], kafka_settings(pipeline, broker)))
    print_topics(pipeline.plan.name, specs, counts)


@topics.command(name="acls")
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@click.option(
    "--workers",
    default="User:stream-engine",
    show_default=True,
    help="Principal of the stage workers (and of dlq replay).",
)
@click.option(
    "--producers", default="User:producer", show_default=True, help="Principal of producers."
)
@click.option(
    "--consumers",
    default="User:decisions-reader",
    show_default=True,
    help="Principal of the applications that read decisions.",
)
@click.option(
    "--consumer-groups",
    metavar="PREFIX",
    help="Consumer-group prefix of those applications (default: <pipeline>.readers.).",
)
@boundary
def topics_acls(
    config: Path,
    environment: str | None,
    allow_outside: bool,
    workers: str,
    producers: str,
    consumers: str,
    consumer_groups: str | None,
) -> None:
    """Print a kafka-acls.sh script granting what the pipeline needs and nothing more: only
    the workers write stage, output and dead-letter topics; producers write the input topic."""
    from stream_engine.runtime.cluster.acls import Principals, acl_script

    pipeline = load(config, environment, allow_outside)
    who = Principals(workers, producers, consumers, consumer_groups or "")
    sys.stdout.write(acl_script(pipeline, who))


@click.group()
def dlq() -> None:
    """Work with the dead-letter topic."""


@dlq.command(name="replay")
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@BROKER_OPTION
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    metavar="R",
    help="Only dead letters with this reason (repeatable), e.g. circuit_open.",
)
@click.option(
    "--stage",
    "stages",
    multiple=True,
    metavar="S",
    help="Only dead letters of this stage (repeatable).",
)
@click.option(
    "--since",
    metavar="ISO",
    help="Only dead letters written at or after this time (UTC unless given).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; send nothing.")
@boundary
def dlq_replay(
    config: Path,
    environment: str | None,
    allow_outside: bool,
    broker: str | None,
    reasons: tuple[str, ...],
    stages: tuple[str, ...],
    since: str | None,
    dry_run: bool,
) -> None:
    """Send dead letters back to the stage they failed in (original bytes, attempt + 1), e.g.
    after a failing service recovered. Reads the dead-letter topic up to the end it had when the
    replay started (letters written meanwhile wait for the next one); skips letters with
    malformed dlq.* headers, naming each; keeps no position, so running it twice replays
    twice."""  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from stream_engine.runtime.cluster.topics import pipeline_topics
    from stream_engine.runtime.stage.integrity import envelope_auth
    from stream_engine.runtime.tools.replay import ReplayFilter, replay

    pipeline = load(config, environment, allow_outside)
    names = pipeline_topics(pipeline)
    unknown = [s for s in stages if s not in names.stage_inputs]
    if unknown:
        raise ConfigError("--stage", f"not an enabled stage: {', '.join(unknown)}")
    chosen = ReplayFilter(frozenset(reasons), frozenset(stages), since_time(since))
    keys = envelope_auth(pipeline)  # letters are verified: a forged one is never replayed
    with Progress(
        TextColumn("scanning " + names.dlq), BarColumn(), MofNCompleteColumn(), console=err,
        transient=True, disable=not err.is_terminal,
    ) as bar:  # fmt: skip
        task = bar.add_task("scan", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = asyncio.run(
            replay(names, kafka_settings(pipeline, broker), chosen, dry_run, progress, auth=keys)
        )
    print_replay(summary, dry_run)
    if summary.unfinished:
        stalled = ", ".join(
            f"partition {p} at offset {at} of {end}"
            for p, (at, end) in sorted(summary.unfinished.items())
        )
        raise StreamEngineError(f"{names.dlq}: stopped short, no progress: {stalled}")


COMMANDS = (topics, dlq)
