"""The benchmark's output: a table for people, one JSON line for machines."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the harness needs psutil (the bench extra); the report does not
    from benchmarks.harness import Result

#: Keys of the JSON line, in order (``stream_engine`` is the better of its two layouts).
JSON_SYSTEMS = (
    "stream_engine_one_worker",
    "stream_engine_per_stage",
    "raw_aiokafka",
    "quixstreams",
    "faust_naive",
)
STATUSES = ("approved", "rejected", "review", "dead_letter")


def _num(value: float, digits: int = 0) -> str:
    return "-" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _counts(result: Result) -> str:
    return "/".join(str(result.counts.get(status, 0)) for status in STATUSES)


def table(results: Sequence[Result], title: str) -> Table:
    """One row per system. CPU columns are seconds per 1,000 records within the window: the
    system's processes, the embedded broker, and this benchmark's own process."""
    grid = Table(title=title, title_justify="left")
    for name, justify in (
        ("system", "left"),
        ("records/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("CPU s/1k", "right"),
        ("broker s/1k", "right"),
        ("bench s/1k", "right"),
        ("RSS MB", "right"),
        ("procs", "right"),
        ("window s", "right"),
        ("start-up s", "right"),
        ("approved/rejected/review/dlq", "left"),
        ("missing", "right"),
        ("dup", "right"),
    ):
        grid.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        grid.add_row(
            r.system,
            _num(r.records_per_s),
            _num(r.p50_ms),
            _num(r.p99_ms),
            _num(r.cpu_per_1k, 3),
            _num(r.broker_cpu_per_1k, 3),
            _num(r.bench_cpu_per_1k, 3),
            _num(r.peak_rss_bytes / 2**20, 0),
            str(r.processes),
            _num(r.window_s, 2),
            _num(r.startup_s, 2),
            _counts(r),
            str(r.missing),
            str(r.duplicates),
        )
    return grid


def print_report(results: Sequence[Result], title: str, console: Console) -> None:
    """The table, then any errors."""
    console.print(table(results, title))
    for r in results:
        if r.error:
            console.print(f"[red]{r.system} failed:[/red] {r.error}", markup=True)


def summary(results: Sequence[Result], records: int) -> dict[str, float | int | None]:
    """``{"stream_engine": best of its layouts, <system>: records/s or null, "records": N}``."""
    rates: dict[str, float | None] = dict.fromkeys(JSON_SYSTEMS)
    for r in results:
        rate = r.records_per_s
        rates[r.system] = round(rate, 1) if math.isfinite(rate) else None
    engine = [v for k, v in rates.items() if k.startswith("stream_engine") and v is not None]
    return {"stream_engine": max(engine, default=None), **rates, "records": records}


#: Issue 6's "done when": stream_engine at least the peer, and at least half the limit.
TARGETS = (("quixstreams", 1.0), ("raw_aiokafka", 0.5))


def target_lines(rates: dict[str, float | int | None]) -> list[str]:
    """One line per target whose systems both ran: the ratio, the target, met or not."""
    engine = rates.get("stream_engine")
    lines = []
    for other, wanted in TARGETS:
        rate = rates.get(other)
        if not engine or not rate:
            continue
        ratio = engine / rate
        verdict = "met" if ratio >= wanted else "not met"
        lines.append(
            f"target: stream_engine / {other} = {ratio:.2f} (at least {wanted:g}): {verdict}"
        )
    return lines


def json_line(results: Sequence[Result], records: int) -> str:
    """The last line of the output."""
    return json.dumps(summary(results, records))
