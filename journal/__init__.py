"""The Journal port: an append-only, hash-chained, group-committed record log.

Two adapters implement it — SQLite (durable) and memory (tests, simulations) — and one
contract suite runs against both (tests/integration/test_journal_contract.py).
"""

from journal.base import Journal, JournalCorrupt, JournalUnavailable, Loaded, StoredRecord
from journal.handoff import adopt_partitions
from journal.memory import CrashPoint, MemoryJournal, MemoryStore, SimulatedCrash
from journal.sqlite import JournalFormatError, SqliteFile, SqliteJournal

__all__ = [
    "CrashPoint",
    "Journal",
    "JournalCorrupt",
    "JournalFormatError",
    "JournalUnavailable",
    "Loaded",
    "MemoryJournal",
    "MemoryStore",
    "SimulatedCrash",
    "SqliteFile",
    "SqliteJournal",
    "StoredRecord",
    "adopt_partitions",
]
