"""The ``stream-engine`` command. Thin: parse options, call the layers, print."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.table import Table

from stream_engine import __version__
from stream_engine.config.compiler import CompiledPipeline
from stream_engine.errors import ConfigError, ConfigErrors, StreamEngineError

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


def _load(config: Path, environment: str | None) -> CompiledPipeline:
    from stream_engine.pipeline import load_pipeline

    return load_pipeline(config, environment)


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@boundary
def validate(config: Path, environment: str | None, fmt: str) -> None:
    """Check a pipeline file: structure, rule classes and params, services, dependencies
    (unknown, cyclic, later-stage), timeouts and CEL expressions.

    Prints every error on its own line with its location and exits 1, or a summary and 0.
    """
    try:
        pipeline = _load(config, environment)
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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "mermaid", "json"]),
    default="table",
    show_default=True,
    help="A table, a Mermaid flowchart, or JSON.",
)
@boundary
def plan(config: Path, environment: str | None, fmt: str) -> None:
    """Show how a pipeline will run: stages in order, their options, the rules of each
    dependency level (rules of one level are independent), and the topics."""
    from stream_engine.offline import plan_mermaid, plan_rows, plan_summary
    from stream_engine.runtime.names import default_topic_names

    compiled = _load(config, environment).plan
    if fmt == "mermaid":
        sys.stdout.write(plan_mermaid(compiled))
        return
    if fmt == "json":
        _write_json(plan_summary(compiled))
        return
    table = Table(title=f"{compiled.name} {compiled.version} (hash {compiled.config_hash})")
    for column in ("stage", "options", "levels (rules)", "consumes"):
        table.add_column(column, overflow="fold")
    for row in plan_rows(compiled):
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
    topics = default_topic_names(compiled)
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


@main.command(name="eval")
@CONFIG_ARG
@ENV_OPTION
@click.option(
    "--stage", metavar="STAGE", help="Run only this stage and print its results and route."
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
def eval_(config: Path, environment: str | None, stage: str | None, input_file: Any) -> None:
    """Evaluate JSON records (one object per line) through the pipeline, without Kafka.

    Prints one JSON decision per input line: record_id, status (approved, rejected, review,
    completed, dead_letter), decided_by_stage, failed_rules, reasons, results, data, audit,
    cost. A line that is not a JSON object gets a dead_letter answer; the next line still runs.
    """
    from stream_engine.offline import OfflineEvaluator, decode_lines

    pipeline = _load(config, environment)
    if stage is not None and stage not in [s.name for s in pipeline.plan.stages]:
        raise ConfigError("--stage", f"unknown stage '{stage}'")
    evaluator = OfflineEvaluator(pipeline)

    async def run() -> None:
        items = decode_lines(input_file)
        answers = evaluator.stage_results(stage, items) if stage else evaluator.decisions(items)
        try:
            async for answer in answers:
                _write_json(answer)
        finally:
            await pipeline.close()

    asyncio.run(run())


@main.command()
@CONFIG_ARG
@click.argument("cases_file", metavar="CASES", type=click.Path(dir_okay=False, path_type=Path))
@ENV_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Also list the cases that pass.")
@boundary
def test(config: Path, cases_file: Path, environment: str | None, verbose: bool) -> None:
    """Run configuration test cases: each case is an input record with the expected status,
    deciding stage, failed rules, rule outcomes and field values. One line per case; exit 1
    if any fails."""
    from stream_engine.casetest import load_cases, run_cases

    cases = load_cases(cases_file)
    pipeline = _load(config, environment or cases.environment)

    async def run() -> list[Any]:
        try:
            return await run_cases(pipeline, cases)
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


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
def rules(fmt: str) -> None:
    """List the rule classes a pipeline can name, with their parameters."""
    from stream_engine.rules import RULES

    catalogue: dict[str, dict[str, Any]] = {}
    for name in RULES.names():
        cls = RULES.get(name)
        schema = cls.Params.model_json_schema()
        catalogue[name] = {
            "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
            "params": sorted(schema.get("properties", {})),
            "required": sorted(schema.get("required", [])),
        }
    if fmt == "json":
        _write_json(catalogue)
        return
    table = Table(title="rule classes")
    table.add_column("class")
    table.add_column("params (* required)", overflow="fold")
    table.add_column("what it does", overflow="fold")
    for name, info in catalogue.items():
        params = ", ".join(p + ("*" if p in info["required"] else "") for p in info["params"])
        table.add_row(name, params, info["description"])
    out.print(table)


if __name__ == "__main__":
    main()
