"""The commands that need no broker: validate, plan, eval, test, rules and services."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from stream_engine.cli.options import (
    ALLOW_OUTSIDE_OPTION,
    CATALOGUE_FORMAT_OPTION,
    CONFIG_ARG,
    ENV_OPTION,
    boundary,
    load,
)
from stream_engine.cli.render import err, out, print_catalogue, print_plan, write_json
from stream_engine.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from stream_engine.casetest import CaseResult


@click.command()
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
        pipeline = load(config, environment, allow_outside)
    except (ConfigErrors, ConfigError) as exc:
        if fmt != "json":
            raise
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        write_json(
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
        write_json(
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


@click.command()
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
    from stream_engine.offline import plan_mermaid, plan_summary
    from stream_engine.runtime.cluster.topic_names import topic_names

    pipeline = load(config, environment, allow_outside)
    compiled = pipeline.plan
    topics = topic_names(compiled, pipeline.config.topics.names)
    if fmt == "mermaid":
        sys.stdout.write(plan_mermaid(compiled, topics))
        return
    if fmt == "json":
        write_json(plan_summary(compiled, topics))
        return
    print_plan(pipeline, topics)


@click.command(name="eval")
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
    input_file: BinaryIO,
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

    pipeline = load(config, environment, allow_outside)
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
                write_json(answer)
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
        "\b\nA case: name, input (the record), history (earlier records, decided in order\n"
        "before input and not checked, so stateful rules remember them), stage (run that stage\n"
        "alone), now (its decision time), services (name -> its answer for this case: a\n"
        'mapping such as {verified: false}, or {answer: {...}}, {error: "text"} to fail,\n'
        "{timeout: true} to time out), expect. Each case runs on a freshly compiled pipeline\n"
        "(new services, breakers, state).\n"
        f"\b\nexpect keys (each optional; only what is given is checked):\n{expect}\n"
        "\b\nA stage, rule or service name the pipeline does not define is an error of the file."
    )


@click.command(epilog=_test_epilog())
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
    pipeline = load(config, environment or cases.environment, allow_outside)
    check_cases(pipeline, cases)
    for warning in field_warnings(pipeline, cases):
        err.print(f"warning: {warning}", markup=False)

    async def run() -> list[CaseResult]:
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


@click.command()
@click.argument("name", required=False)
@CATALOGUE_FORMAT_OPTION
@boundary
def rules(name: str | None, fmt: str) -> None:
    """List the rule classes a pipeline can name (or the one NAME): what each does, and each
    param's type, default and meaning."""
    from stream_engine.catalogue import catalogue
    from stream_engine.rules import RULES

    print_catalogue("rule", catalogue(RULES, name), fmt)


@click.command()
@click.argument("name", required=False)
@CATALOGUE_FORMAT_OPTION
@boundary
def services(name: str | None, fmt: str) -> None:
    """List the service classes a services: entry can name (or the one NAME): what each
    does, and each param's type, default and meaning."""
    from stream_engine.catalogue import catalogue
    from stream_engine.services import SERVICES

    print_catalogue("service", catalogue(SERVICES, name), fmt)


COMMANDS = (validate, plan, eval_, test, rules, services)
