"""Restoring a stage's stores, without a broker: what a changelog message does to a store (its
seal checked, a tombstone applied whatever its seal), and how the restorer keeps a partition's
records out of batches until its stores are restored - rewinding the consumer to them - and
starts over when a partition is revoked and assigned again mid-restore."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from state_helpers import (
    NEVER_MS,
    count_rule,  # noqa: F401 - the fixture
    stateful_pipeline,
)

from stream_engine.core.stores import CLOCK_KEY, KeyedState, MemoryStore, StageState, encode_entry
from stream_engine.runtime.stage.integrity import EnvelopeAuth
from stream_engine.runtime.state.restore import (
    Applied,
    RestoreClients,
    Restorer,
    RestoreStats,
    apply_changelog,
)

TOPIC = "p.state.counting.per_account"
AUTH = EnvelopeAuth({"k1": b"k" * 32}, "k1")
INPUT = "p.stage.counting"

pytestmark = pytest.mark.usefixtures("count_rule")


def changelog_record(
    key: bytes | None, value: bytes | None, offset: int = 0, sealed: bool = True
) -> ConsumerRecord:
    headers = AUTH.seal(TOPIC, value or b"", []) if sealed else []
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, key, value, None, 0, 0, tuple(headers))


def input_record(partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord(INPUT, partition, offset, 0, 0, b"k", b"{}", None, 0, 0, ())


def restored(*records: ConsumerRecord, auth: EnvelopeAuth | None = AUTH):
    state, out = KeyedState(MemoryStore()), Applied()
    apply_changelog(records, state, auth, out)
    return state, out


# -- applying changelog messages -------------------------------------------------------------


def test_sealed_entries_are_restored_with_their_expiry_and_the_stream_time():
    state, out = restored(
        changelog_record(b"acct-1", encode_entry({"n": 3}, NEVER_MS)),
        changelog_record(CLOCK_KEY.encode(), encode_entry(1_700_000_000_000, 0), 1),
    )
    assert state.get("acct-1") == {"n": 3}
    assert state.store.expired(NEVER_MS - 1, 10) == []
    assert state.clock == 1_700_000_000_000
    assert (out.applied, out.rejected) == (2, 0)
    assert state.dirty == {}, "a restore is not a change to write back"


def test_a_value_without_a_valid_seal_is_skipped_counted_and_explained():
    forged = changelog_record(b"acct-1", encode_entry({"n": 99}, NEVER_MS), 7, sealed=False)
    state, out = restored(forged)
    assert state.get("acct-1") is None
    assert (out.applied, out.rejected) == (0, 1)
    assert out.first_problem is not None
    assert out.first_problem.startswith(f"{TOPIC}[0]@7: no se.auth header")


def test_a_value_sealed_for_another_topic_is_skipped():
    value = encode_entry({"n": 5}, NEVER_MS)
    record = ConsumerRecord(
        TOPIC, 0, 0, 0, 0, b"a", value, None, 0, 0, tuple(AUTH.seal("other", value, []))
    )
    _, out = restored(record)
    assert out.rejected == 1


def test_a_tombstone_removes_its_key_whatever_its_seal():
    state, out = restored(
        changelog_record(b"acct-1", encode_entry({"n": 1}, NEVER_MS)),
        changelog_record(b"acct-1", None, 1, sealed=False),
    )
    assert state.get("acct-1") is None
    assert (out.applied, out.rejected) == (2, 0)


def test_a_malformed_value_or_a_message_without_a_key_is_skipped():
    state, out = restored(
        changelog_record(b"acct-1", b'{"not": "an entry"}'),
        changelog_record(None, encode_entry(1, NEVER_MS), 1),
        changelog_record(b"acct-2", encode_entry(2, NEVER_MS), 2),
    )
    assert (out.applied, out.rejected) == (1, 2)
    assert "not a store entry" in (out.first_problem or "")
    assert len(state) == 1


def test_without_envelope_authentication_every_value_is_applied():
    state, out = restored(
        changelog_record(b"a", encode_entry(1, NEVER_MS), sealed=False), auth=None
    )
    assert (state.get("a"), out.rejected) == (1, 0)


# -- the restorer ---------------------------------------------------------------------------


class Consumer:
    """Stands in for the stage's consumer: records what the restorer asks of it."""

    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()
        self.seeks: list[tuple[TopicPartition, int]] = []

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class GatedRestorer(Restorer):
    """A restorer whose reading of a changelog waits for the test to open its gate."""

    def __init__(self, state: StageState, consumer: Consumer) -> None:
        clients = RestoreClients(
            "counting", consumer, dict, {"per_account": TOPIC}, AUTH, self._fail
        )  # type: ignore[arg-type]
        super().__init__(state, clients)
        self.gates: dict[int, asyncio.Event] = {}
        self.reads: list[int] = []
        self.failures: list[BaseException] = []

    def _fail(self, error: BaseException) -> None:
        self.failures.append(error)

    async def _read(self, partition: int) -> RestoreStats:
        self.reads.append(partition)
        states = self.state.reset(partition)
        stats = RestoreStats(partition, {"per_account": 1}, applied={"per_account": Applied()})
        self._started(stats, {}, {}, {})
        gate = self.gates.setdefault(partition, asyncio.Event())
        await gate.wait()
        states["per_account"].restore("acct", encode_entry({"n": len(self.reads)}, NEVER_MS))
        stats.seconds["per_account"] = 0.01
        stats.finished = True
        return stats


@pytest.fixture
def stage_state(tmp_path, request) -> StageState:
    request.getfixturevalue("count_rule")
    pipeline = stateful_pipeline(tmp_path, "localhost:9")
    stage = next(s for s in pipeline.plan.active_stages if s.stores)
    return StageState(stage.stores)


def tps(*partitions: int) -> set[TopicPartition]:
    return {TopicPartition(INPUT, p) for p in partitions}


def whole(batch):
    return [batch] if batch else []


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_assigned_partitions_are_paused_until_restored_then_resumed(stage_state):
    consumer = Consumer()
    restorer = GatedRestorer(stage_state, consumer)
    restorer.hold(tps(0, 1))
    await restorer.assigned(tps(0, 1))
    await settle()
    assert consumer.paused == tps(0, 1)
    assert restorer.pending == {0, 1}

    restorer.gates[0].set()
    await settle()
    assert consumer.paused == tps(1)
    assert restorer.pending == {1}
    assert stage_state.partitions[0]["per_account"].get("acct") == {"n": 2}
    restorer.gates[1].set()
    await settle()
    assert (consumer.paused, restorer.pending) == (set(), frozenset())


async def test_records_of_a_partition_still_restoring_leave_the_batch_and_are_fetched_again(
    stage_state,
):
    consumer = Consumer()
    restorer = GatedRestorer(stage_state, consumer)
    restorer.hold(tps(0, 1))
    await restorer.assigned(tps(0, 1))
    await settle()
    restorer.gates[0].set()
    await settle()
    split = restorer.fetched(whole)
    batch = {
        TopicPartition(INPUT, 0): [input_record(0, 10)],
        TopicPartition(INPUT, 1): [input_record(1, 20), input_record(1, 21)],
    }

    shares = split(batch)

    assert shares == [{TopicPartition(INPUT, 0): [input_record(0, 10)]}]
    assert consumer.seeks == [(TopicPartition(INPUT, 1), 20)]


async def test_records_fetched_before_their_assignment_was_held_are_fetched_again(stage_state):
    consumer = Consumer()
    restorer = GatedRestorer(stage_state, consumer)
    split = restorer.fetched(whole)  # fetched as the assignment arrived, before the listener
    restorer.hold(tps(2))
    await restorer.assigned(tps(2))

    assert split({TopicPartition(INPUT, 2): [input_record(2, 5)]}) == []
    assert consumer.seeks == [(TopicPartition(INPUT, 2), 5)]


async def test_records_fetched_under_an_earlier_assignment_are_dropped_without_rewinding(
    stage_state,
):
    consumer = Consumer()
    restorer = GatedRestorer(stage_state, consumer)
    restorer.hold(tps(0))
    await restorer.assigned(tps(0))
    await settle()
    restorer.gates[0].set()
    await settle()
    split = restorer.fetched(whole)
    await restorer.revoked(tps(0))
    restorer.hold(tps(0))  # assigned again: it starts from the committed offset
    await restorer.assigned(tps(0))

    assert split({TopicPartition(INPUT, 0): [input_record(0, 30)]}) == []
    assert consumer.seeks == []


async def test_a_partition_revoked_mid_restore_is_dropped_and_assigned_again_restores_afresh(
    stage_state,
):
    consumer = Consumer()
    restorer = GatedRestorer(stage_state, consumer)
    restorer.hold(tps(0, 1))
    await restorer.assigned(tps(0, 1))
    await settle()
    first_stores = stage_state.partitions[0]

    await restorer.revoked(tps(0, 1))
    assert stage_state.partitions == {}
    assert restorer.tasks == {}
    assert restorer.pending == frozenset()

    restorer.gates.clear()
    restorer.hold(tps(0))
    await restorer.assigned(tps(0))
    await settle()
    restorer.gates[0].set()
    await settle()

    assert restorer.reads == [0, 1, 0]
    assert stage_state.partitions[0] is not first_stores
    assert stage_state.partitions[0]["per_account"].get("acct") == {"n": 3}
    assert restorer.pending == frozenset()
    assert restorer.failures == []


async def test_counters_keep_what_dropped_partitions_counted_and_lag_is_per_held_partition(
    stage_state,
):
    restorer = GatedRestorer(stage_state, Consumer())
    restorer.hold(tps(0, 1))
    await restorer.assigned(tps(0, 1))
    await settle()
    for gate in restorer.gates.values():
        gate.set()
    await settle()
    stage_state.partitions[0]["per_account"].expired_total = 3
    stage_state.partitions[1]["per_account"].late_total = 2
    (before,) = restorer.figures()
    assert (before.entries, before.expired, before.late, before.restore_lag) == (2, 3, 2, 2)

    await restorer.revoked(tps(0))

    (after,) = restorer.figures()
    assert (after.entries, after.expired, after.late, after.restore_lag) == (1, 3, 2, 1)


async def test_the_restorer_tells_its_hooks_when_a_restore_starts_and_finishes(stage_state):
    restorer = GatedRestorer(stage_state, Consumer())
    events: list[tuple[int, bool]] = []
    restorer.hooks.append(lambda stats: events.append((stats.partition, stats.finished)))
    restorer.hold(tps(3))
    await restorer.assigned(tps(3))
    await settle()
    restorer.gates[3].set()
    await settle()
    assert events == [(3, False), (3, True)]
