"""The in-process ledger for deterministic scenarios, plus simulated crashes: with
`memory=True` its journals live in MemoryStores that outlive a `crash()`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.inprocess import InProcessLedger, abandon
from journal import CrashPoint, MemoryJournal, MemoryStore
from journal.base import kind_of
from ledger.book import DEBIT
from ledger.records import HeldBatch, Record


class LocalLedger(InProcessLedger):
    """`memory=True`: journals in MemoryStores (kept in `stores` across restarts), so a test
    can fail or crash them; otherwise real SQLite files under `data_dir`."""

    def __init__(self, data_dir: Path, *, memory: bool = False, **overrides: Any) -> None:
        super().__init__(data_dir, **overrides)
        self.stores: dict[str, MemoryStore] | None = {} if memory else None

    def journal(self, name: str) -> MemoryJournal | None:
        if self.stores is None:
            return None
        return MemoryJournal(self.stores.setdefault(name, MemoryStore()))

    async def start(self) -> LocalLedger:
        await super().start()
        return self

    def crash(self) -> None:
        """Every process dies at once: unflushed records are lost, tasks are abandoned.
        The next `start()` sees only what the stores hold."""
        assert self.stores is not None, "crashes are simulated on memory journals"
        for obj in self.objects.values():
            abandon(obj)
        self.stores = {name: store.survivor() for name, store in self.stores.items()}
        self.objects = {}

    async def crash_at(
        self, tasks: list[asyncio.Future[Any]], kind: str, when: str, on_crash: Callable[[], None]
    ) -> None:
        """Kill every process at the first flush holding a record of `kind` ("before" it is
        written or right "after"), driving the loop without sleeping (no timing), then
        abandon `tasks`. `on_crash` sees what had been answered at that moment."""
        assert self.stores is not None, "crashes are simulated on memory journals"

        def decide(records: list[Record]) -> str | None:
            return when if any(_holds(r, kind) for r in records) else None

        crash = CrashPoint(decide, on_crash)
        for store in self.stores.values():
            store.crash = crash
        coordinator = self.coordinator()
        for _ in range(10_000):  # until the crash happens (or all is done)
            settled = all(t.done() for t in tasks) and coordinator.phase_two.idle
            if crash.happened or settled:
                break
            await asyncio.sleep(0)
        assert crash.happened, f"no {kind} record was ever written"
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.crash()


def _holds(record: Record, kind: str) -> bool:
    """Whether `record` is of `kind` (its tag), or a batch with a leg of that kind: the
    reserves ("rs") and prepares ("pr") of a HeldBatch, the posts ("po") of a PostedBatch,
    the voids ("vo") of a VoidedBatch, the decisions ("de") of a DecidedBatch."""
    tag = kind_of(record)
    if isinstance(record, HeldBatch):
        return kind == tag or any(kind == ("rs" if side == DEBIT else "pr") for side in record.sides)
    return kind in (tag, {"pb": "po", "vb": "vo", "db": "de"}.get(tag))
