"""In-memory journal: the same group commit, frames and chain checks, with no disk.

A `MemoryStore` outlives the journal objects that use it, so tests can "restart" by
building a new journal on the same store; `fail_writes` simulates an unwritable disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from journal.base import GENESIS_HASH, Frame, HistoryGroup, HistoryQuery, HistoryRow, Journal, expand
from ledger.records import Record


class SimulatedCrash(BaseException):
    """The process died: not an error to handle, so it is not an Exception."""


class CrashPoint:
    """A test hook shared by several stores: at the first flush that `decide(records)`
    picks (answering "before" or "after" the write), every store "dies" — that flush is
    lost or kept, and no later flush of any store is written."""

    def __init__(self, decide: Callable[[list[Record]], str | None], on_crash: Callable[[], None]) -> None:
        self.decide = decide
        self.on_crash = on_crash
        self.happened = False


class MemoryStore:
    def __init__(self, frames: list[Frame] | None = None) -> None:
        self.frames: list[Frame] = list(frames or [])
        self.snapshot: tuple[int, bytes, bytes] | None = None
        self.history: dict[tuple[str, str, int], HistoryRow] = {}  # by (tag, id, seq), as SQLite keys it
        self.history_seq = 0
        self.fail_writes = False
        self.crash: CrashPoint | None = None

    def survivor(self) -> MemoryStore:
        """What a restarted process finds: the written frames, snapshot and index, no hooks."""
        store = MemoryStore(self.frames)
        store.snapshot = self.snapshot
        store.history, store.history_seq = dict(self.history), self.history_seq
        return store


class MemoryJournal(Journal):
    def __init__(self, store: MemoryStore | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store if store is not None else MemoryStore()

    def _read(self, from_genesis: bool) -> tuple[int, bytes, bytes | None, Iterator[Frame]]:
        if self.store.snapshot is None:
            return 0, GENESIS_HASH, None, iter(list(self.store.frames))
        seq, hash_, body = self.store.snapshot
        first_seq = 0 if from_genesis else seq  # from the frame the snapshot was taken at
        return seq, hash_, body, iter([f for f in self.store.frames if f.last_seq >= first_seq])

    async def _write(self, frame: Frame) -> None:
        await asyncio.sleep(0)  # a real flush suspends; keep the same interleavings
        if self.store.fail_writes:
            raise OSError("simulated: no space left on device")
        crash = self.store.crash
        if crash is not None:
            when = None if crash.happened else crash.decide(self.codec.decode_frame(frame.body))
            if crash.happened or when is not None:
                if when == "after":
                    self.store.frames.append(frame)
                if not crash.happened:
                    crash.happened = True
                    crash.on_crash()
                raise SimulatedCrash(f"crash {when} writing seq {frame.first_seq}..{frame.last_seq}")
        self.store.frames.append(frame)

    async def _write_snapshot(self, seq: int, hash_: bytes, body: bytes) -> None:
        self.store.snapshot = (seq, hash_, body)

    def _history_seq(self) -> int:
        last = self.store.frames[-1].last_seq if self.store.frames else 0
        if self.store.history_seq > last:  # ahead of its journal: rebuilt, as SQLite's is
            self.store.history, self.store.history_seq = {}, 0
        return self.store.history_seq

    async def _frames_after(self, seq: int, limit: int) -> list[Frame]:
        return [f for f in self.store.frames if f.last_seq > seq][:limit]

    async def _write_history(self, groups: list[HistoryGroup], through_seq: int) -> None:
        await asyncio.sleep(0)
        if self.store.crash is not None and self.store.crash.happened:
            raise SimulatedCrash("the process is gone")
        for r in expand(groups):  # a redone batch adds nothing twice
            self.store.history.setdefault((r.tag, r.id, r.seq), r)
        self.store.history_seq = through_seq

    async def _stored_cursor_seq(self, tag: str, some_id: str) -> int | None:
        return min((r.seq for r in self.store.history.values() if r.tag == tag and r.id == some_id), default=None)

    async def _select(self, q: HistoryQuery) -> list[tuple[int, str, bytes]]:
        assert not (q.by_seq and q.by_id_cursor), "the journal resolves by-seq cursors"
        tagged = [r for r in self.store.history.values() if r.tag == q.tag]
        found = tagged if q.only_id is None else [r for r in tagged if r.id == q.only_id]
        if q.also_tag is not None:
            also = {(r.id, r.seq) for r in self.store.history.values() if r.tag == q.also_tag}
            found = [r for r in found if (r.id, r.seq) in also]
        if q.before_seq is not None:
            found = [r for r in found if r.seq < q.before_seq]
        if q.after_seq is not None:
            found = [r for r in found if r.seq > q.after_seq]
        if q.before_id is not None:
            found = [r for r in found if r.id < q.before_id]
        if q.after_id is not None:
            found = [r for r in found if r.id > q.after_id]
        found.sort(key=(lambda r: r.seq) if q.by_seq else (lambda r: (r.id, r.seq)), reverse=not q.ascending)
        bodies = {f.first_seq: f.body for f in self.store.frames}
        return [(r.seq, r.id, bodies[r.frame][r.offset : r.offset + r.length]) for r in found[: q.limit]]
