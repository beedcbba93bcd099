"""A coordinator's state: its book, the journal it is rebuilt from (docs/design.md §4, §5),
and the requests in flight.

Every change is a record: `commit` appends it, then applies it to the book, with no await
between, so what callers see in memory is exactly what replay rebuilds. Snapshots bound the
replay; one is taken every `snapshot_every_records`, written while commits go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine

import msgspec

from actors.clock import Clock
from actors.memory import freeze_long_lived_state
from actors.settings import Settings
from journal import Journal, JournalUnavailable
from ledger.messages import PaymentRequest, TransferRequest
from ledger.payment_book import BookLimits, CoordinatorSnapshot, PaymentBook
from ledger.records import Record


class CoordinatorState:
    def __init__(self, settings: Settings, journal: Journal, clock: Clock) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        limits = BookLimits(
            recent_max=settings.recent_payments_max,
            keys_max=settings.idempotency_keys_in_memory_max,
            key_window_ms=settings.idempotency_window_s * 1000,
        )
        loaded = journal.load()
        snapshot = None
        if loaded.snapshot is not None:
            snapshot = msgspec.msgpack.decode(loaded.snapshot, type=CoordinatorSnapshot)
        self.book = PaymentBook(limits, snapshot)
        self.snapshot_seq = loaded.snapshot_seq if snapshot is not None else 0
        started_ms = clock()
        self.replayed = 0
        for stored in loaded.records:
            self.book.apply(stored.record, started_ms)
            self.replayed += 1
        self.book.ids_evicted_until_ms = max(self.book.ids_evicted_until_ms, started_ms)
        self.inflight = InFlight()
        # hold id -> done once the shards released a closed hold's sides: a read that shows
        # a hold voided or expired waits for it, so the money shows released too (§5)
        self.releasing: dict[str, asyncio.Future[None]] = {}
        self._snapshotting: asyncio.Task[None] | None = None
        freeze_long_lived_state()

    @property
    def epoch(self) -> int:
        return self.book.epoch

    def require_writable(self) -> None:
        """Before new work that must be journaled: refused (503, retry) rather than stalled."""
        if not self.journal.writable:
            raise JournalUnavailable("coordinator journal is not writable")

    def commit(self, *records: Record) -> None:
        """Records durable all or none (one frame), applied as they are appended."""
        if len(records) == 1:
            self.journal.append(records[0])
        else:
            self.journal.append_together(list(records))
        now = self.clock()
        for record in records:
            self.book.apply(record, now)
        self._maybe_snapshot()

    async def durable(self) -> None:
        await self.journal.durable()

    def _maybe_snapshot(self) -> None:
        if (
            self.journal.last_seq - self.snapshot_seq >= self.settings.snapshot_every_records
            and self._snapshotting is None
        ):
            # The book and the journal position are captured together, with no await between.
            write = self.journal.save_snapshot(msgspec.msgpack.encode(self.book.snapshot()))
            self._snapshotting = asyncio.get_running_loop().create_task(self._save_snapshot(write))

    async def _save_snapshot(self, write: Coroutine[None, None, int]) -> None:
        try:
            self.snapshot_seq = await write
        finally:
            self._snapshotting = None

    async def snapshot_written(self) -> None:
        """Wait for the snapshot being written, if any (a clean stop; tests comparing them)."""
        if self._snapshotting is not None:
            await asyncio.gather(self._snapshotting, return_exceptions=True)


class InFlight:
    """Requests between their claim and their answer."""

    def __init__(self) -> None:
        # id -> what a duplicate waits on: set when decided, cancelled if not (made only
        # when a duplicate comes: a future per payment was a visible part of the loop's CPU)
        self.done: dict[str, asyncio.Future[None] | None] = {}
        self.payments: dict[str, PaymentRequest] = {}  # shown as pending
        self.transfers: dict[str, TransferRequest] = {}
        self.keys: dict[str, tuple[bytes | None, str]] = {}  # key -> (fingerprint, id): claimed, not journaled

    def __contains__(self, some_id: str) -> bool:
        return some_id in self.done

    def claim(self, some_id: str, key: str | None, fingerprint: bytes | None) -> None:
        assert some_id not in self.done, f"{some_id} claimed twice"
        self.done[some_id] = None
        if key is not None:
            self.keys[key] = (fingerprint, some_id)

    def answered(self, some_id: str) -> asyncio.Future[None] | None:
        """What to wait on until the request in flight with this id is answered (None: it is
        not in flight): done if it was decided, cancelled if not."""
        if some_id not in self.done:
            return None
        waiter = self.done[some_id]
        if waiter is None:
            waiter = self.done[some_id] = asyncio.get_running_loop().create_future()
        return waiter

    def release(self, some_id: str, key: str | None, decided: bool) -> None:
        """The request is answered: its key now lives in the book if it was decided."""
        if key is not None and self.keys.get(key, (None, None))[1] == some_id:
            del self.keys[key]
        self.payments.pop(some_id, None)
        self.transfers.pop(some_id, None)
        done = self.done.pop(some_id)
        if done is None:
            return
        if decided:
            done.set_result(None)
        else:
            done.cancel()


class Turns:
    """Work on one id that must not interleave runs one at a time: a payment's refunds (their
    sum is checked against it), a hold's captures and voids."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # id -> lock, [holders and waiters]

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, some_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(some_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:  # nobody holds it or waits for it: forget it
                del self._locks[some_id]

    def busy(self) -> set[str]:
        """The ids someone holds or waits for now."""
        return set(self._locks)
