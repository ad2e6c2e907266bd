"""Stores on disk (RocksDB, through rocksdict), for state larger than memory; and the choice
of store a pipeline's ``state`` section makes.

One database per stage, rule and input partition, at
``<state.path>/<pipeline>/<stage>/<rule>/<partition>``. The database is a cache of the
partition's changelog, not a copy to keep: it is wiped when opened (the partition is then
restored from its changelog) and removed when closed, and it is written without a
write-ahead log. Two kinds of key share it, each in byte order:

- ``d:<key>`` → the key's expiry (15 digits) then its value as JSON;
- ``x:<expiry, 15 digits>:<key>`` → nothing: the expiry index, walked from its start by
  ``expired`` and left at the first key that expires later.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from stream_engine.core.stores import Store, StoreFactory, StoreSpec, memory_stores
from stream_engine.errors import StreamEngineError

log = logging.getLogger(__name__)

#: The kinds of store ``state.store`` may name.
MEMORY = "memory"
ROCKSDB = "rocksdb"

_DATA = b"d:"
_INDEX = b"x:"
#: The first byte after every key of a prefix (``:`` + 1), the end of a prefix's range.
_DATA_END = b"d;"
_INDEX_END = b"x;"
#: Digits of an expiry in keys and values: epoch milliseconds up to the year 33658.
_DIGITS = 15
_LATEST = 10**_DIGITS - 1

#: Memtables of every on-disk store of a process together, before RocksDB flushes them.
WRITE_BUFFERS_BYTES = 256 * 1024 * 1024
#: The block cache every on-disk store of a process shares.
CACHE_BYTES = 64 * 1024 * 1024
#: One store's memtable.
WRITE_BUFFER_BYTES = 32 * 1024 * 1024
#: The values of recently used keys a store keeps decoded (their JSON's size, at most), so
#: a hot key is not read back and parsed from RocksDB for every record.
RECENT_BYTES = 1024 * 1024
RECENT_KEYS = 256


class StateStoreError(StreamEngineError):
    """An on-disk store cannot be opened where its configuration says (``state.path``)."""


def _stamp(expires_ms: int) -> bytes:
    """An expiry as the fixed-width digits that order it (clamped to what they can hold)."""
    return b"%015d" % min(max(expires_ms, 0), _LATEST)


def _raw(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def segment(name: str) -> str:
    """A name as one safe directory name (``/``, ``..`` and the like escaped)."""
    text = quote(name, safe="-_.=+@,")
    return "%2E" + text[1:] if text.startswith(".") else text or "%00"


def _unusable(path: Path, exc: Exception) -> StateStoreError:
    return StateStoreError(f"cannot open the state store at {path} (state.path): {exc}")


class RocksShared:
    """What every on-disk store of one factory shares: options, memtable budget, cache."""

    def __init__(self) -> None:
        table = BlockBasedOptions()
        table.set_block_cache(Cache(CACHE_BYTES))
        table.set_bloom_filter(10, False)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_write_buffer_manager(WriteBufferManager(WRITE_BUFFERS_BYTES, False))
        options.set_max_background_jobs(2)
        options.set_keep_log_file_num(1)
        self.options = options
        write = WriteOptions()
        # The changelog is the log: a reopened store is wiped anyway. (A property, though the
        # stubs of rocksdict 0.3 declare a method.)
        setattr(write, "disable_wal", True)  # noqa: B010
        self.write = write


class RocksStore(Store):
    """One partition of one rule's state in a RocksDB database of its own (see the module)."""

    __slots__ = ("_count", "_db", "_recent", "_recent_bytes", "_shared", "home", "path")

    def __init__(self, home: Path, shared: RocksShared | None = None) -> None:
        #: Where the database belongs; ``path`` is where it is (beside it if that is taken).
        self.home = home
        self._shared = shared or RocksShared()
        self.path = home
        self._db = self._open()
        #: Keys held: 0 on open (the database starts empty), kept by ``put`` and ``delete``.
        self._count = 0
        #: key -> (value, its expiry stamp, its JSON's size) of recently used keys, oldest
        #: use first: what RocksDB holds, decoded (write-through).
        self._recent: dict[str, tuple[Any, bytes, int]] = {}
        self._recent_bytes = 0

    def _open(self) -> Rdict:
        """A fresh, empty database at ``home``; beside it when another process (a worker
        that lost the partition but does not know yet) still holds it open."""
        try:
            return self._fresh(self.home)
        except Exception as exc:  # rocksdict raises plain Exception, a held lock included
            if "lock" not in str(exc).lower():
                raise _unusable(self.home, exc) from exc
        beside = self.home.with_name(f"{self.home.name}~{os.getpid()}-{uuid.uuid4().hex[:8]}")
        log.warning("state store %s is held by another worker; using %s", self.home, beside)
        try:
            return self._fresh(beside)
        except Exception as exc:  # as above
            raise _unusable(beside, exc) from exc

    def _fresh(self, path: Path) -> Rdict:
        """An empty database at ``path``, whatever a crashed worker left there; RocksDB's
        destroy refuses a database another store holds open."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            Rdict.destroy(str(path), self._shared.options)
            shutil.rmtree(path, ignore_errors=True)
        db = Rdict(str(path), self._shared.options)
        db.set_write_options(self._shared.write)
        self.path = path
        return db

    def get(self, key: str) -> Any | None:
        recent = self._recent.pop(key, None)
        if recent is not None:
            self._recent[key] = recent
            return recent[0]
        raw = self._db.get(_DATA + _raw(key))
        if raw is None:
            return None
        value = orjson.loads(memoryview(raw)[_DIGITS:])
        self._remember(key, value, raw[:_DIGITS], len(raw))
        return value

    def put(self, key: str, value: Any, expires_ms: int) -> None:
        name = _raw(key)
        stamp = _stamp(expires_ms)
        old = self._stamp_of(key, name)
        batch = WriteBatch(raw_mode=True)
        if old is None:
            self._count += 1
        elif old != stamp:
            batch.delete(_INDEX + old + b":" + name)
        encoded = orjson.dumps(value)
        batch.put(_DATA + name, stamp + encoded)
        batch.put(_INDEX + stamp + b":" + name, b"")
        self._db.write(batch, self._shared.write)
        self._remember(key, value, stamp, len(encoded))

    def delete(self, key: str) -> None:
        name = _raw(key)
        old = self._stamp_of(key, name)
        if old is None:
            return
        self._forget(key)
        batch = WriteBatch(raw_mode=True)
        batch.delete(_DATA + name)
        batch.delete(_INDEX + old + b":" + name)
        self._db.write(batch, self._shared.write)
        self._count -= 1

    def _stamp_of(self, key: str, name: bytes) -> bytes | None:
        """The expiry stamp ``key`` is indexed under, None when it is not held."""
        recent = self._recent.get(key)
        if recent is not None:
            return recent[1]
        raw = self._db.get(_DATA + name)
        return None if raw is None else raw[:_DIGITS]

    def _remember(self, key: str, value: Any, stamp: bytes, size: int) -> None:
        """Keep ``key``'s value decoded as its latest use; the oldest uses go past the bounds."""
        self._forget(key)
        if size > RECENT_BYTES:
            return
        self._recent[key] = (value, stamp, size)
        self._recent_bytes += size
        recent = self._recent
        while self._recent_bytes > RECENT_BYTES or len(recent) > RECENT_KEYS:
            self._recent_bytes -= recent.pop(next(iter(recent)))[2]

    def _forget(self, key: str) -> None:
        recent = self._recent.pop(key, None)
        if recent is not None:
            self._recent_bytes -= recent[2]

    def expired(self, now_ms: int, limit: int) -> list[str]:
        end = _INDEX + _stamp(now_ms) + b";"  # past every index key expiring at or before now
        out: list[str] = []
        it = self._db.iter()
        it.seek(_INDEX)
        while len(out) < limit and it.valid():
            index: bytes = it.key()
            if index >= end:
                break
            out.append(index[len(_INDEX) + _DIGITS + 1 :].decode("utf-8", "surrogatepass"))
            it.next()
        return out

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._recent.clear()
        self._recent_bytes = 0
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = self._open()
        self._count = 0

    def flush(self) -> None:
        """Write the memtable out (to measure the store's size on disk)."""
        self._db.flush()

    def close(self) -> None:
        """Close the database and remove it (its state lives on in the changelog)."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)


def rocks_stores(path: str | Path, pipeline: str) -> StoreFactory:
    """A factory of on-disk stores under ``<path>/<pipeline>``, sharing options and memory."""
    root = Path(path) / segment(pipeline)
    shared = RocksShared()

    def make(spec: StoreSpec, partition: int) -> Store:
        home = root / segment(spec.stage) / segment(spec.name) / str(partition)
        return RocksStore(home, shared)

    return make


def configured_stores(kind: str, path: str | Path, pipeline: str) -> StoreFactory:
    """The factory ``state.store`` names: ``memory``, or ``rocksdb`` under ``state.path``."""
    if kind == MEMORY:
        return memory_stores
    if kind == ROCKSDB:
        return rocks_stores(path, pipeline)
    raise StateStoreError(f"unknown state store {kind!r} (use {MEMORY} or {ROCKSDB})")
