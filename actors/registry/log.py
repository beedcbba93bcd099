"""The registry's journal, and the one way the registry's state changes: a record is
appended, then applied by the part that owns its type, just as replay applies it (decide →
journal → apply, no await between). Also the clock and the ids its records carry.

Each part is handed this log rather than the journal, so that no part can change state
without journaling it, nor journal a record no part applies."""

from __future__ import annotations

from collections.abc import Callable

from journal import Journal, JournalUnavailable
from ledger.records import Record

Apply = Callable[[Record], None]


class RegistryLog:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._owners: dict[type, Apply] = {}  # record type -> the part that applies it

    def route(self, kinds: tuple[type, ...], apply: Apply) -> None:
        """`apply` applies the records of `kinds`: one part owns each."""
        for kind in kinds:
            assert kind not in self._owners, f"two parts apply {kind.__name__}"
            self._owners[kind] = apply

    def replay(self) -> int:
        """Apply every stored record as it was applied live; how many there were."""
        replayed = 0
        for stored in self.journal.load().records:
            self.apply(stored.record)
            replayed += 1
        return replayed

    def apply(self, record: Record) -> None:
        owner = self._owners.get(type(record))
        if owner is None:
            raise AssertionError(f"not a registry record: {record!r}")
        owner(record)

    def commit(self, record: Record) -> None:
        self.journal.append(record)
        self.apply(record)

    async def durable(self) -> None:
        await self.journal.durable()

    def require_writable(self) -> None:
        if not self.journal.writable:
            raise JournalUnavailable("registry journal is not writable")
