"""The stores a stateful rule's state lives in: the same behaviour in memory and on disk
(RocksDB), and what only the disk store does - its place, its expiry index, its wiping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_engine.core.rocks import (
    RECENT_BYTES,
    RECENT_KEYS,
    RocksStore,
    StateStoreError,
    configured_stores,
    rocks_stores,
    segment,
)
from stream_engine.core.stores import (
    KeyedState,
    MemoryStore,
    StageState,
    Store,
    StoreSpec,
    encode_entry,
    memory_stores,
)

SPEC = StoreSpec("velocity", "checks", ("account",))


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "db")
    yield made
    made.close()


def test_a_store_gives_back_what_was_put_and_none_for_an_unknown_key(store: Store):
    store.put("a", {"n": 1, "list": [1, "x", None]}, 100)
    assert store.get("a") == {"n": 1, "list": [1, "x", None]}
    assert store.get("b") is None


def test_a_put_replaces_the_value_and_a_delete_forgets_it(store: Store):
    store.put("a", 1, 100)
    store.put("a", 2, 100)
    assert store.get("a") == 2
    store.delete("a")
    store.delete("never there")
    assert store.get("a") is None


def test_a_store_counts_its_keys_once_each(store: Store):
    for key in ("a", "b", "a", "c"):
        store.put(key, key, 10)
    store.delete("b")
    store.delete("b")
    assert len(store) == 2


def test_expired_keys_come_oldest_first_up_to_the_limit(store: Store):
    for i, key in enumerate(["a", "b", "c", "d"]):
        store.put(key, i, 100 + i)
    assert store.expired(102, 10) == ["a", "b", "c"]
    assert store.expired(102, 2) == ["a", "b"]
    assert store.expired(99, 10) == []


def test_a_key_written_again_expires_at_its_new_time(store: Store):
    store.put("a", 1, 100)
    store.put("b", 1, 150)
    store.put("a", 2, 200)
    assert store.expired(160, 10) == ["b"]
    assert store.expired(200, 10) == ["b", "a"]


def test_a_deleted_key_never_comes_back_as_expired(store: Store):
    store.put("a", 1, 100)
    store.delete("a")
    assert store.expired(1_000, 10) == []


def test_a_cleared_store_holds_nothing(store: Store):
    store.put("a", 1, 100)
    store.put("b", 1, 100)
    store.clear()
    assert (len(store), store.get("a"), store.expired(1_000, 10)) == (0, None, [])
    store.put("c", 3, 100)
    assert (len(store), store.get("c")) == (1, 3)


def test_keys_with_any_characters_are_kept_apart(store: Store):
    keys = ["x:1", "x", "é€😀", '["a",1]', "\x00clock", "h:" + "f" * 32]
    for i, key in enumerate(keys):
        store.put(key, i, 100 + i)
    assert [store.get(k) for k in keys] == list(range(len(keys)))
    assert store.expired(1_000, 10) == keys


def test_keyed_state_sweeps_keys_past_their_expiry_by_stream_time(store: Store):
    state = KeyedState(store)
    state.put("old", 1, 100)
    state.put("new", 2, 500)
    state.drain()
    state.advance(300)
    assert state.sweep() == 1
    assert (store.get("old"), store.get("new"), len(state)) == (None, 2, 1)
    assert dict(state.drain())["old"] is None


def test_keyed_state_restores_a_changelog_into_the_store(store: Store):
    state = KeyedState(store)
    state.restore("a", encode_entry([1, 2], 100))
    state.restore("b", encode_entry(3, 200))
    state.restore("a", None)
    assert (store.get("a"), store.get("b"), len(store)) == (None, 3, 1)
    assert state.dirty == {}


# -- on disk only ------------------------------------------------------------------------


def test_the_disk_index_orders_keys_by_expiry_not_by_write(tmp_path: Path):
    store = RocksStore(tmp_path / "db")
    store.put("late", 1, 300)
    store.put("early", 1, 100)
    store.put("middle", 1, 200)
    assert store.expired(1_000, 10) == ["early", "middle", "late"]
    store.close()


def test_expiries_past_what_the_index_holds_are_clamped_in_order(tmp_path: Path):
    store = RocksStore(tmp_path / "db")
    store.put("never", 1, 10**20)
    store.put("before", 1, -5)
    assert store.expired(0, 10) == ["before"]
    assert store.expired(10**18, 10) == ["before", "never"]
    store.close()


def test_keys_past_the_recent_values_kept_decoded_are_read_and_rewritten_from_disk(
    tmp_path: Path,
):
    store = RocksStore(tmp_path / "db")
    big = ["x" * 100] * (RECENT_BYTES // 100)
    store.put("big", big, 10)
    keys = [f"k{i}" for i in range(RECENT_KEYS + 10)]
    for key in keys:
        store.put(key, {"k": key}, 100)
    store.put("big", big, 500)
    store.put("k0", {"k": "again"}, 400)
    store.delete("k1")
    assert (store.get("big"), store.get("k0"), store.get("k1")) == (big, {"k": "again"}, None)
    assert store.get(keys[-1]) == {"k": keys[-1]}
    assert store.expired(10, 10) == []
    assert store.expired(450, 1000)[-1] == "k0"
    assert len(store.expired(1000, 1000)) == len(keys) == len(store)
    store.close()


def test_a_disk_store_reopened_starts_empty(tmp_path: Path):
    first = RocksStore(tmp_path / "db")
    first.put("a", 1, 100)
    first._db.close()  # a crash: the files stay
    again = RocksStore(tmp_path / "db")
    assert (len(again), again.get("a"), again.expired(1_000, 10)) == (0, None, [])
    again.close()


def test_closing_a_disk_store_removes_its_files(tmp_path: Path):
    store = RocksStore(tmp_path / "db")
    store.put("a", 1, 100)
    store.close()
    assert not (tmp_path / "db").exists()


def test_a_disk_store_held_open_elsewhere_opens_beside_it(tmp_path: Path):
    holder = RocksStore(tmp_path / "db")
    holder.put("a", 1, 100)
    other = RocksStore(tmp_path / "db")
    assert other.path != holder.path
    assert other.path.parent == holder.path.parent
    assert (other.get("a"), holder.get("a")) == (None, 1)
    other.close()
    holder.close()
    assert list(tmp_path.iterdir()) == []


def test_the_factory_places_each_store_by_pipeline_stage_rule_and_partition(tmp_path: Path):
    state = StageState((SPEC,), rocks_stores(tmp_path, "payments"))
    state.open(3)["velocity"].put("acct", 1, 100)
    assert (tmp_path / "payments" / "checks" / "velocity" / "3" / "CURRENT").exists()
    state.drop(3)
    assert not (tmp_path / "payments" / "checks" / "velocity" / "3").exists()


def test_a_reset_partition_starts_from_an_empty_disk_store(tmp_path: Path):
    state = StageState((SPEC,), rocks_stores(tmp_path, "payments"))
    state.open(0)["velocity"].put("acct", 1, 100)
    assert len(state.reset(0)["velocity"]) == 0
    state.close()


def test_names_that_are_no_safe_directory_are_escaped():
    assert segment("velocity") == "velocity"
    assert "/" not in segment("a/b")
    assert segment("..") not in (".", "..")
    assert segment(".hidden").startswith("%2E")


def test_the_configured_store_kind_picks_the_factory(tmp_path: Path):
    assert configured_stores("memory", tmp_path, "p") is memory_stores
    store = configured_stores("rocksdb", tmp_path, "p")(SPEC, 0)
    assert isinstance(store, RocksStore)
    store.close()
    with pytest.raises(StateStoreError, match="unknown state store"):
        configured_stores("redis", tmp_path, "p")


def test_a_state_path_that_cannot_hold_a_store_is_an_error_naming_it(tmp_path: Path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StateStoreError, match=r"\(state\.path\)"):
        RocksStore(tmp_path / "file" / "db")
