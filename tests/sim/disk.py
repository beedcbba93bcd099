"""The simulator's disk: a journal in memory whose every write is first in flight (written,
not yet fsynced) and then synced, after a seeded delay on simulated time.

A crash of the actor that owns a store keeps what was synced and, by a seeded coin, the
write in flight or not (the OS may or may not have put it on the platter before the power
went). A torn frame is the same as a lost one here: SQLite's WAL checksums discard a torn
tail on the next open (journal/sqlite.py), so replay only ever sees a prefix of whole
frames. What survives is a new store; the dead actor's journal keeps the old one, whose
writes from then on raise `SimulatedCrash`, so no write of a dead process lands.
"""

from __future__ import annotations

import asyncio
import random

from journal import MemoryJournal, MemoryStore
from journal.base import Frame, HistoryGroup
from journal.memory import SimulatedCrash


class SimStore(MemoryStore):
    def __init__(self, rng: random.Random, fsync_s_max: float) -> None:
        super().__init__()
        self.rng = rng
        self.fsync_s_max = fsync_s_max
        self.dead = False
        self.in_flight: Frame | None = None

    def survivor_of_crash(self) -> SimStore:
        """What the next incarnation finds; this store is dead from now on."""
        self.dead = True
        store = SimStore(self.rng, self.fsync_s_max)
        store.frames = list(self.frames)
        if self.in_flight is not None and self.rng.random() < 0.5:
            store.frames.append(self.in_flight)  # it reached the disk before the crash
        store.snapshot = self.snapshot
        store.history, store.history_seq = dict(self.history), self.history_seq
        return store


class SimJournal(MemoryJournal):
    store: SimStore

    def __init__(self, store: SimStore, **kwargs: object) -> None:
        super().__init__(store, **kwargs)  # type: ignore[arg-type]

    def _gone(self) -> None:
        if self.store.dead:
            raise SimulatedCrash("the process is gone")

    async def _write(self, frame: Frame) -> None:
        store = self.store
        await asyncio.sleep(0)
        self._gone()
        if store.fail_writes:
            raise OSError("simulated: the disk refuses writes")
        assert store.in_flight is None, "one flush at a time per journal"
        store.in_flight = frame
        await asyncio.sleep(store.rng.uniform(0, store.fsync_s_max))  # the fsync
        self._gone()
        store.in_flight = None
        store.frames.append(frame)

    async def _write_snapshot(self, seq: int, hash_: bytes, body: bytes) -> None:
        await asyncio.sleep(0)
        self._gone()
        self.store.snapshot = (seq, hash_, body)

    async def _write_history(self, groups: list[HistoryGroup], through_seq: int) -> None:
        self._gone()
        await super()._write_history(groups, through_seq)
        self._gone()
