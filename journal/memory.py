"""In-memory journal: the same group commit and chain checks, with no disk.

A `MemoryStore` outlives the journal objects that use it, so tests can "restart" by
building a new journal on the same store; `fail_writes` simulates an unwritable disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from journal.base import GENESIS_HASH, Journal, Row


class SimulatedCrash(BaseException):
    """The process died: not an error to handle, so it is not an Exception."""


class CrashPoint:
    """A test hook shared by several stores: at the first flush that `decide(rows)` picks
    (answering "before" or "after" the write), every store "dies" — that flush is lost or
    kept, and no later flush of any store is written."""

    def __init__(self, decide: Callable[[list[Row]], str | None], on_crash: Callable[[], None]) -> None:
        self.decide = decide
        self.on_crash = on_crash
        self.happened = False


class MemoryStore:
    def __init__(self, rows: list[Row] | None = None) -> None:
        self.rows: list[Row] = list(rows or [])
        self.snapshot: tuple[int, bytes, bytes] | None = None
        self.fail_writes = False
        self.crash: CrashPoint | None = None

    def survivor(self) -> MemoryStore:
        """What a restarted process finds: the written rows and snapshot, no hooks."""
        store = MemoryStore(self.rows)
        store.snapshot = self.snapshot
        return store


class MemoryJournal(Journal):
    def __init__(self, store: MemoryStore | None = None, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.store = store if store is not None else MemoryStore()

    def _read(self, from_genesis: bool) -> tuple[int, bytes, bytes | None, Iterator[Row]]:
        if self.store.snapshot is None:
            return 0, GENESIS_HASH, None, iter(list(self.store.rows))
        seq, hash_, body = self.store.snapshot
        first_seq = 0 if from_genesis else seq
        return seq, hash_, body, iter([r for r in self.store.rows if r.seq > first_seq])

    async def _write(self, rows: list[Row]) -> None:
        await asyncio.sleep(0)  # a real flush suspends; keep the same interleavings
        if self.store.fail_writes:
            raise OSError("simulated: no space left on device")
        crash = self.store.crash
        if crash is not None:
            when = None if crash.happened else crash.decide(rows)
            if crash.happened or when is not None:
                if when == "after":
                    self.store.rows.extend(rows)
                if not crash.happened:
                    crash.happened = True
                    crash.on_crash()
                raise SimulatedCrash(f"crash {when} writing {[r.kind for r in rows]}")
        self.store.rows.extend(rows)

    async def _select(self, key: str, kind: str, limit: int, before_seq: int | None) -> list[Row]:
        found = [
            r
            for r in reversed(self.store.rows)
            if r.key == key and r.kind == kind and (before_seq is None or r.seq < before_seq)
        ]
        return found[:limit]

    async def _select_tagged(
        self, tag: str, limit: int, before_id: str | None, also_tag: str | None, by_seq: bool
    ) -> list[Row]:
        found = [r for r in self.store.rows if r.tags and tag in r.tags[1]]
        if also_tag is not None:
            found = [r for r in found if also_tag in r.tags[1]]  # type: ignore[index]
        if by_seq:
            found.sort(key=lambda r: r.seq, reverse=True)
            if before_id is not None:
                cursor = min((r.seq for r in found if r.tags[0] == before_id), default=0)  # type: ignore[index]
                found = [r for r in found if r.seq < cursor]
        else:
            found.sort(key=lambda r: (r.tags[0], r.seq), reverse=True)  # type: ignore[index]
            if before_id is not None:
                found = [r for r in found if r.tags[0] < before_id]  # type: ignore[index]
        return found[:limit]

    async def _write_snapshot(self, seq: int, hash_: bytes, body: bytes) -> None:
        self.store.snapshot = (seq, hash_, body)
