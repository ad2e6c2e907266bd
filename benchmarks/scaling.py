"""Scaling of one stage over worker processes: the onboarding pipeline with only ``--stage``
enabled (its input topic has 4 partitions), N records preloaded, then 1, 2 and 4
``stream-engine run`` processes sharing the stage's consumer group.

Timed: from the first output message to the N-th (start-up and the group join are left out;
rebalances while the workers join are inside the window). One fresh broker per run.

    .venv/bin/python benchmarks/scaling.py [--records N] [--stage S] [--workers 1,2,4]
                                           [--driver batch|faust] [--broker HOST:PORT]

The last line is one JSON object ``{"workers_1": rps, "workers_2": rps, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.kafka_io import Publisher  # noqa: E402
from benchmarks.records import bench_records  # noqa: E402
from benchmarks.systems import CONFIG, STREAM_ENGINE, TOPICS_FILE  # noqa: E402
from stream_engine.runtime.cluster.broker import EmbeddedBroker  # noqa: E402

OUTPUTS = ("decisions", "rejected", "review", "dlq")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000, help="records (default 20000)")
    parser.add_argument(
        "--stage", default="preprocessing", help="the one enabled stage (default preprocessing)"
    )
    parser.add_argument(
        "--workers", default="1,2,4", help="worker process counts to try (default 1,2,4)"
    )
    parser.add_argument("--driver", choices=("batch", "faust"), default=None)
    parser.add_argument("--broker", default=None, help="an existing broker (default: embedded)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run (default 600 s)")
    return parser.parse_args()


def one_stage_config(workdir: Path, stage: str, driver: str | None) -> tuple[Path, str]:
    """A copy of the onboarding pipeline with only ``stage`` enabled, under a fresh name, its
    topics file copied beside it (a pipeline reads files in its own directory only)."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    name = f"scale_{uuid.uuid4().hex[:8]}"
    config["pipeline"] = name
    shutil.copyfile(TOPICS_FILE, workdir / f"{name}.topics.yaml")
    config["topics"]["file"] = f"{name}.topics.yaml"
    config.pop("samples", None)
    if stage not in config["stages"]:
        raise SystemExit(f"--stage: no stage {stage!r} (have {', '.join(config['stages'])})")
    for other, body in config["stages"].items():
        body["enabled"] = other == stage
    runtime = config.setdefault("runtime", {})
    runtime.update(session_timeout_s=3.0, heartbeat_interval_s=0.5)
    if driver:
        runtime["driver"] = driver
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, name


@contextlib.contextmanager
def broker_for(fixed: str | None) -> Iterator[str]:
    if fixed:
        yield fixed
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


async def watch_outputs(bootstrap: str, name: str, count: int, timeout_s: float) -> list[float]:
    """Arrival times of the first ``count`` output messages."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(f"{name}.{kind}", p)
            for kind in OUTPUTS
            for p in sorted(consumer.partitions_for_topic(f"{name}.{kind}") or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        times: list[float] = []
        deadline = time.monotonic() + timeout_s
        while len(times) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=20_000)
            now = time.monotonic()
            times.extend(now for messages in batch.values() for _ in messages)
        return times
    finally:
        await consumer.stop()


def create_topics(config: Path, bootstrap: str, log: IO[bytes]) -> None:
    subprocess.run(
        [STREAM_ENGINE, "topics", "create", str(config), "--broker", bootstrap],
        stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120,
    )  # fmt: skip


def launch(
    config: Path, bootstrap: str, workers: int, log: IO[bytes]
) -> list[subprocess.Popen[bytes]]:
    command = [STREAM_ENGINE, "run", str(config), "--broker", bootstrap, "--metrics-port", "0"]
    # The workers sign and verify envelopes: one key for the run, as a deployment gives one.
    env = {**os.environ}
    env.setdefault("STREAM_ENGINE_ENVELOPE_KEY", "bench:" + secrets.token_hex(32))
    return [
        subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        for _ in range(workers)
    ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def run_once(args: argparse.Namespace, workers: int, workdir: Path) -> dict[str, Any]:
    with broker_for(args.broker) as bootstrap:
        config, name = one_stage_config(workdir, args.stage, args.driver)
        with (workdir / f"{name}.log").open("ab") as log:
            await asyncio.to_thread(create_topics, config, bootstrap, log)
            records = bench_records(args.records)
            await Publisher(bootstrap, f"{name}.input").publish(records)
            processes = await asyncio.to_thread(launch, config, bootstrap, workers, log)
            try:
                times = await watch_outputs(bootstrap, name, len(records), args.timeout)
            finally:
                await asyncio.to_thread(stop, processes)
    done = len(times)
    window = (times[-1] - times[0]) if done > 1 else 0.0
    rate = done / window if window > 0 and done >= len(records) else None
    return {"workers": workers, "records": done, "window_s": window, "rps": rate}


def main() -> None:
    args = parse_args()
    console = Console()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="stream-engine-scaling-") as scratch:
        for workers in counts:
            console.print(f"[bold]{args.stage}[/]: {workers} worker process(es)...")
            results.append(asyncio.run(run_once(args, workers, Path(scratch))))
    table = Table(title=f"one stage ({args.stage}), {args.records} records, 4 partitions")
    for column in ("workers", "records out", "window s", "records/s", "speed-up"):
        table.add_column(column, justify="right")
    base = results[0]["rps"] if results and results[0]["rps"] else None
    for result in results:
        rps = result["rps"]
        table.add_row(
            str(result["workers"]),
            str(result["records"]),
            f"{result['window_s']:.2f}",
            f"{rps:,.0f}" if rps else "did not finish",
            f"{rps / base:.2f}x" if rps and base else "-",
        )
    console.print(table)
    print(json.dumps({f"workers_{r['workers']}": r["rps"] and round(r["rps"], 1) for r in results}))


if __name__ == "__main__":
    main()
