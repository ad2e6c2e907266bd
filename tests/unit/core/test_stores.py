"""The state layer: store keys, captured changes, restore from them, expiry, partitions."""

from __future__ import annotations

import orjson
import pytest

from stream_engine.core.stores import (
    CLOCK_KEY,
    KeyedState,
    MemoryStore,
    StageState,
    StoreSpec,
    decode_entry,
    encode_entry,
    key_of,
)

CARD = StoreSpec("velocity", "fraud", ("card_id",))


def test_a_key_of_one_field_is_its_value_as_text():
    assert key_of({"card_id": "C-1"}, CARD) == "C-1"
    assert key_of({"card_id": 42}, CARD) == "42"


def test_a_key_of_several_fields_is_a_json_list_and_dotted_fields_reach_inside():
    spec = StoreSpec("dup", "s", ("ssn", "contact.email"))
    assert key_of({"ssn": "1", "contact": {"email": "a@b"}}, spec) == '["1","a@b"]'


@pytest.mark.parametrize("data", [{}, {"card_id": None}, {"card_id": ""}])
def test_a_record_without_its_key_has_none(data):
    assert key_of(data, CARD) is None


def test_a_pii_key_is_held_as_a_keyed_hash_never_as_the_value():
    spec = StoreSpec("dup", "s", ("ssn",), hash_key=b"secret", hashed=True)
    other = StoreSpec("dup", "s", ("ssn",), hash_key=b"other", hashed=True)
    key = key_of({"ssn": "123-45-6789"}, spec)
    assert key is not None
    assert key.startswith("h:")
    assert "6789" not in key
    assert key == key_of({"ssn": "123-45-6789"}, spec)
    assert key != key_of({"ssn": "123-45-6789"}, other)


def test_changes_are_drained_once_the_latest_per_key():
    state = KeyedState(MemoryStore())
    state.put("a", [1], 100)
    state.put("a", [1, 2], 200)
    state.put("b", [3], 100)
    state.delete("b")
    changes = dict(state.drain())
    assert decode_entry(changes["a"] or b"") == ([1, 2], 200)
    assert changes["b"] is None
    assert list(state.drain()) == []


def test_a_store_restored_from_its_changes_equals_the_original_with_its_stream_time():
    original = KeyedState(MemoryStore())
    original.advance(5_000)
    original.put("a", {"n": 1}, 9_000)
    original.put("b", {"n": 2}, 9_000)
    original.delete("b")
    restored = KeyedState(MemoryStore())
    for key, raw in original.drain():
        restored.restore(key, raw)
    assert restored.get("a") == {"n": 1}
    assert restored.get("b") is None
    assert restored.clock == 5_000
    assert len(restored) == 1


def test_stream_time_only_moves_forward():
    state = KeyedState(MemoryStore())
    state.advance(10)
    state.advance(5)
    assert state.clock == 10
    assert dict(state.drain()) == {CLOCK_KEY: encode_entry(10, 0)}


@pytest.mark.parametrize("raw", [b"[]", b'{"v": 1}', b'{"v": 1, "x": "soon"}', b"nope"])
def test_a_malformed_changelog_value_is_refused(raw):
    with pytest.raises(ValueError, match=r"."):
        KeyedState(MemoryStore()).restore("k", raw)


def test_the_sweep_removes_expired_keys_with_tombstones_and_counts_them():
    state = KeyedState(MemoryStore())
    state.put("old", 1, 1_000)
    state.put("new", 2, 5_000)
    state.advance(2_000)
    list(state.drain())
    assert state.sweep() == 1
    assert state.get("old") is None
    assert state.get("new") == 2
    assert dict(state.drain()) == {"old": None}
    assert state.expired_total == 1


def test_the_sweep_is_bounded_per_call():
    state = KeyedState(MemoryStore())
    for i in range(10):
        state.put(str(i), i, 1)
    state.advance(2)
    assert state.sweep(limit=4) == 4
    assert len(state) == 6


def test_a_stage_keeps_stores_per_partition_and_drains_them_with_their_partition():
    stage = StageState((CARD,))
    stage.view(0, "in/0/1", 0).state("velocity").put("C-1", 1, 10**12)
    stage.view(3, "in/3/1", 0).state("velocity").put("C-2", 2, 10**12)
    drained = sorted(stage.drain())
    assert [(name, p, key) for name, p, key, _ in drained] == [
        ("velocity", 0, "C-1"),
        ("velocity", 3, "C-2"),
    ]
    assert orjson.loads(drained[1][3] or b"")["v"] == 2


def test_a_dropped_partition_forgets_its_state_and_a_reset_one_starts_empty():
    stage = StageState((CARD,))
    stage.open(1)["velocity"].put("C-1", 1, 10**12)
    stage.drop(1)
    assert 1 not in stage.partitions
    stage.open(2)["velocity"].put("C-1", 1, 10**12)
    assert len(stage.reset(2)["velocity"]) == 0


def test_a_stage_without_stateful_rules_is_falsy():
    assert not StageState(())
    assert StageState((CARD,))
