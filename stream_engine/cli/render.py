"""What the commands print: the rich consoles, JSON lines, and the tables of ``plan``,
``rules``/``services`` and the ``dev --demo`` summary."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console, Group
from rich.table import Table

from stream_engine.core.outcome import Status

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline
    from stream_engine.runtime.cluster.topic_names import TopicNames
    from stream_engine.runtime.cluster.topics import TopicSpec
    from stream_engine.runtime.process import Summary
    from stream_engine.runtime.tools.replay import ReplaySummary

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def write_json(value: object) -> None:
    """``value`` as one JSON line on stdout."""
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE))


def print_plan(pipeline: CompiledPipeline, topics: TopicNames) -> None:
    """``plan``'s table: each stage's options, levels, topic and - when some stage keeps
    state - what its records are keyed by and its stores (else one line says every stage is
    keyed by the record id); then outputs and policies."""
    from stream_engine.offline import plan_rows

    compiled = pipeline.plan
    rows = plan_rows(compiled, topics)
    keyed = any(row["stores"] for row in rows)
    table = Table(title=f"{compiled.name} {compiled.version} (hash {compiled.config_hash})")
    columns = ["stage", "options", "levels (rules)", "consumes"]
    for column in [*columns, "key and state"] if keyed else columns:
        table.add_column(column, overflow="fold")
    for row in rows:
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
        cells = [row["stage"], "\n".join(options), levels, row["topic"] or "-"]
        table.add_row(*cells, *([_key_cell(row)] if keyed else []))
    out.print(table)
    if not keyed and rows:
        out.print(
            f"keys: every stage's records are keyed by {_key_cell(rows[0])}: none keeps state"
        )
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


def _key_cell(row: dict[str, Any]) -> str:
    """A stage's key (``record id (input.key_field id)``, or its stores' key fields) and
    each store with its changelog topic, one per line."""
    key = row["key"]
    if key["by"] == "record_id":
        field = key["key_field"]
        lines = [f"record id (input.key_field {field})" if field else "record id"]
    else:
        lines = [", ".join(key["fields"]) + (" (hashed)" if key["hashed"] else "")]
    lines += [f"state {store['rule']} → {store['changelog']}" for store in row["stores"]]
    return "\n".join(lines)


def print_catalogue(kind: str, catalogue: dict[str, dict[str, Any]], fmt: str) -> None:
    """Each class's whole description, then a table of its params: type, default, meaning."""
    if fmt == "json":
        write_json(catalogue)
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


def print_topics(pipeline: str, specs: list[TopicSpec], counts: dict[str, int | None]) -> None:
    """``topics list``: each topic's kind, its partitions on the broker and as declared."""
    table = Table(title=f"{pipeline} topics")
    for column in ("topic", "kind", "partitions", "declared"):
        table.add_column(column)
    for spec in specs:
        have = counts.get(spec.name)
        table.add_row(
            spec.name, spec.kind, "missing" if have is None else str(have), str(spec.partitions)
        )
    out.print(table)


def print_replay(summary: ReplaySummary, dry_run: bool) -> None:
    """``dlq replay``: a table by stage and reason, then what was skipped and why."""
    from stream_engine.runtime.tools.replay import MALFORMED, UNVERIFIED

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


def summary_view(summary: Summary) -> Group:
    """The demo's summary: decisions by status, top failing rules, dead letters by reason."""
    table = Table(title="decisions so far", expand=False)
    table.add_column("published", justify="right")
    for status in Status:
        table.add_column(status, justify="right")
    table.add_row(str(summary.published), *(str(summary.statuses.get(s, 0)) for s in Status))
    failing = ", ".join(f"{rule} {n}" for rule, n in summary.failing.most_common(5)) or "-"
    letters = ", ".join(f"{r} {n}" for r, n in summary.dead_letters.most_common()) or "-"
    return Group(table, f"top failing rules: {failing}", f"dead letters: {letters}")


def summary_line(summary: Summary) -> str:
    """The demo's summary in one line, for logs and pipes."""
    counts = " ".join(f"{s}={summary.statuses.get(s, 0)}" for s in Status)
    return f"published={summary.published} {counts}"


@contextlib.contextmanager
def live_summary() -> Iterator[Callable[[Summary], None]]:
    """Updates the summary in place on a terminal; elsewhere (logs, pipes) prints one line
    every ten seconds and once at the end."""
    if out.is_terminal:
        from rich.live import Live

        with Live(console=out, auto_refresh=False) as live:
            yield lambda summary: live.update(summary_view(summary), refresh=True)
        return
    printed_at = 0.0
    latest: Summary | None = None

    def line(summary: Summary) -> None:
        nonlocal printed_at, latest
        latest = summary
        now = time.monotonic()
        if now - printed_at >= 10.0:
            printed_at = now
            out.print(summary_line(summary), markup=False)

    yield line
    if latest is not None:
        out.print(summary_line(latest), markup=False)
