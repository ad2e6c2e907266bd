"""Core throughput: the onboarding samples through every stage, in-process, no Kafka.

Simulated services answer at zero latency, so this measures the engine itself: rule
evaluation, dependency handling, routing and bookkeeping. Runs on one core (one event loop).

    python benchmarks/core.py [--records N] [--batch B] [--unique] [--hand-written]

``--unique`` gives every record its own id, e-mail, phone and SSN (benchmarks/records.py)
instead of cycling the 300 samples; ``--hand-written`` also times the same rules written by
hand as plain functions (benchmarks/peers/onboarding_rules.py) on the same records - the
floor for any engine running these rules with these libraries.

The last line is ``core_records_per_s <N>``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_engine.core.executor import Executor  # noqa: E402
from stream_engine.core.state import RecordState  # noqa: E402
from stream_engine.pipeline import load_pipeline  # noqa: E402
from stream_engine.runtime.observe import gc_tuning as collector  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs/customer_onboarding.yaml")
    parser.add_argument(
        "--samples", type=Path, default=ROOT / "configs/samples/customer_onboarding.jsonl"
    )
    parser.add_argument(
        "--records", type=int, default=30_000, help="records to evaluate (default 30000)"
    )
    parser.add_argument("--batch", type=int, default=500, help="records per batch (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument(
        "--unique", action="store_true", help="unique records instead of cycling the samples"
    )
    parser.add_argument(
        "--hand-written", action="store_true", help="also time the rules written by hand"
    )
    return parser.parse_args()


async def timed_run(
    executor: Executor, samples: list[dict], records: int, batch: int, key: str | None
) -> tuple[float, Counter]:
    statuses: Counter = Counter()
    inputs = [copy.deepcopy(samples[i % len(samples)]) for i in range(records)]
    started = time.perf_counter()
    for offset in range(0, records, batch):
        states = [RecordState.from_input(record, key) for record in inputs[offset : offset + batch]]
        for decision in await executor.run_records(states):
            statuses[decision.status.value] += 1
    return time.perf_counter() - started, statuses


def main() -> None:
    args = parse_args()
    pipeline = load_pipeline(args.config, environ={})
    samples = [
        orjson.loads(line) for line in args.samples.read_bytes().splitlines() if line.strip()
    ]
    if args.unique:
        from benchmarks.records import generate

        samples = list(generate(args.records, samples))
    executor = Executor(pipeline.plan, worker="bench")
    collector.settle()  # as `stream-engine run` does once its stages have started
    rules = sum(len(stage.rules) for stage in pipeline.plan.active_stages)

    async def run_all() -> list[tuple[float, Counter]]:
        await timed_run(
            executor, samples, min(2_000, args.records), args.batch, pipeline.plan.key_field
        )
        return [
            await timed_run(executor, samples, args.records, args.batch, pipeline.plan.key_field)
            for _ in range(args.repeat)
        ]

    runs = asyncio.run(run_all())
    best, statuses = min(runs, key=lambda run: run[0])
    rate = args.records / best
    plan = pipeline.plan
    stages = len(plan.active_stages)
    print(f"pipeline      {plan.name} {plan.version} ({stages} stages, {rules} rules)")
    print(f"samples       {len(samples)} distinct records from {args.samples.name}")
    if args.hand_written:
        hand = hand_written_rate(samples, args.records, args.repeat)
        print(f"hand-written  {hand:.0f} records/s (the same rules as plain functions)")
        print(f"engine/hand   {rate / hand:.2f}")
    print(f"records       {args.records} per run, batches of {args.batch}, best of {args.repeat}")
    print(f"runs (s)      {', '.join(f'{t:.3f}' for t, _ in runs)}")
    print(f"per record    {best / args.records * 1e6:.1f} µs")
    print(f"statuses      {dict(sorted(statuses.items()))}")
    print(f"core_records_per_s {rate:.0f}")


def hand_written_rate(samples: list[dict], records: int, repeat: int) -> float:
    """Records/s of the onboarding rules written by hand, one record after another."""
    from benchmarks.peers.onboarding_rules import decide

    best = float("inf")
    for _ in range(repeat):
        inputs = [copy.deepcopy(samples[i % len(samples)]) for i in range(records)]
        started = time.perf_counter()
        for record in inputs:
            decide(record)
        best = min(best, time.perf_counter() - started)
    return records / best


if __name__ == "__main__":
    main()
