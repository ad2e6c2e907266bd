"""The HTTP API against the pipeline's own latency: the customer-onboarding pipeline (5
stages, simulated services at zero latency) on one broker - Apache Kafka by default
(tests/kafka/apache_kafka.py, one KRaft node), or the embedded Tansu broker - with its stage
workers (`stream-engine run --stage S`, one per stage, as benchmarks/run.py's
stream_engine_per_stage; ``--layout one`` for one worker) and one API process
(`stream-engine serve CONFIG --api-port 0`, one API key: the benchmark's, with no rate
limit), warmed up first.

At each rate of ``--rates`` (default 50 and 200 per second), ``--duration-s`` each, in
``--rounds`` turns (so a change in the machine's load falls on both alike):

* pipeline: fresh records published to the input topic at the rate and their decisions read
  from the output topics - benchmarks/run.py's ``--rate`` measurement, its Publisher and
  Collector (latency: publish -> decision seen), the publisher lingering as the API's does;
* decide: as many fresh records through ``POST /v1/decide`` at the same rate from an aiohttp
  client (open loop, at most ``--concurrency`` in flight; latency: request sent -> answer
  read, as the pipeline's is from publishing).

The target (issue 16): decide's p99 at most the pipeline's own p99 + 10 ms at every rate.
Beside it, where a call's time goes: its mean as the caller sees it, inside the API process
(the API's own request-duration histogram), the pipeline's mean, and ``GET /health`` round
trips made during the phase (the HTTP hop with no Kafka in it).

Then the capacity sweep: decide alone at the highest rate compared, then from ``--sweep-from``
doubled each step (of ``--step-s``) until the p99 - here from each request's due time, so a
request waiting for a free slot counts its wait - reaches 1 s or an answer is a 202 or an
error; the last rate that held is the most one API process sustained. CPU is seconds per
1,000 calls (or records) within each phase's window (psutil every 0.2 s): the API process,
the workers, this benchmark's process. ``--profile`` runs the API process under cProfile in
CPU time (benchmarks/profiled.py) and prints where its time went by package (such a run is
slower: use it to see what dominates, not for the figures).

The last line of the output is one JSON object with the figures. The default run takes about
3 minutes.

    .venv/bin/python benchmarks/api.py [--broker-kind kafka|embedded] [--layout per-stage|one]
        [--rates 50,200] [--duration-s 30] [--sweep-from 400] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from benchmarks.api_load import holds, sweep_rates  # noqa: E402
from benchmarks.api_report import (  # noqa: E402
    Comparison,
    Step,
    comparison_table,
    json_line,
    merged,
    summary,
    sweep_table,
    target_lines,
    where_table,
)
from benchmarks.api_stack import Stack  # noqa: E402
from benchmarks.records import bench_records, warmup_records  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker-kind", choices=("kafka", "embedded"), default="kafka")
    parser.add_argument(
        "--broker", default=None, help="use this running broker (HOST:PORT) instead of one's own"
    )
    parser.add_argument(
        "--layout",
        choices=("one", "per-stage"),
        default="per-stage",
        help="the stage workers: one `stream-engine run --stage S` per stage (default: the "
        "lower latency and higher rate here) or one for all five (benchmarks/run.py's "
        "stream_engine_per_stage / _one_worker)",
    )
    parser.add_argument("--rates", default="50,200", help="rates compared (default 50,200)")
    parser.add_argument("--duration-s", type=float, default=30.0, help="per rate and phase")
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns of pipeline then decide per rate (default 3)"
    )
    parser.add_argument("--sweep-from", type=float, default=400.0, help="first sweep rate")
    parser.add_argument("--sweep-max", type=float, default=3200.0, help="last sweep rate at most")
    parser.add_argument("--step-s", type=float, default=10.0, help="seconds per sweep step")
    parser.add_argument("--no-sweep", action="store_true", help="compare only")
    parser.add_argument("--concurrency", type=int, default=64, help="decide calls in flight")
    parser.add_argument("--profile", action="store_true", help="cProfile the API process")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs)")
    args = parser.parse_args(argv)
    try:
        args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error("--rates takes numbers separated by commas")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.rate_list or min(args.rate_list) <= 0:
        parser.error("--rates needs at least one positive rate")
    args.sweep = [] if args.no_sweep else sweep_rates(args.sweep_from, args.sweep_max)
    if args.sweep and max(args.rate_list) < args.sweep[0]:
        args.sweep.insert(0, max(args.rate_list))  # the highest rate compared comes first
    return args


class Records:
    """Fresh unique records (benchmarks/records.py), handed out in order, never twice."""

    def __init__(self, count: int) -> None:
        self._records = bench_records(count)
        self._next = 0

    def take(self, count: int) -> list[Any]:
        """The next ``count`` records."""
        taken = self._records[self._next : self._next + count]
        if len(taken) < count:
            raise RuntimeError("ran out of benchmark records")
        self._next += count
        return taken


def record_budget(args: argparse.Namespace) -> int:
    """How many records every phase together needs."""
    compare = sum(
        2 * args.rounds * int(rate * args.duration_s / args.rounds) for rate in args.rate_list
    )
    return compare + sum(int(rate * args.step_s) for rate in args.sweep)


async def compare(
    stack: Stack, pool: Records, rate: float, seconds: float, rounds: int
) -> Comparison:
    """The pipeline's own latency at ``rate``, then decide's at the same rate, taking turns
    ``rounds`` times (so a change in the machine's load falls on both alike)."""
    count = int(rate * seconds / rounds)
    pipeline, decide = [], []
    for _ in range(rounds):
        pipeline.append(await stack.pipeline_phase(pool.take(count), rate))
        decide.append(await stack.decide_phase(pool.take(count), rate))
    return Comparison(merged(pipeline), merged(decide))


async def sweep(stack: Stack, pool: Records, rates: list[float], seconds: float) -> list[Step]:
    """Decide at each rate until one does not hold."""
    steps: list[Step] = []
    for rate in rates:
        count = int(rate * seconds)
        phase = await stack.decide_phase(pool.take(count), rate, from_due=True)
        steps.append(Step(phase, holds(phase.figures, count)))
        if not steps[-1].held:
            break
    return steps


async def bench(
    args: argparse.Namespace, stack: Stack, console: Console
) -> tuple[list[Comparison], list[Step]]:
    """Start everything, warm up, compare at each rate, then sweep; stop everything."""
    pool = Records(record_budget(args))
    try:
        await stack.start()
        console.print(f"api at {stack.api_url}; warming up", markup=False)
        await stack.warm_up(warmup_records(120))
        return await measure(args, stack, pool, console)
    finally:
        await stack.close()


async def measure(
    args: argparse.Namespace, stack: Stack, pool: Records, console: Console
) -> tuple[list[Comparison], list[Step]]:
    """Compare at each rate, then sweep."""
    rows: list[Comparison] = []
    for rate in args.rate_list:
        console.print(
            f"rate {rate:g}/s: pipeline and decide, {args.duration_s:g} s each, "
            f"in {args.rounds} turns"
        )
        rows.append(await compare(stack, pool, rate, args.duration_s, args.rounds))
    steps: list[Step] = []
    if args.sweep:
        console.print(f"sweep: {', '.join(f'{r:g}' for r in args.sweep)}/s, until p99 >= 1 s")
        steps = await sweep(stack, pool, args.sweep, args.step_s)
    return rows, steps


@contextlib.contextmanager
def broker_for(kind: str, fixed: str | None, scratch: Path) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, broker pid or None): the given broker, or one of ``kind`` of our own, always
    stopped at the end."""
    if fixed:
        yield fixed, None
        return
    if kind == "kafka":
        sys.path.insert(0, str(ROOT / "tests" / "kafka"))
        from apache_kafka import ApacheKafka

        with ApacheKafka(scratch / "kafka" / "data", log_file=scratch / "kafka.log") as node:
            yield node.bootstrap, node.pid
        return
    from stream_engine.runtime.cluster.broker import EmbeddedBroker

    with EmbeddedBroker(0, scratch / "tansu.log") as embedded:
        yield embedded.bootstrap, embedded.pid


def main(argv: Sequence[str] | None = None) -> None:
    """Run, print the tables and target lines, and end with the JSON line."""
    args = parse_args(argv)
    console = Console(stderr=True)
    out = Console(width=200)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="stream-engine-apibench-"))
    broker = args.broker or args.broker_kind
    failed = False
    with broker_for(args.broker_kind, args.broker, scratch) as (bootstrap, broker_pid):
        stack = Stack(
            bootstrap, f"apibench{uuid.uuid4().hex[:6]}", scratch, args.layout, broker_pid,
            profile=args.profile, concurrency=args.concurrency,
        )  # fmt: skip
        try:
            rows, steps = asyncio.run(bench(args, stack, console))
        except Exception as exc:  # noqa: BLE001 - report what failed, with the logs
            console.print(f"failed: {type(exc).__name__}: {exc}", markup=False)
            rows, steps, failed = [], [], True
        finally:
            stack.stop()
    title = (
        f"customer_onboarding, POST /v1/decide vs the pipeline's own latency, broker {broker}, "
        f"workers: {args.layout}, {args.concurrency} in flight"
    )
    if rows:
        out.print(comparison_table(rows, title + f", {args.duration_s:g} s per phase"))
        out.print(where_table(rows, "where a decide call's time goes (ms), and the CPU"))
    if steps:
        out.print(sweep_table(steps, f"capacity sweep, {args.step_s:g} s per rate"))
    if args.profile:
        out.print(stack.profile_report(), markup=False)
    keep = args.keep or failed or args.profile
    where = f"; logs in {scratch}" if keep else ""
    out.print(f"wall time {time.monotonic() - started:.0f} s{where}", markup=False)
    if not keep:
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()[0]
    out.print(
        f"load average (1 min): {load_before:.1f} at the start, {load_after:.1f} at the end "
        f"({os.cpu_count()} cores, shared with whatever else runs here)",
        markup=False,
    )
    for line in target_lines(rows, steps):
        out.print(line, markup=False)
    load = {"load_1m_start": round(load_before, 2), "load_1m_end": round(load_after, 2)}
    print(json_line(summary(rows, steps, broker, args.layout, **load)), flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
