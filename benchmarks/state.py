"""What state costs: a stage with a Velocity rule against the same stage without it, and the
time and memory to restore a partition's store from its changelog. In process, no broker.

Throughput. A pipeline of two stages: ``intake`` (the first: RequiredFields) and ``checks``
(RequiredFields and NumericRange on ``account`` and ``amount``), the stage under test. Its
input is made once by running ``intake`` (its real envelopes, signed), partitioned by
``account`` over 4 partitions as its topic would be; then ``checks`` runs through the real
``StageProcessor`` - verify, decode, rules, route, encode, seal, and the store changes
drained into changelog messages - timed per batch, the best of ``--repeat`` runs, each with
fresh state, the variants taking turns run by run (a busy moment of a shared machine slows
one run, not one variant).
Throughput is records per CPU second of the process (RocksDB's threads included), so
other work on a shared machine skews the comparison less; wall-clock records/s are shown
too. Variants: ``plain`` (no state), and with a ``Velocity`` rule (``key: account, window: 10m,
max_count: 5``) keeping its state in memory or in RocksDB. Keys: ``distinct`` (every record
its own account: N keys) or ``hot`` (one account; its window holds up to ``max_entries``,
1000, entries, rewritten by every record: the worst case the rule bounds). Record times are
``--spacing-ms`` apart (default 1: a key outlives 600000 records, so only longer runs also
pay for expiring keys - the sweep, and a tombstone per key in the changelog).

Until ``Velocity`` is registered (stream_engine/rules/stateful.py), a stand-in of the same
shape defined here is used (``BenchVelocity``: entries ``[t_ms, identity, null]`` per key,
pruned to the window, at most 1000); the output says which ran.

Restore. ``--restore-keys`` changelog messages (``encode_entry`` of a one-entry window, the
keys distinct) built in memory, then applied with ``KeyedState.restore`` into a fresh store:
the time, the process's RSS growth (psutil), and for RocksDB its size on disk once flushed.

Targets: the Velocity rule (state in memory) costs at most 25% of the stage's throughput on
distinct keys; a restore of 1M keys into memory takes under 60 s (judged at 1M keys,
extrapolated linearly from fewer). The last line is one JSON object with every figure.

    .venv/bin/python benchmarks/state.py                          # ~1-2 min: 30k records
    .venv/bin/python benchmarks/state.py --records 1000000        # 1M distinct keys
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_engine.config.compiled import CompiledPipeline  # noqa: E402
from stream_engine.core.result import Verdict, failed, passed  # noqa: E402
from stream_engine.core.rocks import RocksStore, rocks_stores  # noqa: E402
from stream_engine.core.rule import RuleContext  # noqa: E402
from stream_engine.core.stores import (  # noqa: E402
    KeyedState,
    MemoryStore,
    Store,
    StoreFactory,
    encode_entry,
    memory_stores,
)
from stream_engine.pipeline import load_pipeline  # noqa: E402
from stream_engine.rules import RULES  # noqa: E402
from stream_engine.rules.base import ConfiguredRule, RuleParams  # noqa: E402
from stream_engine.runtime.cluster.topics import pipeline_topics  # noqa: E402
from stream_engine.runtime.observe import gc_tuning as collector  # noqa: E402
from stream_engine.runtime.stage.codec import Incoming  # noqa: E402
from stream_engine.runtime.stage.integrity import EnvelopeAuth  # noqa: E402
from stream_engine.runtime.stage.processor import StageProcessor  # noqa: E402

PARTITIONS = 4
WINDOW = "10m"
WINDOW_MS = 10 * 60 * 1000
MAX_COUNT = 5
MAX_ENTRIES = 1000
#: The most the Velocity rule may cost of the stage's throughput on distinct keys.
MAX_COST = 0.25
#: The longest a restore of 1M keys into memory may take.
MAX_RESTORE_S = 60.0
RESTORE_TARGET_KEYS = 1_000_000
VARIANTS = ("plain", "memory", "rocksdb")
KEYS = ("distinct", "hot")


# -- the stand-in Velocity, until the real one is registered ----------------------------


class BenchVelocityParams(RuleParams):
    key: str
    window: str
    max_count: int


class BenchVelocity(ConfiguredRule[BenchVelocityParams]):
    """Velocity's shape: a sliding window of the key's records, FAIL above max_count."""

    Params = BenchVelocityParams

    def state_key(self) -> tuple[str, ...]:
        return (self.params.key,)

    def evaluate(self, ctx: RuleContext) -> Verdict:
        assert ctx.stores is not None
        view = ctx.stores
        state = view.state(self.store_name)
        key = str(ctx.data[self.params.key])
        at = view.time_ms
        entries = [e for e in state.get(key) or [] if e[0] >= at - WINDOW_MS]
        if not any(e[1] == view.identity for e in entries):
            entries.append([at, view.identity, None])
            entries = entries[-MAX_ENTRIES:]
            state.advance(at)
            state.put(key, entries, at + WINDOW_MS + 1)
        count = len(entries)
        details = {"count": count, "window": WINDOW, "threshold": self.params.max_count}
        verdict = failed if count > self.params.max_count else passed
        return verdict(f"{count} records for this key in {WINDOW}", **details)


def velocity_class() -> str:
    """``Velocity`` when it is registered, else the stand-in (registered here)."""
    if "Velocity" in RULES:
        return "Velocity"
    if "BenchVelocity" not in RULES:
        RULES.add("BenchVelocity", BenchVelocity)
    return "BenchVelocity"


# -- the pipeline and its input -----------------------------------------------------------


def config(velocity: str | None) -> dict[str, Any]:
    """The two-stage pipeline; ``checks`` with a Velocity rule of class ``velocity``."""
    checks: dict[str, Any] = {
        "required": {"class": "RequiredFields", "params": {"fields": ["account", "amount"]}},
        "amount": {"class": "NumericRange", "params": {"field": "amount", "min": 0, "max": 1e6}},
    }
    if velocity is not None:
        checks["velocity"] = {
            "class": velocity,
            "params": {"key": "account", "window": WINDOW, "max_count": MAX_COUNT},
        }
    return {
        "pipeline": "state_bench",
        "version": "1",
        "input": {"key_field": "id"},
        "stages": {
            "intake": {"rules": {"id": {"class": "RequiredFields", "params": {"fields": ["id"]}}}},
            "checks": {"rules": checks},
        },
    }


def load(scratch: Path, velocity: str | None) -> CompiledPipeline:
    path = scratch / f"pipeline-{velocity or 'plain'}.yaml"
    path.write_text(yaml.safe_dump(config(velocity), sort_keys=False))
    return load_pipeline(path)


def records(count: int, keys: str) -> Iterator[dict[str, Any]]:
    for i in range(count):
        account = f"acct-{i}" if keys == "distinct" else "acct-hot"
        yield {"id": f"r{i}", "account": account, "amount": i % 5000}


async def checks_input(
    pipeline: CompiledPipeline,
    auth: EnvelopeAuth,
    count: int,
    keys: str,
    batch: int,
    spacing_ms: int,
) -> list[list[Incoming]]:
    """The batches ``checks`` consumes: ``intake``'s output, partitioned by account."""
    topics = pipeline_topics(pipeline)
    intake = StageProcessor(pipeline, pipeline.plan.stage("intake"), topics, "bench", auth)
    start_ms = int(time.time() * 1000) - count * spacing_ms
    offsets = [0] * PARTITIONS
    out: list[Incoming] = []
    pending: list[Incoming] = []

    async def flush() -> None:
        report = await intake.process(pending)
        for sent in report.outgoing:
            assert sent.key is not None
            partition = zlib.crc32(sent.key) % PARTITIONS
            stamp = start_ms + len(out) * spacing_ms
            out.append(
                Incoming(
                    sent.topic,
                    partition,
                    offsets[partition],
                    stamp,
                    sent.key,
                    sent.value,
                    sent.headers,
                )
            )
            offsets[partition] += 1
        pending.clear()

    for i, record in enumerate(records(count, keys)):
        value = orjson.dumps(record)
        pending.append(
            Incoming(
                topics.input, 0, i, start_ms + i * spacing_ms, record["id"].encode(), value, []
            )
        )
        if len(pending) == batch:
            await flush()
    if pending:
        await flush()
    assert len(out) == count, f"intake forwarded {len(out)} of {count} records"
    return [out[i : i + batch] for i in range(0, count, batch)]


# -- throughput ------------------------------------------------------------------------


@dataclass(slots=True)
class Rate:
    variant: str
    keys: str
    records: int
    #: The least CPU time (the process's, RocksDB's threads included) of the runs.
    best_s: float
    runs_s: list[float]
    #: The least wall time of the runs.
    wall_s: float
    changes: int

    @property
    def per_s(self) -> float:
        """Records per CPU second."""
        return self.records / self.best_s

    @property
    def wall_per_s(self) -> float:
        return self.records / self.wall_s


def checks(pipeline: CompiledPipeline, auth: EnvelopeAuth, stores: StoreFactory) -> StageProcessor:
    """A fresh processor of the stage under test."""
    topics = pipeline_topics(pipeline)
    return StageProcessor(
        pipeline, pipeline.plan.stage("checks"), topics, "bench", auth, stores=stores
    )


async def one_run(
    processor: StageProcessor, batches: list[list[Incoming]]
) -> tuple[float, float, int]:
    """The stage over every batch: wall and CPU seconds, and the changes drained."""
    wall = cpu = 0.0
    changes = 0
    gc.collect()
    for batch in batches:
        started, used = time.perf_counter(), time.process_time()
        report = await processor.process(batch)
        cpu += time.process_time() - used
        wall += time.perf_counter() - started
        changes += len(report.changes)
    processor.state.close()
    return wall, cpu, changes


async def throughput(
    args: argparse.Namespace, scratch: Path, progress: Progress, velocity: str
) -> list[Rate]:
    rates = []
    auth = EnvelopeAuth.session()
    pipelines = {"plain": load(scratch, None), "stateful": load(scratch, velocity)}
    runs_total = len(args.keys_list) * len(args.variant_list) * args.repeat
    task = progress.add_task("throughput", total=runs_total, what="")
    for keys in args.keys_list:
        progress.update(task, what=f"{keys}: making the input")
        made = {
            name: await checks_input(
                pipeline, auth, args.records, keys, args.batch, args.spacing_ms
            )
            for name, pipeline in pipelines.items()
        }
        kind = {v: "plain" if v == "plain" else "stateful" for v in args.variant_list}
        inputs = {v: made[kind[v]] for v in args.variant_list}
        collector.settle()  # the input lives through the runs, as a worker's plan does
        runs: dict[str, list[tuple[float, float, int]]] = {v: [] for v in args.variant_list}
        for _ in range(args.repeat):  # the variants in turn: a busy moment slows one run only
            for v in args.variant_list:
                progress.update(task, what=f"{keys}: {v}")
                processor = checks(pipelines[kind[v]], auth, factory(v, scratch / "tp"))
                runs[v].append(await one_run(processor, inputs[v]))
                progress.advance(task)
        for v, got in runs.items():
            cpus = [cpu for _, cpu, _ in got]
            best_wall = min(wall for wall, _, _ in got)
            rates.append(Rate(v, keys, args.records, min(cpus), cpus, best_wall, got[0][2]))
    return rates


def factory(variant: str, path: Path) -> StoreFactory:
    if variant == "rocksdb":
        shutil.rmtree(path, ignore_errors=True)
        return rocks_stores(path, "state_bench")
    return memory_stores


# -- restore ---------------------------------------------------------------------------


@dataclass(slots=True)
class Restore:
    store: str
    keys: int
    seconds: float
    rss_bytes: int
    disk_bytes: int | None

    @property
    def at_target_s(self) -> float:
        """The time for RESTORE_TARGET_KEYS, extrapolated linearly."""
        return self.seconds * RESTORE_TARGET_KEYS / self.keys


def changelog(keys: int) -> list[tuple[str, bytes]]:
    """The messages of a changelog holding ``keys`` one-entry windows."""
    base = int(time.time() * 1000)
    return [
        (
            f"acct-{i}",
            encode_entry([[base + i, f"state_bench.input/0/{i}", None]], base + i + WINDOW_MS),
        )
        for i in range(keys)
    ]


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def restore_into(store: Store, messages: list[tuple[str, bytes]], kind: str) -> Restore:
    state = KeyedState(store)
    before = rss()
    started = time.perf_counter()
    for key, raw in messages:
        state.restore(key, raw)
    seconds = time.perf_counter() - started
    disk = None
    if isinstance(store, RocksStore):
        store.flush()
        disk = disk_size(store.path)
    grown = rss() - before
    assert len(store) == len(messages)
    return Restore(kind, len(messages), seconds, grown, disk)


def restores(args: argparse.Namespace, scratch: Path, progress: Progress) -> list[Restore]:
    task = progress.add_task("restore", total=len(args.restore_stores) + 1, what="the changelog")
    messages = changelog(args.restore_keys)
    progress.advance(task)
    out = []
    for kind in args.restore_stores:
        progress.update(task, what=kind)
        store: Store = MemoryStore() if kind == "memory" else RocksStore(scratch / "restore")
        out.append(restore_into(store, messages, kind))
        store.close()
        del store
        progress.advance(task)
    return out


# -- report ----------------------------------------------------------------------------


def cost(rates: list[Rate], variant: str, keys: str) -> float | None:
    """How much of the plain stage's throughput a variant loses (0.2: 20% slower)."""
    found = {(r.variant, r.keys): r.per_s for r in rates}
    base, other = found.get(("plain", keys)), found.get((variant, keys))
    return None if base is None or other is None else 1 - other / base


def added(rates: list[Rate], rate: Rate) -> float:
    """The CPU µs per record a variant adds to the plain stage."""
    plain = next(r for r in rates if r.variant == "plain" and r.keys == rate.keys)
    return (rate.best_s / rate.records - plain.best_s / plain.records) * 1e6


def tables(
    console: Console, rates: list[Rate], restored: list[Restore], velocity: str
) -> list[str]:
    if rates:
        table = Table(title=f"stage 'checks' throughput ({velocity}, best of runs)")
        columns = ("keys", "store", "records", "records/CPU s", "CPU µs/record", "records/s")
        for name in (*columns, "cost", "changes"):
            table.add_column(name, justify="right")
        for r in rates:
            lost = cost(rates, r.variant, r.keys) if r.variant != "plain" else None
            table.add_row(
                r.keys, r.variant if r.variant != "plain" else "(no Velocity)", f"{r.records}",
                f"{r.per_s:,.0f}", f"{r.best_s / r.records * 1e6:.1f}", f"{r.wall_per_s:,.0f}",
                "" if lost is None else f"{lost:.0%} (+{added(rates, r):.0f} µs)", f"{r.changes}",
            )  # fmt: skip
        console.print(table)
    if restored:
        table = Table(title="restore from the changelog")
        for name in ("store", "keys", "seconds", "keys/s", "RSS growth", "on disk"):
            table.add_column(name, justify="right")
        for r in restored:
            table.add_row(
                r.store, f"{r.keys:,}", f"{r.seconds:.2f}", f"{r.keys / r.seconds:,.0f}",
                f"{r.rss_bytes / 2**20:,.0f} MiB",
                "" if r.disk_bytes is None else f"{r.disk_bytes / 2**20:,.0f} MiB",
            )  # fmt: skip
        console.print(table)
    return targets(rates, restored)


def targets(rates: list[Rate], restored: list[Restore]) -> list[str]:
    lines = []
    lost = cost(rates, "memory", "distinct")
    if lost is not None:
        verdict = "met" if lost <= MAX_COST else "not met"
        lines.append(
            f"target: Velocity (memory) costs {lost:.0%} of the stage's throughput on distinct "
            f"keys (at most {MAX_COST:.0%}): {verdict}"
        )
    for r in restored:
        if r.store != "memory":
            continue
        scaled = "" if r.keys == RESTORE_TARGET_KEYS else f" (extrapolated from {r.keys:,})"
        verdict = "met" if r.at_target_s < MAX_RESTORE_S else "not met"
        lines.append(
            f"target: restore of 1M keys in memory takes {r.at_target_s:.1f} s{scaled} "
            f"(under {MAX_RESTORE_S:.0f} s): {verdict}"
        )
    return lines


def summary(
    args: argparse.Namespace, rates: list[Rate], restored: list[Restore], velocity: str
) -> dict[str, Any]:
    return {
        "rule": velocity,
        "records": args.records,
        "records_per_cpu_s": {f"{r.keys}.{r.variant}": round(r.per_s) for r in rates},
        "records_per_s": {f"{r.keys}.{r.variant}": round(r.wall_per_s) for r in rates},
        "cost": {
            f"{r.keys}.{r.variant}": round(c, 3)
            for r in rates
            if r.variant != "plain" and (c := cost(rates, r.variant, r.keys)) is not None
        },
        "restore": {
            r.store: {
                "keys": r.keys,
                "seconds": round(r.seconds, 2),
                "rss_mib": round(r.rss_bytes / 2**20),
                "disk_mib": None if r.disk_bytes is None else round(r.disk_bytes / 2**20),
            }
            for r in restored
        },
        "targets_met": {
            "velocity_cost": (c := cost(rates, "memory", "distinct")) is not None and c <= MAX_COST,
            "restore_1m_memory": any(
                r.store == "memory" and r.at_target_s < MAX_RESTORE_S for r in restored
            ),
        },
    }


# -- main ------------------------------------------------------------------------------


def choices(
    text: str, allowed: Sequence[str], parser: argparse.ArgumentParser, flag: str
) -> list[str]:
    picked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in picked if t not in allowed]
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return picked


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=30_000, help="records per run (default 30000)"
    )
    parser.add_argument(
        "--spacing-ms",
        type=int,
        default=1,
        help="event time between records (default 1: a key lives 600000 records, so only "
        "runs longer than that expire keys; 50 gives 12000 live keys and a steady sweep)",
    )
    parser.add_argument("--batch", type=int, default=500, help="records per batch (default 500)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of each, in turn; the best is kept"
    )
    parser.add_argument("--keys", default="distinct,hot", help="distinct, hot or both")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="plain, memory, rocksdb (default all)"
    )
    parser.add_argument(
        "--restore-keys",
        type=int,
        default=RESTORE_TARGET_KEYS,
        help="keys restored (default 1M; 0: skip)",
    )
    parser.add_argument(
        "--restore-stores", default="memory,rocksdb", help="memory, rocksdb (default both)"
    )
    parser.add_argument("--scratch", type=Path, default=None, help="where RocksDB stores go")
    args = parser.parse_args(argv)
    if min(args.records, args.batch, args.repeat, args.spacing_ms) < 1:
        parser.error("--records, --batch, --repeat and --spacing-ms must be at least 1")
    if args.restore_keys < 0:
        parser.error("--restore-keys cannot be negative")
    args.keys_list = choices(args.keys, KEYS, parser, "--keys")
    args.variant_list = choices(args.variants, VARIANTS, parser, "--variants")
    args.restore_stores = choices(
        args.restore_stores, ("memory", "rocksdb"), parser, "--restore-stores"
    )
    if not args.restore_keys:
        args.restore_stores = []
    return args


@contextmanager
def scratch_dir(given: Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="state-bench-", dir=given))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(stderr=True)
    velocity = velocity_class()
    started = time.monotonic()
    collector.settle()
    with scratch_dir(args.scratch) as scratch, Progress(
        TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[what]}"), console=console,
    ) as progress:  # fmt: skip
        rates = (
            asyncio.run(throughput(args, scratch, progress, velocity))
            if args.variant_list and args.keys_list
            else []
        )
        restored = restores(args, scratch, progress) if args.restore_stores else []
    out = Console(width=120)
    if velocity != "Velocity":
        out.print(
            "rule: BenchVelocity, the benchmark's stand-in (Velocity is not registered yet)",
            markup=False,
        )
    for line in tables(out, rates, restored, velocity):
        out.print(line, markup=False)
    out.print(f"wall time {time.monotonic() - started:.0f} s", markup=False)
    print(json.dumps(summary(args, rates, restored, velocity)), flush=True)


if __name__ == "__main__":
    main()
