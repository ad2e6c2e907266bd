"""Restoring a stage's stores when its partitions are assigned.

A newly assigned partition is paused at once (``hold``, first thing in the rebalance listener),
then - after the guarantee took it over: under exactly-once, fenced its previous owner, so that
owner's open transaction is resolved - restored in a background task of its own (``assigned``),
never inside the listener: a long restore must not block the group. The task reads each of the
stage's changelogs' partition p from its beginning to the end offset read when it started, with
a consumer of its own (manually assigned, no group; ``read_committed`` under exactly-once, so
aborted transactions' changes are skipped), into stores emptied for it (``StageState.reset``),
and then resumes the partition. Each value must carry the ``se.auth`` seal of a pipeline key; one
that does not is skipped (counted, logged once per partition); a tombstone is applied whatever
its seal, since forgetting a key cannot forge state.

A partition revoked while restoring has its task cancelled (and awaited, so nothing writes into
its stores any more) and its stores dropped; assigned again, it restores from scratch. No record
of a partition is processed before its restore completed: besides the pause, ``fetched`` takes
such a partition's records out of the batch and rewinds the consumer to them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from stream_engine.core.stores import KeyedState, StageState
from stream_engine.runtime.drivers.transactions import Batch, Split
from stream_engine.runtime.stage.integrity import EnvelopeAuth
from stream_engine.runtime.state.figures import StoreFigures

log = logging.getLogger(__name__)

#: Records a restore consumer hands over at once: applying them is synchronous, so a batch
#: is kept small enough not to hold up the event loop (heartbeats, the other partitions).
RESTORE_BATCH = 2_000
#: Partitions restored side by side by one stage (each with a consumer of its own); the others
#: wait, paused.
RESTORES_AT_ONCE = 8
#: A restore that failed on the broker is tried again after this long, doubling up to the cap.
RETRY_S, RETRY_MAX_S = 0.5, 10.0

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(slots=True)
class Applied:
    """What applying changelog messages to one store came to."""

    applied: int = 0
    rejected: int = 0
    #: Why the first rejected message was (where, and the reason), for the one log line.
    first_problem: str | None = None


def apply_changelog(
    records: Iterable[Record], state: KeyedState, auth: EnvelopeAuth | None, out: Applied
) -> None:
    """Apply changelog messages to a store: a value whose seal fails, or that is not a store
    entry, or a message without a key, is skipped and counted in ``out``."""
    for record in records:
        problem = _problem(record, auth)
        if problem is None:
            try:
                assert record.key is not None  # _problem said so
                state.restore(record.key.decode("utf-8", "replace"), record.value)
            except ValueError as exc:
                problem = f"not a store entry ({exc})"
            else:
                out.applied += 1
                continue
        out.rejected += 1
        if out.first_problem is None:
            out.first_problem = f"{record.topic}[{record.partition}]@{record.offset}: {problem}"


def _problem(record: Record, auth: EnvelopeAuth | None) -> str | None:
    """Why a changelog message may not be applied, or None."""
    if record.key is None:
        return "no key"
    if auth is None or record.value is None:
        return None  # a tombstone only forgets: applied whatever its seal
    return auth.verify(record.topic, record.value, list(record.headers))


@dataclass(slots=True)
class RestoreStats:
    """One restore of one partition, per store (rule id): the changelog messages it had to
    read when it began, the seconds until its changelog was read, what was applied and
    skipped. ``finished`` is False while it runs."""

    partition: int
    lag: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    applied: dict[str, Applied] = field(default_factory=dict)
    finished: bool = False


@dataclass(frozen=True, slots=True)
class RestoreClients:
    """What a stage's restorer works with."""

    stage: str
    #: The stage's consumer (in its group): paused and resumed, rewound.
    consumer: AIOKafkaConsumer
    #: Settings of a restore consumer (connection, isolation level), given its client id.
    consumer_settings: Callable[[str], dict[str, Any]]
    #: The changelog topic of each store.
    changelogs: Mapping[str, str]
    auth: EnvelopeAuth | None
    #: Stops the stage and tells the worker why (a bug in a restore).
    fail: Callable[[BaseException], None]
    #: Whether restore consumers read committed transactions only (exactly-once).
    read_committed: bool = False


class Restorer:
    """Keeps a stage's partitions paused until their stores are restored; the stage's
    rebalance listener (``HandOver``) tells it what is assigned and revoked."""

    def __init__(self, state: StageState, clients: RestoreClients) -> None:
        self.state = state
        self.clients = clients
        #: Each assigned partition, with the number of the assignment that gave it.
        self.epochs: dict[int, int] = {}
        self.generation = 0
        self.restored: set[int] = set()
        #: Assigned partitions not restored yet (replaced whole: the endpoint thread reads it).
        self.pending: frozenset[int] = frozenset()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        #: Per (store, partition): changelog messages at the start of its last restore.
        self.lags: dict[tuple[str, int], int] = {}
        #: Per store: expired and late counts of partitions dropped, and values rejected.
        self.retired: dict[str, list[int]] = {name: [0, 0, 0] for name in clients.changelogs}
        #: Told when a restore starts reading (its lag known) and when it finishes.
        self.hooks: list[Callable[[RestoreStats], None]] = []
        self._slots = asyncio.Semaphore(RESTORES_AT_ONCE)

    # -- the rebalance listener's calls ---------------------------------------------------

    def hold(self, assigned: set[TopicPartition]) -> None:
        """Pause newly assigned partitions, before anything awaits in the listener."""
        if not assigned:
            return
        self.clients.consumer.pause(*assigned)
        self.generation += 1
        for tp in assigned:
            self.epochs[tp.partition] = self.generation
            self.restored.discard(tp.partition)
        self._pending()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Start restoring each newly assigned partition in the background."""
        for tp in sorted(assigned):
            epoch = self.epochs.get(tp.partition)
            if epoch is None:
                continue
            await self._cancel(tp.partition)
            task = asyncio.ensure_future(self._restore(tp, epoch))
            self.tasks[tp.partition] = task

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        """Cancel the partitions' restores and drop their stores (the batch in flight has
        committed: the listener holds it off). The restores are cancelled together, so the
        group waits for the slowest one to stop, not for their sum."""
        partitions = sorted(tp.partition for tp in revoked)
        for partition in await self._cancel(*partitions):
            log.info(
                "stage %s: partition %d revoked while restoring; its restore is abandoned",
                self.clients.stage,
                partition,
            )
        for partition in partitions:
            self.epochs.pop(partition, None)
            self.restored.discard(partition)
            self._retire(partition)
        self._pending()

    async def close(self) -> None:
        """Cancel every restore (the worker stops)."""
        await self._cancel(*self.tasks)

    # -- the batch loop's call ------------------------------------------------------------

    def fetched(self, split: Split) -> Split:
        """Called right after a fetch, like ``Guarantee.fetched``: the guarantee's split, less
        partitions not restored when fetched (or reassigned since), each rewound to its first
        fetched record when that record belongs to the assignment it is in now."""
        epochs, restored, generation = dict(self.epochs), frozenset(self.restored), self.generation

        def restored_only(batch: Batch) -> list[Batch]:
            shares = []
            for share in split(batch):
                kept = {}
                for tp, records in share.items():
                    epoch = epochs.get(tp.partition)
                    if tp.partition in restored and self.epochs.get(tp.partition) == epoch:
                        kept[tp] = records
                    else:
                        self._rewind(tp, records, generation + 1 if epoch is None else epoch)
                if kept:
                    shares.append(kept)
            return shares

        return restored_only

    def _rewind(self, tp: TopicPartition, records: list[Record], epoch: int) -> None:
        """Seek back to records taken out of a batch, if they were fetched under the current
        assignment (a newer one starts from the committed offset anyway)."""
        if records and self.epochs.get(tp.partition) == epoch:
            try:
                self.clients.consumer.seek(tp, records[0].offset)
            except IllegalStateError:
                return  # no longer assigned: its next assignment starts from the committed
            log.debug("stage %s: %s not restored yet; rewound", self.clients.stage, tp)

    # -- figures --------------------------------------------------------------------------

    def figures(self) -> list[StoreFigures]:
        """Each store's figures over the partitions held now (counters include the partitions
        dropped since start)."""
        out = []
        for name, (expired, late, rejected) in self.retired.items():
            states = [s[name] for s in self.state.partitions.values() if name in s]
            out.append(
                StoreFigures(
                    name,
                    sum(len(s) for s in states),
                    expired + sum(s.expired_total for s in states),
                    late + sum(s.late_total for s in states),
                    sum(lag for (store, _), lag in self.lags.items() if store == name),
                    rejected,
                )
            )
        return out

    # -- restoring ------------------------------------------------------------------------

    async def _restore(self, tp: TopicPartition, epoch: int) -> None:
        """Restore one partition until it is done or cancelled; a broker error starts it over
        after a pause, a bug stops the stage (never a partition left paused unnoticed)."""
        stage, wait = self.clients.stage, RETRY_S
        try:
            while True:
                try:
                    async with self._slots:
                        stats = await self._read(tp.partition)
                    break
                except KafkaError as exc:
                    log.warning(
                        "stage %s: restoring partition %d failed (%s); starting over in %.1fs",
                        stage,
                        tp.partition,
                        exc,
                        wait,
                    )
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RETRY_MAX_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stage %s: restoring partition %d failed", stage, tp.partition)
            self.clients.fail(exc)
            return
        finally:
            if self.tasks.get(tp.partition) is asyncio.current_task():
                del self.tasks[tp.partition]
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Closing a consumer swallows a cancellation (aiokafka suppresses it while its
            # fetch task stops): the partition was revoked all the same.
            raise asyncio.CancelledError
        if self.epochs.get(tp.partition) != epoch:
            return
        self.restored.add(tp.partition)
        self._pending()
        try:
            self.clients.consumer.resume(tp)
        except IllegalStateError:
            return  # revoked in the meantime: the listener drops it
        self._tell(stats)

    async def _read(self, partition: int) -> RestoreStats:
        """Empty the partition's stores and read its changelogs into them, up to the end
        offsets as they are now."""
        clients = self.clients
        states = self.state.reset(partition)
        sources = {
            TopicPartition(topic, partition): (name, states[name])
            for name, topic in clients.changelogs.items()
        }
        stats = RestoreStats(partition, applied={name: Applied() for name in clients.changelogs})
        started = time.monotonic()
        consumer = AIOKafkaConsumer(
            **clients.consumer_settings(f"restore.{clients.stage}.{partition}")
        )
        try:
            await consumer.start()
            tps = list(sources)
            consumer.assign(tps)
            begins = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, begins[tp])
            todo = {tp for tp in tps if ends[tp] > begins[tp]}
            unsettled = set(todo)
            for tp in set(tps) - todo:
                stats.seconds[sources[tp][0]] = time.monotonic() - started
            if not todo:
                self._started(stats, sources, begins, ends)
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=500, max_records=RESTORE_BATCH)
                if unsettled and self._settle(consumer, unsettled, ends):
                    self._started(stats, sources, begins, ends)
                for tp, records in batch.items():
                    name, state = sources[tp]
                    before_end = [r for r in records if r.offset < ends[tp]]
                    apply_changelog(before_end, state, clients.auth, stats.applied[name])
                for tp in todo - unsettled:
                    if await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
                        stats.seconds[sources[tp][0]] = time.monotonic() - started
        finally:
            await consumer.stop()
        stats.finished = True
        return stats

    def _settle(
        self, consumer: AIOKafkaConsumer, unsettled: set[TopicPartition], ends: dict[Any, int]
    ) -> bool:
        """Settle each partition's end by its first fetch's high watermark (the last stable
        offset under read_committed): ListOffsets may answer lower - Tansu gives the last
        batch's base offset + 1 - and a fetch brings it with the first records. True once
        every partition is settled."""
        committed = self.clients.read_committed
        for tp in list(unsettled):
            mark = consumer.last_stable_offset(tp) if committed else consumer.highwater(tp)
            if mark is not None:
                ends[tp] = max(ends[tp], mark)
                unsettled.discard(tp)
        return not unsettled

    def _started(
        self,
        stats: RestoreStats,
        sources: Mapping[TopicPartition, tuple[str, KeyedState]],
        begins: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> None:
        """The ends are known: log, keep and tell what the restore has to read."""
        for tp, (name, _) in sources.items():
            stats.lag[name] = max(ends[tp] - begins[tp], 0)
        total = sum(stats.lag.values())
        log.info(
            "stage %s: restoring partition %d from %d changelog message(s)",
            self.clients.stage,
            stats.partition,
            total,
        )
        for name, lag in stats.lag.items():
            self.lags[(name, stats.partition)] = lag
        for hook in self.hooks:
            hook(stats)

    def _tell(self, stats: RestoreStats) -> None:
        """Log the restore, count what it rejected, and tell the hooks."""
        stage = self.clients.stage
        for name, applied in stats.applied.items():
            if applied.rejected:
                self.retired[name][2] += applied.rejected
                log.warning(
                    "stage %s: restoring %s on partition %d skipped %d changelog message(s); "
                    "the first: %s",
                    stage,
                    name,
                    stats.partition,
                    applied.rejected,
                    applied.first_problem,
                )
        entries = sum(len(s) for s in self.state.partitions.get(stats.partition, {}).values())
        log.info(
            "stage %s: restored partition %d: %d entries from %d message(s) in %.2fs",
            stage,
            stats.partition,
            entries,
            sum(a.applied for a in stats.applied.values()),
            max(stats.seconds.values(), default=0.0),
        )
        for hook in self.hooks:
            hook(stats)

    # -- helpers --------------------------------------------------------------------------

    async def _cancel(self, *partitions: int) -> list[int]:
        """Cancel the partitions' restores and wait until they are gone; the partitions that
        had one."""
        tasks = {p: self.tasks.pop(p) for p in partitions if p in self.tasks}
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return sorted(tasks)

    def _retire(self, partition: int) -> None:
        """Drop the partition's stores, keeping their counts for the counters."""
        for name, state in self.state.partitions.get(partition, {}).items():
            totals = self.retired.setdefault(name, [0, 0, 0])
            totals[0] += state.expired_total
            totals[1] += state.late_total
        for name in self.clients.changelogs:
            self.lags.pop((name, partition), None)
        self.state.drop(partition)

    def _pending(self) -> None:
        self.pending = frozenset(set(self.epochs) - self.restored)
