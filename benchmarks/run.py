"""End-to-end throughput: the customer-onboarding pipeline (5 stages) over Kafka, the same N
records through each system, on one broker, in one run.

Systems (``--systems``, comma-separated; default all):
  stream_engine_one_worker  stream_engine, all stages in one `stream-engine run` worker
  stream_engine_per_stage   stream_engine, one `stream-engine run --stage S` per stage
  raw_aiokafka              the limit: aiokafka pass-through over the same 5 hops, no rules
  quixstreams               the peer: the same rules by hand in a Quix Streams application
  faust_naive               the same rules by hand as plain faust agents (await send per record)
  (``stream_engine`` selects both stream_engine layouts.)

Every system gets fresh topics (a prefix per run and system: <prefix>.input,
<prefix>.stage.<s>, <prefix>.decisions|rejected|review|dlq; 4 partitions, as the pipeline's
topics file says) and, on the embedded broker (the default), a broker of its own, started
before and stopped after it. Records: N copies of the 300 samples, each with a unique
application_id and varied e-mail / SSN / phone digits (validity kept).

Preload mode (default): all N records are published first, then the system is started.
Timed: from the first message the first stage forwards (so process start-up and the
consumer-group join are excluded; they show as "start-up s") to the last decision seen on an
output topic; records/s = N / that window. Latency is publish -> decision seen, so with a
preloaded input it is mostly queueing. --rate R: the system is started and warmed up first,
then N records are published at R/s while it runs; the window starts at the first publish,
and latency is meaningful. CPU s/1k: CPU seconds (user+system, children included) of the
system's processes within the window, per 1,000 records; peak RSS: the largest sum over its
processes, sampled every 0.2 s. The last line of the output is one JSON object with
records/s per system ("stream_engine" is the better of its two layouts; null = not run or
did not finish).

    .venv/bin/python benchmarks/run.py [--records N] [--systems a,b] [--rate R] [--broker H:P]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Result, RunSettings, run_system, workdir_for  # noqa: E402
from benchmarks.records import bench_records, warmup_records  # noqa: E402
from benchmarks.report import json_line, print_report, summary, target_lines  # noqa: E402
from benchmarks.systems import SYSTEMS, Context  # noqa: E402

ALIASES = {"stream_engine": ["stream_engine_one_worker", "stream_engine_per_stage"]}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50_000, help="N (default 50000)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated systems to run, in this order (default: all)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="publish at R records/s while the system runs (latency mode) instead of preloading",
    )
    parser.add_argument(
        "--broker",
        default=None,
        help="use this broker (HOST:PORT) for every system instead of an embedded one each",
    )
    parser.add_argument(
        "--driver",
        default=None,
        help="set runtime.driver (e.g. faust, batch) in stream_engine's config copy; "
        "without it the config's own setting applies",
    )
    parser.add_argument(
        "--guarantee",
        choices=("at_least_once", "exactly_once"),
        default=None,
        help="set runtime.processing_guarantee in stream_engine's config copy (exactly_once "
        "needs a broker with transactions: --broker); outputs are then read read_committed",
    )
    parser.add_argument(
        "--raw-layout",
        choices=("per-stage", "one"),
        default="per-stage",
        help="raw_aiokafka: one process per hop (default, the faster here) or one for all",
    )
    parser.add_argument(
        "--peer-layout",
        choices=("per-stage", "one"),
        default="per-stage",
        help="quixstreams and faust_naive: one process per stage (default, the faster here) "
        "or one process for all stages",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per system before giving up"
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=3000,
        help="consumer session timeout of every system (the embedded broker makes a group "
        "join wait half of it; default 3000)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs)")
    args = parser.parse_args(argv)
    args.system_list = selected_systems(parser, args.systems)
    if args.records < 1:
        parser.error("--records must be at least 1")
    return args


def selected_systems(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """Names from ``--systems``, aliases expanded, duplicates dropped."""
    names: list[str] = []
    for raw in (part.strip() for part in text.split(",")):
        for name in ALIASES.get(raw, [raw] if raw else []):
            if name not in SYSTEMS:
                parser.error(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
            if name not in names:
                names.append(name)
    return names


@contextmanager
def broker_for(fixed: str | None) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, embedded broker port or None): the given broker, or a fresh embedded one
    that is always stopped."""
    if fixed:
        yield fixed, None
        return
    from stream_engine.runtime.cluster.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    try:
        yield broker.start(), broker.port
    finally:
        broker.stop()


async def bench(args: argparse.Namespace, console: Console, scratch: Path) -> list[Result]:
    """Run every selected system in turn."""
    records = bench_records(args.records)
    warmup = warmup_records()
    run_id = uuid.uuid4().hex[:6]
    settings = RunSettings(rate=args.rate, timeout_s=args.timeout)
    results: list[Result] = []
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        for name in args.system_list:
            task = progress.add_task(name, total=args.records, stage="")

            def report(label: str, done: int, total: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=total or None, stage=label)

            with broker_for(args.broker) as (bootstrap, port):
                context = Context(
                    bootstrap=bootstrap,
                    prefix=f"bench{run_id}_{name}",
                    workdir=workdir_for(scratch, name),
                    driver=args.driver,
                    guarantee=args.guarantee,
                    raw_layout=args.raw_layout,
                    peer_layout=args.peer_layout,
                    session_timeout_ms=args.session_timeout_ms,
                )
                result = await run_system(
                    SYSTEMS[name], context, settings, records, warmup, report, port
                )
            results.append(result)
            progress.update(task, stage=_verdict(result))
    return results


def _verdict(result: Result) -> str:
    if result.error:
        return "failed"
    if result.missing:
        return f"timed out, {result.missing} missing"
    return f"{result.records_per_s:,.0f} records/s"


def main(argv: Sequence[str] | None = None) -> None:
    """Run, print the table, and end with the JSON line."""
    args = parse_args(argv)
    console = Console(stderr=True)
    out = Console(width=200)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="stream-engine-bench-"))
    results = asyncio.run(bench(args, console, scratch))
    mode = f"rate {args.rate:g}/s" if args.rate else "preloaded input"
    title = (
        f"customer_onboarding, {args.records:,} records, {mode}, "
        f"{'broker ' + args.broker if args.broker else 'embedded broker per system'}"
    )
    print_report(results, title, out)
    keep = args.keep or any(r.error or r.missing for r in results)
    where = f"; logs in {scratch}" if keep else ""
    out.print(f"wall time {time.monotonic() - started:.0f} s{where}", markup=False)
    if not keep:
        shutil.rmtree(scratch, ignore_errors=True)
    for line in target_lines(summary(results, args.records)):
        out.print(line, markup=False)
    print(json_line(results, args.records), flush=True)


if __name__ == "__main__":
    main()
