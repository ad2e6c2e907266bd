"""The ``stream-engine`` command. Thin: parse options, call the layers, print."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.table import Table

from stream_engine import __version__
from stream_engine.errors import ConfigError, ConfigErrors, StreamEngineError

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ENV_OPTION = click.option(
    "--env",
    "environment",
    metavar="ENV",
    envvar="STREAM_ENGINE_ENV",
    help="Environment overlay to apply (development, staging, production...). "
    "Default: $STREAM_ENGINE_ENV, else none.",
)
CONFIG_ARG = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
ALLOW_OUTSIDE_OPTION = click.option(
    "--allow-outside",
    is_flag=True,
    help="Let the config name files outside its own directory (topics.file, samples); "
    "by default such a path is an error.",
)


def boundary(func: F) -> F:
    """Turn stream_engine errors into one line each on stderr and exit 1 - never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigErrors as exc:
            for error in exc.errors:
                err.print(f"error: {error}", markup=False)
            err.print(f"{len(exc.errors)} error(s)", style="bold red")
        except ConfigError as exc:
            err.print(f"error: {exc}", markup=False)
        except StreamEngineError as exc:
            err.print(f"error: {exc}", markup=False)
        sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _load(config: Path, environment: str | None, allow_outside: bool) -> CompiledPipeline:
    from stream_engine.pipeline import load_pipeline

    return load_pipeline(config, environment, allow_outside=allow_outside)


def _write_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stream-engine")
def main() -> None:
    """stream-engine: a Kafka-native, configuration-driven, multi-stage rule engine.

    A pipeline file (YAML) groups rules into stages; each stage runs as a Kafka agent. The
    offline commands (validate, plan, eval, test) need no broker.
    """


@main.command()
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@boundary
def validate(config: Path, environment: str | None, allow_outside: bool, fmt: str) -> None:
    """Check a pipeline file: structure, rule classes and params, services, dependencies
    (unknown, cyclic, later-stage), timeouts and CEL expressions.

    Prints every error on its own line with its location and exits 1, or a summary and 0.
    """
    try:
        pipeline = _load(config, environment, allow_outside)
    except (ConfigErrors, ConfigError) as exc:
        if fmt != "json":
            raise
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        _write_json(
            {
                "valid": False,
                "errors": [
                    {"location": e.location, "message": e.message, "line": e.line} for e in errors
                ],
            }
        )
        sys.exit(1)
    plan = pipeline.plan
    rules = sum(len(stage.rules) for stage in plan.stages)
    if fmt == "json":
        _write_json(
            {
                "valid": True,
                "pipeline": plan.name,
                "version": plan.version,
                "config_hash": plan.config_hash,
                "environment": plan.environment,
                "stages": len(plan.stages),
                "rules": rules,
                "services": len(pipeline.services),
                "warnings": pipeline.warnings,
            }
        )
        return
    env = f", environment {plan.environment}" if plan.environment else ""
    out.print(
        f"[green]valid[/green]: {plan.name} {plan.version} (hash {plan.config_hash}{env}) - "
        f"{len(plan.stages)} stages ({len(plan.active_stages)} enabled), {rules} rules, "
        f"{len(pipeline.services)} services"
    )
    for warning in pipeline.warnings:
        out.print(f"[yellow]warning[/yellow]: {warning}", markup=True)


@main.command()
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "mermaid", "json"]),
    default="table",
    show_default=True,
    help="A table, a Mermaid flowchart, or JSON.",
)
@boundary
def plan(config: Path, environment: str | None, allow_outside: bool, fmt: str) -> None:
    """Show how a pipeline will run: stages in order, their options, the rules of each
    dependency level (rules of one level are independent), and the topics."""
    from stream_engine.offline import plan_mermaid, plan_rows, plan_summary
    from stream_engine.runtime.names import topic_names

    pipeline = _load(config, environment, allow_outside)
    compiled = pipeline.plan
    topics = topic_names(compiled, pipeline.config.topics.names)
    if fmt == "mermaid":
        sys.stdout.write(plan_mermaid(compiled, topics))
        return
    if fmt == "json":
        _write_json(plan_summary(compiled, topics))
        return
    table = Table(title=f"{compiled.name} {compiled.version} (hash {compiled.config_hash})")
    for column in ("stage", "options", "levels (rules)", "consumes"):
        table.add_column(column, overflow="fold")
    for row in plan_rows(compiled, topics):
        options = [
            "enabled" if row["enabled"] else "[red]disabled[/red]",
            "fail_fast" if row["fail_fast"] else "collect",
            f"parallel<={row['max_parallel_rules']}" if row["parallel"] else "sequential",
        ]
        if row["timeout_s"]:
            options.append(f"timeout {row['timeout_s']:g}s")
        if row["condition"]:
            options.append(f"if {row['condition']}")
        levels = "\n".join(f"{i}: {', '.join(level)}" for i, level in enumerate(row["levels"]))
        table.add_row(row["stage"], "\n".join(options), levels, row["topic"] or "-")
    out.print(table)
    out.print(
        f"outputs: decisions → {topics.decisions}, rejected → {topics.rejected}, "
        f"review → {topics.review}, dead letters → {topics.dlq}"
    )
    stop = (
        "stops at the first failing stage"
        if compiled.stop_on_stage_failure
        else ("runs every stage, then decides on all failures")
    )
    budget = f"; budget {compiled.budget:g} per record" if compiled.budget is not None else ""
    out.print(f"policy: {stop}{budget}")
    if compiled.pii_fields:
        where = "messages, reasons, dead-letter headers, logs" + (
            " and decisions' data" if compiled.pii.mask_decisions else ""
        )
        out.print(f"pii: {', '.join(compiled.pii_fields)} {compiled.pii.mode}ed in {where}")


@main.command(name="eval")
@CONFIG_ARG
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@click.option(
    "--stage",
    "stages",
    metavar="STAGE",
    multiple=True,
    help="Run only this stage (repeat for several; they run in pipeline order) and print the "
    "route and results of the last one each record reached. A stage that needs a result of a "
    "stage not run is refused, unless the input lines are envelopes (from `tail`) carrying it.",
)
@click.option(
    "--input",
    "input_file",
    type=click.File("rb"),
    default="-",
    show_default=True,
    help="JSON lines to evaluate ('-' is stdin).",
)
@boundary
def eval_(
    config: Path,
    environment: str | None,
    allow_outside: bool,
    stages: tuple[str, ...],
    input_file: Any,
) -> None:
    """Evaluate JSON records (one object per line) through the pipeline, without Kafka.

    Each line goes through exactly what the workers run - the input checks (size, schema,
    limits), every stage, the envelope written and read between stages - so it gets the
    decision it would get on Kafka. Prints one JSON decision per input line: record_id,
    status (approved, rejected, review, completed, dead_letter), decided_by_stage,
    failed_rules, reasons, results, data, audit, cost. A line that cannot be a record gets a
    dead_letter answer (its reason as the dead-letter topic would say); the next line still
    runs.
    """
    from stream_engine.offline import OfflineEvaluator

    pipeline = _load(config, environment, allow_outside)
    evaluator = OfflineEvaluator(pipeline)
    if stages:
        evaluator.selection(stages)  # unknown stages are refused before any input is read

    async def run() -> None:
        answers = (
            evaluator.stage_results(stages, input_file)
            if stages
            else evaluator.decisions(input_file)
        )
        try:
            async for answer in answers:
                _write_json(answer)
        finally:
            await pipeline.close()

    asyncio.run(run())


def _test_epilog() -> str:
    """The cases-file format for ``test --help``: file keys, case keys, every expect key."""
    from stream_engine.casetest import expect_keys_help

    width = max(len(name) for name, _ in expect_keys_help())
    expect = "\n".join(f"  {name:<{width}}  {text}" for name, text in expect_keys_help())
    return (
        "\b\nCases file (YAML): environment (overlay to load), description, now (default\n"
        "decision time, ISO-8601 with a zone), cases (a list).\n"
        "\b\nA case: name, input (the record), stage (run that stage alone), now (its decision\n"
        "time), services (name -> its answer for this case: a mapping such as {verified:\n"
        'false}, or {answer: {...}}, {error: "text"} to fail, {timeout: true} to time out),\n'
        "expect. Each case runs on a freshly compiled pipeline (new services, breakers, state).\n"
        f"\b\nexpect keys (each optional; only what is given is checked):\n{expect}\n"
        "\b\nA stage, rule or service name the pipeline does not define is an error of the file."
    )


@main.command(epilog=_test_epilog())
@CONFIG_ARG
@click.argument("cases_file", metavar="CASES", type=click.Path(dir_okay=False, path_type=Path))
@ENV_OPTION
@ALLOW_OUTSIDE_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Also list the cases that pass.")
@boundary
def test(
    config: Path, cases_file: Path, environment: str | None, allow_outside: bool, verbose: bool
) -> None:
    """Run configuration test cases: each case is an input record with the expected status,
    deciding stage, failed rules, rule outcomes and field values. One line per case; exit 1
    if any fails."""
    from stream_engine.casetest import check_cases, field_warnings, load_cases, run_cases

    cases = load_cases(cases_file)
    pipeline = _load(config, environment or cases.environment, allow_outside)
    check_cases(pipeline, cases)
    for warning in field_warnings(pipeline, cases):
        err.print(f"warning: {warning}", markup=False)

    async def run() -> list[Any]:
        try:
            return await run_cases(pipeline, cases, allow_outside)
        finally:
            await pipeline.close()

    results = asyncio.run(run())
    for result in results:
        if result.passed:
            out.print(f"[green]PASS[/green] {result.name}")
        else:
            out.print(f"[red]FAIL[/red] {result.name}")
            for failure in result.failures:
                out.print(f"       {failure}", markup=False)
    failed = sum(not r.passed for r in results)
    summary = f"{len(results) - failed} passed, {failed} failed"
    out.print(f"[bold {'red' if failed else 'green'}]{summary}[/]")
    if failed:
        sys.exit(1)


METRICS_PORT_OPTION = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Port of /metrics, /health and /ready (default: runtime.metrics_port, 9464; "
    "0: any free port - the chosen one is printed).",
)

BROKER_OPTION = click.option(
    "--broker",
    metavar="HOST:PORT",
    help="Bootstrap servers (comma-separated). Default: $STREAM_ENGINE_BROKER, else the "
    "config's kafka.bootstrap_servers.",
)


METRICS_HOST_OPTION = click.option(
    "--metrics-host",
    metavar="HOST",
    envvar="STREAM_ENGINE_METRICS_HOST",
    help="Address /metrics, /health and /ready listen on (default: $STREAM_ENGINE_METRICS_HOST, "
    "else runtime.metrics_host, 127.0.0.1; 0.0.0.0 for every interface).",
)


def _kafka(pipeline: CompiledPipeline, broker: str | None) -> Any:
    """The pipeline's connection settings. aiokafka's own line per unreachable bootstrap server
    is dropped: ``connected`` reports an unreachable cluster in one line."""
    from stream_engine.runtime.kafka import KafkaSettings, quiet_libraries

    quiet_libraries()
    return KafkaSettings.for_pipeline(pipeline, broker)


def _input_topic(pipeline: CompiledPipeline) -> str:
    from stream_engine.runtime.topics import pipeline_topics

    return pipeline_topics(pipeline).input


def _setup_logging(verbose: bool) -> None:
    import logging

    from stream_engine.runtime.kafka import quiet_libraries

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_libraries(verbose)


@main.command()
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
    from stream_engine.runtime import collector
    from stream_engine.runtime.worker import serve

    _setup_logging(verbose)
    pipeline = _load(config, environment, allow_outside)
    kafka = _kafka(pipeline, broker)

    def ready(worker: Any, endpoint: Any) -> None:
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


@main.command()
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
    verbose: bool,
) -> None:
    """Start a local Kafka-compatible broker (Tansu, in memory; no Docker, no Java), create
    the topics, and run every stage. Prints 'broker: 127.0.0.1:PORT' when ready; publish with
    'stream-engine publish' and read with 'stream-engine tail' in another shell."""
    from stream_engine.runtime.worker import dev as run_dev

    _setup_logging(verbose)
    pipeline = _load(config, environment, allow_outside)

    def announce(bootstrap: str) -> None:
        out.print(f"broker: {bootstrap}", markup=False)
        out.print(f"input topic: {_input_topic(pipeline)} (Ctrl-C to stop)", markup=False)

    def metrics(url: str) -> None:
        out.print(f"metrics: {url}", markup=False)

    options: dict[str, Any] = {
        "metrics_port": metrics_port,
        "metrics_host": metrics_host,
        "announce_metrics": metrics,
    }
    if not demo:
        asyncio.run(run_dev(pipeline, port, announce, **options))
        return
    with _live_summary() as show:
        asyncio.run(run_dev(pipeline, port, announce, rate, show, **options))


STATUSES = ("approved", "rejected", "review", "completed", "dead_letter")


def _summary_view(summary: Any) -> Any:
    """The demo's summary: decisions by status, top failing rules, dead letters by reason."""
    from rich.console import Group

    table = Table(title="decisions so far", expand=False)
    table.add_column("published", justify="right")
    for status in STATUSES:
        table.add_column(status, justify="right")
    table.add_row(str(summary.published), *(str(summary.statuses.get(s, 0)) for s in STATUSES))
    failing = ", ".join(f"{rule} {n}" for rule, n in summary.failing.most_common(5)) or "-"
    letters = ", ".join(f"{r} {n}" for r, n in summary.dead_letters.most_common()) or "-"
    return Group(table, f"top failing rules: {failing}", f"dead letters: {letters}")


@contextlib.contextmanager
def _live_summary() -> Iterator[Callable[[Any], None]]:
    """Updates the summary in place on a terminal; elsewhere (logs, pipes) prints one line
    every ten seconds and once at the end."""
    if out.is_terminal:
        from rich.live import Live

        with Live(console=out, auto_refresh=False) as live:
            yield lambda summary: live.update(_summary_view(summary), refresh=True)
        return
    last: list[Any] = [0.0, None]

    def text(summary: Any) -> str:
        counts = " ".join(f"{s}={summary.statuses.get(s, 0)}" for s in STATUSES)
        return f"published={summary.published} {counts}"

    def line(summary: Any) -> None:
        last[1] = summary
        now = time.monotonic()
        if now - last[0] >= 10.0:
            last[0] = now
            out.print(text(summary), markup=False)

    yield line
    if last[1] is not None:
        out.print(text(last[1]), markup=False)


@main.group()
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
    from stream_engine.runtime.topics import create_topics, topic_specs

    pipeline = _load(config, environment, allow_outside)
    specs = topic_specs(pipeline)
    outcome = asyncio.run(create_topics(specs, _kafka(pipeline, broker)))
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
    from stream_engine.runtime.topics import describe_topics, topic_specs

    pipeline = _load(config, environment, allow_outside)
    specs = topic_specs(pipeline)
    counts = asyncio.run(describe_topics([s.name for s in specs], _kafka(pipeline, broker)))
    table = Table(title=f"{pipeline.plan.name} topics")
    for column in ("topic", "kind", "partitions", "declared"):
        table.add_column(column)
    for spec in specs:
        have = counts.get(spec.name)
        table.add_row(
            spec.name, spec.kind, "missing" if have is None else str(have), str(spec.partitions)
        )
    out.print(table)


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
    from stream_engine.runtime.acls import Principals, acl_script

    pipeline = _load(config, environment, allow_outside)
    who = Principals(workers, producers, consumers, consumer_groups or "")
    sys.stdout.write(acl_script(pipeline, who))


@main.command()
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
    file: Any,
    environment: str | None,
    allow_outside: bool,
    broker: str | None,
    fmt: str,
    rate: float | None,
) -> None:
    """Publish JSON lines or CSV rows ('-' for stdin) to the pipeline's input topic, keyed by
    the record id field, with a progress bar and a final count."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from stream_engine.runtime.tools import publish as send
    from stream_engine.runtime.tools import read_records

    pipeline = _load(config, environment, allow_outside)
    topic = _input_topic(pipeline)
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
                _kafka(pipeline, broker),
                pipeline.plan.key_field,
                rate,
                lambda n: progress.advance(task, n),
            )
        )
    err.print(f"published {sent} record(s) to {topic}", markup=False)


@main.command()
@CONFIG_ARG
@click.argument("which", type=click.Choice(["decisions", "rejected", "review", "dlq", "all"]))
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
    from stream_engine.runtime.tools import tail as follow
    from stream_engine.runtime.topics import pipeline_topics

    pipeline = _load(config, environment, allow_outside)
    names = pipeline_topics(pipeline)
    chosen = ["decisions", "rejected", "review", "dlq"] if which == "all" else [which]

    async def go() -> None:
        async for message in follow(
            [names.for_output(w) for w in chosen],
            _kafka(pipeline, broker),
            from_beginning,
            count,
            idle_timeout,
        ):
            _write_json(message)
            sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())


@main.group()
def dlq() -> None:
    """Work with the dead-letter topic."""


def _since(value: str | None) -> Any:
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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

    from stream_engine.runtime.integrity import envelope_auth
    from stream_engine.runtime.replay import MALFORMED, UNVERIFIED, ReplayFilter, replay
    from stream_engine.runtime.topics import pipeline_topics

    pipeline = _load(config, environment, allow_outside)
    names = pipeline_topics(pipeline)
    unknown = [s for s in stages if s not in names.stage_inputs]
    if unknown:
        raise ConfigError("--stage", f"not an enabled stage: {', '.join(unknown)}")
    chosen = ReplayFilter(frozenset(reasons), frozenset(stages), _since(since))
    keys = envelope_auth(pipeline)  # letters are verified: a forged one is never replayed
    with Progress(
        TextColumn("scanning " + names.dlq), BarColumn(), MofNCompleteColumn(), console=err,
        transient=True, disable=not err.is_terminal,
    ) as bar:  # fmt: skip
        task = bar.add_task("scan", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = asyncio.run(
            replay(names, _kafka(pipeline, broker), chosen, dry_run, progress, auth=keys)
        )
    table = Table(title="would replay" if dry_run else "replayed")
    for column in ("stage", "reason", "dead letters"):
        table.add_column(column)
    for (stage, reason), count in sorted(summary.by_stage_reason.items()):
        table.add_row(stage, reason, str(count))
    out.print(table)
    for named in summary.malformed:
        err.print(f"skipped {named}", markup=False)
    unnamed = summary.skipped.get(MALFORMED, 0) + summary.skipped.get(UNVERIFIED, 0)
    unnamed -= len(summary.malformed)
    if unnamed > 0:
        err.print(f"skipped {unnamed} more malformed or unverified letter(s)", markup=False)
    skipped = ", ".join(f"{why} {n}" for why, n in summary.skipped.items()) or "none"
    verb = "would replay" if dry_run else "replayed"
    err.print(
        f"scanned {summary.scanned} dead letter(s); {verb} "
        f"{sum(summary.by_stage_reason.values())}; skipped: {skipped}",
        markup=False,
    )
    if summary.unfinished:
        stalled = ", ".join(
            f"partition {p} at offset {at} of {end}"
            for p, (at, end) in sorted(summary.unfinished.items())
        )
        raise StreamEngineError(f"{names.dlq}: stopped short, no progress: {stalled}")


CATALOGUE_FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table per class, or JSON (name → description, params, required).",
)


def _print_catalogue(kind: str, catalogue: dict[str, dict[str, Any]], fmt: str) -> None:
    """Each class's whole description, then a table of its params: type, default, meaning."""
    if fmt == "json":
        _write_json(catalogue)
        return
    for name, info in catalogue.items():
        out.print(f"[bold]{name}[/bold] ({kind} class)")
        out.print(info["description"] or "(no description)", markup=False)
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("param", no_wrap=True)
        table.add_column("type", overflow="fold")
        table.add_column("default", overflow="fold")
        table.add_column("meaning", overflow="fold")
        for param, p in info["params"].items():
            default = "required" if p["required"] else orjson.dumps(p["default"]).decode()
            table.add_row(param, p["type"], default, p["description"], style=None)
        out.print(table)
        out.print()


@main.command()
@click.argument("name", required=False)
@CATALOGUE_FORMAT_OPTION
@boundary
def rules(name: str | None, fmt: str) -> None:
    """List the rule classes a pipeline can name (or the one NAME): what each does, and each
    param's type, default and meaning."""
    from stream_engine.catalogue import catalogue
    from stream_engine.rules import RULES

    _print_catalogue("rule", catalogue(RULES, name), fmt)


@main.command()
@click.argument("name", required=False)
@CATALOGUE_FORMAT_OPTION
@boundary
def services(name: str | None, fmt: str) -> None:
    """List the service classes a services: entry can name (or the one NAME): what each
    does, and each param's type, default and meaning."""
    from stream_engine.catalogue import catalogue
    from stream_engine.services import SERVICES

    _print_catalogue("service", catalogue(SERVICES, name), fmt)


if __name__ == "__main__":
    main()
