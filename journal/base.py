"""Group commit shared by every adapter.

`append()` is synchronous: it assigns the next sequence number, extends the hash chain and
queues the row, so a caller can decide, append and apply without a suspension point.
`durable(seq)` waits until a flush covers `seq`. One flusher task per journal writes
whatever has queued while the previous flush was in flight as a single transaction, so
concurrent callers share one fsync without any timer.

A failed write leaves the batch queued and is retried with backoff; meanwhile `writable`
is False so callers refuse new work (503) instead of piling it up. Nothing is acknowledged
until it is durable, so a caller that gives up waiting has told its client nothing.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import NamedTuple

from ledger.records import Record, RecordCodec, record_key, record_tags

GENESIS_HASH = b"\x00" * 16
FLUSH_RETRY_S_MAX = 1.0
log = logging.getLogger("rayledger.journal")


class JournalCorrupt(Exception):
    """The stored chain has a hole, a reordering or a hash mismatch: stop loudly."""


class JournalUnavailable(Exception):
    """The journal cannot be written right now; nothing new is accepted."""


class Row(NamedTuple):
    seq: int
    kind: str
    key: str | None
    body: bytes
    hash: bytes
    tags: tuple[str, tuple[str, ...]] | None = None  # (id, tags) for history queries


class StoredRecord(NamedTuple):
    seq: int
    record: Record


class Loaded(NamedTuple):
    snapshot_seq: int
    snapshot: bytes | None
    records: Iterator[StoredRecord]


def chain_hash(prev_hash: bytes, seq: int, body: bytes) -> bytes:
    h = hashlib.blake2b(prev_hash, digest_size=16)
    h.update(seq.to_bytes(8, "big"))
    h.update(body)
    return h.digest()


def kind_of(record: Record) -> str:
    return type(record).__struct_config__.tag  # type: ignore[return-value]


class Journal(abc.ABC):
    def __init__(self, *, batch_rows_max: int = 4096) -> None:
        self.name = type(self).__name__  # adapters name their file; for logs
        self.codec = RecordCodec()
        self.batch_rows_max = batch_rows_max
        self.last_seq = 0
        self.durable_seq = 0
        self.writable = True
        self.flush_count = 0
        self._last_hash = GENESIS_HASH
        self._pending: list[Row] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.on_flush: Callable[[int, float], None] | None = None  # (rows, seconds): metrics

    # -- adapter hooks ----------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, from_genesis: bool) -> tuple[int, bytes, bytes | None, Iterator[Row]]:
        """(snapshot_seq, hash at snapshot, snapshot body, rows after it in seq order);
        `from_genesis`: every row from seq 1 (the snapshot is still returned)."""

    @abc.abstractmethod
    async def _write(self, rows: list[Row]) -> None:
        """Make `rows` durable atomically (all or none)."""

    @abc.abstractmethod
    async def _select(self, key: str, kind: str, limit: int, before_seq: int | None) -> list[Row]:
        """Durable rows with this key and kind, newest first."""

    @abc.abstractmethod
    async def _select_tagged(
        self, tag: str, limit: int, before_id: str | None, also_tag: str | None, by_seq: bool
    ) -> list[Row]:
        """Durable rows carrying `tag` (and `also_tag`), newest first by id or by seq,
        strictly after the row with id `before_id` in that order."""

    @abc.abstractmethod
    async def _write_snapshot(self, seq: int, hash_: bytes, body: bytes) -> None: ...

    async def _close(self) -> None:
        return None

    # -- recovery ---------------------------------------------------------------------
    def load(self, *, from_genesis: bool = False) -> Loaded:
        """Read the latest snapshot and the records after it, checking the chain.

        Synchronous so that an actor can rebuild its state inside `__init__`, before it
        serves any call. `from_genesis` (audits) replays every record from the first and
        checks the snapshot's position in the chain too.
        """
        snapshot_seq, snapshot_hash, snapshot, rows = self._read(from_genesis)
        self.last_seq = self.durable_seq = 0 if from_genesis else snapshot_seq
        self._last_hash = GENESIS_HASH if from_genesis else snapshot_hash

        def records() -> Iterator[StoredRecord]:
            for row in rows:
                if row.seq != self.last_seq + 1:
                    raise JournalCorrupt(f"sequence gap: expected {self.last_seq + 1}, found {row.seq}")
                if chain_hash(self._last_hash, row.seq, row.body) != row.hash:
                    raise JournalCorrupt(f"hash chain broken at seq {row.seq}")
                self.last_seq = self.durable_seq = row.seq
                self._last_hash = row.hash
                if from_genesis and row.seq == snapshot_seq and row.hash != snapshot_hash:
                    raise JournalCorrupt(f"the snapshot at seq {row.seq} does not match the chain")
                yield StoredRecord(row.seq, self.codec.decode(row.body))

        return Loaded(snapshot_seq, snapshot, records())

    # -- writing ----------------------------------------------------------------------
    def append(self, record: Record) -> int:
        """Queue `record`. Never refuses: callers check `writable` before starting new
        work, and what they already started (a decided payment's phase 2) must be
        recorded once the disk is back."""
        assert not self._closed, "append after close"
        body = self.codec.encode(record)
        seq = self.last_seq + 1
        digest = chain_hash(self._last_hash, seq, body)
        self._pending.append(Row(seq, kind_of(record), record_key(record), body, digest, record_tags(record)))
        self.last_seq, self._last_hash = seq, digest
        self._kick()
        return seq

    async def durable(self, seq: int | None = None) -> None:
        """Return once every record up to `seq` (default: all appended) is on disk."""
        target = self.last_seq if seq is None else seq
        if target <= self.durable_seq:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._kick()
        await future

    def _kick(self) -> None:
        if self._flusher is None:
            self._wake = asyncio.Event()
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        assert self._wake is not None
        self._wake.set()

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        retry_s = 0.01
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.batch_rows_max]
                started = time.perf_counter()
                try:
                    await self._write(batch)
                except Exception as exc:  # disk full, permissions, I/O error: keep the batch, retry
                    if self.writable:
                        fields = {"journal": self.name, "error": f"{type(exc).__name__}: {exc}"[:300]}
                        log.error("journal_unwritable", extra={"fields": fields})
                    self.writable = False
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, FLUSH_RETRY_S_MAX)
                    continue
                retry_s = 0.01
                if not self.writable:
                    log.warning("journal_writable_again", extra={"fields": {"journal": self.name}})
                self.writable = True
                del self._pending[: len(batch)]
                self.flush_count += 1
                self.durable_seq = batch[-1].seq
                self._release()
                if self.on_flush is not None:
                    self.on_flush(len(batch), time.perf_counter() - started)

    def _release(self) -> None:
        still_waiting = []
        for target, future in self._waiters:
            if target <= self.durable_seq:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((target, future))
        self._waiters = still_waiting

    # -- reading history ------------------------------------------------------------------
    async def query(
        self, key: str, kind: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[StoredRecord]:
        rows = await self._select(key, kind, limit, before_seq)
        return [StoredRecord(r.seq, self.codec.decode(r.body)) for r in rows]

    async def tagged(
        self,
        tag: str,
        *,
        limit: int,
        before_id: str | None = None,
        also_tag: str | None = None,
        by_seq: bool = False,
    ) -> list[StoredRecord]:
        """History by tag (see `ledger.records.record_tags`), for lists with cursors."""
        rows = await self._select_tagged(tag, limit, before_id, also_tag, by_seq)
        return [StoredRecord(r.seq, self.codec.decode(r.body)) for r in rows]

    def save_snapshot(self, body: bytes) -> Coroutine[None, None, int]:
        """Store `body` as the state after every record appended so far; returns its seq.

        Not a coroutine function on purpose: the seq and hash are captured at the call,
        right where the caller took `body` from its state, even if the returned coroutine
        runs later. It writes once everything up to that seq is durable.
        """
        seq, hash_ = self.last_seq, self._last_hash

        async def write() -> int:
            await self.durable(seq)
            await self._write_snapshot(seq, hash_, body)
            return seq

        return write()

    async def close(self) -> None:
        if self._pending:
            await self.durable()
        self._closed = True
        if self._flusher is not None:
            assert self._wake is not None
            self._wake.set()
            await self._flusher
        await self._close()
