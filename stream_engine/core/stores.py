"""Keyed state for rules that remember across records (velocity, duplicates, aggregates).

Each stateful rule has one store per input partition of its stage (``KeyedState``): key →
a JSON value with the event time after which it may go. Every change is kept until the
runtime drains it into the rule's changelog topic, the value sealed there as
``{"v": value, "x": expires_ms}`` (``encode_entry``), ``None`` for a removal. A worker that
takes a partition over replays the changelog into a fresh store (``KeyedState.restore``)
before it processes the partition. Nothing here knows Kafka: the runtime moves the bytes.

The partition's stream time (the latest event time it has seen) is kept with the entries
under ``CLOCK_KEY``, so a restored store judges late records and expiry as the lost one did.
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

#: The reserved key under which a store's stream time travels in its changelog.
CLOCK_KEY = "\x00clock"

#: At most this many expired keys are removed per store per batch (work per batch bounded).
SWEEP_PER_BATCH = 1000

#: One change for a changelog: store (rule id), input partition, key, sealed value or None.
Change = tuple[str, int, str, bytes | None]


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A stateful rule's store: its name (the rule id), stage, and the fields of its key."""

    name: str
    stage: str
    key_fields: tuple[str, ...]
    #: Key values are PII: stores, changelogs and partition keys hold a keyed hash instead.
    hash_key: bytes | None = field(default=None, repr=False)
    hashed: bool = False


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def value_at(data: Mapping[str, Any], path: str) -> Any:
    """The value at a field name or a dotted path (``card.id``), None when absent."""
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def key_of(data: Mapping[str, Any], spec: StoreSpec) -> str | None:
    """The store key of a record: its key fields' values (one as text, several as a JSON
    list), hashed when they are PII; None when a key field is missing, null or empty."""
    values = []
    for name in spec.key_fields:
        value = value_at(data, name)
        if value is None or value == "":
            return None
        values.append(value)
    text = _text(values[0]) if len(values) == 1 else orjson.dumps(values).decode()
    if not spec.hashed:
        return text
    raw = text.encode("utf-8")
    if spec.hash_key is not None:
        return "h:" + hmac.new(spec.hash_key, raw, hashlib.sha256).hexdigest()[:32]
    return "h:" + hashlib.sha256(raw).hexdigest()[:32]


def encode_entry(value: Any, expires_ms: int) -> bytes:
    """A store entry as its changelog carries it."""
    return orjson.dumps({"v": value, "x": expires_ms})


def decode_entry(raw: bytes) -> tuple[Any, int]:
    """A changelog value back into (value, expires_ms); ValueError when it is not one."""
    entry = orjson.loads(raw)
    if not isinstance(entry, dict) or "v" not in entry or not isinstance(entry.get("x"), int):
        raise ValueError("not a store entry")
    return entry["v"], entry["x"]


class Store(ABC):
    """Where one partition of one rule's state lives: in memory, or on disk (RocksDB)."""

    @abstractmethod
    def get(self, key: str) -> Any | None:
        """The value under ``key``, or None."""

    @abstractmethod
    def put(self, key: str, value: Any, expires_ms: int) -> None:
        """Keep ``value`` under ``key`` until stream time passes ``expires_ms``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Forget ``key`` (nothing when it is not there)."""

    @abstractmethod
    def expired(self, now_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` keys whose expiry is at or before ``now_ms``."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of keys held."""

    @abstractmethod
    def clear(self) -> None:
        """Forget everything (before a restore)."""

    def close(self) -> None:  # noqa: B027 - only stores holding files need it
        """Release what the store holds open."""


class MemoryStore(Store):
    """A dict, and an expiry index ordered by when each key was last written; keys written
    later expire later in practice, so the sweep walks from the oldest write."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        #: key -> (value, expires_ms), in order of the last write.
        self._entries: dict[str, tuple[Any, int]] = {}

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: str, value: Any, expires_ms: int) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (value, expires_ms)

    def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def expired(self, now_ms: int, limit: int) -> list[str]:
        out: list[str] = []
        for key, (_, expires) in self._entries.items():
            if len(out) >= limit or expires > now_ms:
                break
            out.append(key)
        return out

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


#: Makes the store of one rule on one input partition.
StoreFactory = Callable[[StoreSpec, int], Store]


def memory_stores(spec: StoreSpec, partition: int) -> Store:
    """The default factory: every store in memory."""
    return MemoryStore()


class KeyedState:
    """One stateful rule's state on one input partition: its store, the partition's stream
    time, the changes not yet in the changelog, and counts for the metrics."""

    __slots__ = ("clock", "dirty", "expired_total", "late_total", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        #: The latest event time (epoch ms) this partition has seen; 0 before any.
        self.clock = 0
        #: key -> (value, expires_ms), or None for a removal.
        self.dirty: dict[str, tuple[Any, int] | None] = {}
        self.expired_total = 0
        self.late_total = 0

    def get(self, key: str) -> Any | None:
        return self.store.get(key)

    def put(self, key: str, value: Any, expires_ms: int) -> None:
        self.store.put(key, value, expires_ms)
        # Encoded when drained: a key written by many records of a batch is encoded once.
        self.dirty[key] = (value, expires_ms)

    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.dirty[key] = None

    def advance(self, time_ms: int) -> None:
        """Stream time moves to ``time_ms`` if that is later."""
        if time_ms > self.clock:
            self.clock = time_ms
            self.dirty[CLOCK_KEY] = (time_ms, 0)

    def sweep(self, limit: int = SWEEP_PER_BATCH) -> int:
        """Remove up to ``limit`` keys that expired by stream time; how many went."""
        keys = self.store.expired(self.clock, limit)
        for key in keys:
            self.delete(key)
        self.expired_total += len(keys)
        return len(keys)

    def drain(self) -> Iterator[tuple[str, bytes | None]]:
        """The changes since the last drain, the latest per key, and forget them."""
        dirty, self.dirty = self.dirty, {}
        return ((k, None if e is None else encode_entry(*e)) for k, e in dirty.items())

    def restore(self, key: str, raw: bytes | None) -> None:
        """Apply one changelog message (not recorded as a change); ValueError if malformed."""
        if raw is None:
            if key == CLOCK_KEY:
                return
            self.store.delete(key)
            return
        value, expires = decode_entry(raw)
        if key == CLOCK_KEY:
            if not isinstance(value, int):
                raise ValueError("a stream time must be an integer")
            self.clock = max(self.clock, value)
        else:
            self.store.put(key, value, expires)

    def __len__(self) -> int:
        return len(self.store)


class StoreView:
    """What a stateful rule sees of state while it decides one record: the stores of the
    record's partition, the identity a redelivery of the record shares (so it never counts
    twice), and the event time to use when the rule names no time field."""

    __slots__ = ("identity", "partition", "states", "time_ms")

    def __init__(
        self, states: Mapping[str, KeyedState], partition: int, identity: str, time_ms: int
    ) -> None:
        self.states = states
        self.partition = partition
        self.identity = identity
        self.time_ms = time_ms

    def state(self, name: str) -> KeyedState:
        """The store of rule ``name`` on this partition."""
        return self.states[name]


class StageState:
    """Every store of one stage, per input partition; opened when a partition is assigned
    (or, offline, when its first record arrives) and dropped when it is revoked."""

    def __init__(self, specs: tuple[StoreSpec, ...], factory: StoreFactory = memory_stores):
        self.specs = specs
        self.factory = factory
        self.partitions: dict[int, dict[str, KeyedState]] = {}

    def __bool__(self) -> bool:
        return bool(self.specs)

    def open(self, partition: int) -> dict[str, KeyedState]:
        """The partition's stores, made empty if it has none yet."""
        states = self.partitions.get(partition)
        if states is None:
            states = self.partitions[partition] = {
                spec.name: KeyedState(self.factory(spec, partition)) for spec in self.specs
            }
        return states

    def reset(self, partition: int) -> dict[str, KeyedState]:
        """The partition's stores, emptied (a restore starts from nothing)."""
        self.drop(partition)
        return self.open(partition)

    def drop(self, partition: int) -> None:
        """Forget the partition (revoked): its state lives on in the changelog."""
        states = self.partitions.pop(partition, None)
        for state in (states or {}).values():
            state.store.clear()
            state.store.close()

    def view(self, partition: int, identity: str, time_ms: int) -> StoreView:
        """The stores a record of ``partition`` is decided with."""
        return StoreView(self.open(partition), partition, identity, time_ms)

    def drain(self) -> list[Change]:
        """Every store's changes since the last drain, after sweeping expired keys."""
        out: list[Change] = []
        for partition, states in self.partitions.items():
            for name, state in states.items():
                state.sweep()
                out.extend((name, partition, key, raw) for key, raw in state.drain())
        return out

    def close(self) -> None:
        for partition in list(self.partitions):
            self.drop(partition)
