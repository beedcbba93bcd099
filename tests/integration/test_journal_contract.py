"""The Journal contract: one parametrized suite run against both adapters (CONTRIBUTING: one port, two adapters).

Every test gets a `JournalHarness` for one adapter. `reopen()` builds a fresh journal
object on the same SQLite file or the same `MemoryStore`, which is what a restart looks
like to the code above the port. The harness also reads and edits what is stored behind
the adapter's back (a separate sqlite3 connection, or `store.frames`), so the tests can
check what is really durable and can tamper with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiosqlite
import msgspec
import pytest

from journal import (
    Journal,
    JournalCorrupt,
    JournalFormatError,
    JournalUnavailable,
    MemoryJournal,
    MemoryStore,
    SqliteJournal,
    StoredRecord,
)
from journal import sqlite as journal_sqlite
from journal.base import GENESIS_HASH, Frame, chain_hash, frame_hash
from ledger.records import (
    RECORD_TAGS_VERSION,
    BalanceOpened,
    Completed,
    Decided,
    DecidedBatch,
    EpochStarted,
    Fenced,
    KeyCreated,
    PaymentRecord,
    Posted,
    PostedBatch,
    Record,
    RecordCodec,
    Reserved,
    event_of,
    event_seq,
)

# on-loop: commits on the event loop, not a thread; elsewhere: the history index is stored by
# a process of its own (journal.indexer), as coordinators and shards do
ADAPTERS = ["sqlite", "sqlite-on-loop", "sqlite-elsewhere", "memory"]
WAIT_S_MAX = 5.0  # upper bound on any wait for something that must happen; never a speed claim


# -- records -------------------------------------------------------------------------------
def posted(n: int, balance_id: str = "bal_a", prefix: str = "pay_") -> Posted:
    return Posted(f"{prefix}{n}", balance_id, delta_minor=-n, balance_after_minor=10_000 - n, at_ms=1_000 + n)


def decided(payment_id: str, balance_from: str = "bal_a", balance_to: str = "bal_b") -> Decided:
    return Decided(
        PaymentRecord(
            id=payment_id,
            balance_from=balance_from,
            balance_to=balance_to,
            amount_minor=250,
            currency="USD",
            status="posted",
            reason=None,
            created_at_ms=1_700,
            settled_at_ms=1_701,
            description="rent",
            metadata={"invoice": payment_id},
        )
    )


def mixed(start: int, count: int) -> list[Record]:
    """Records of several kinds, keyed and unkeyed, with bytes, dicts and optionals."""
    out: list[Record] = []
    for n in range(start, start + count):
        match n % 6:
            case 0:
                out.append(posted(n, balance_id=f"bal_{n % 4}"))
            case 1:
                out.append(decided(f"pay_{n}"))
            case 2:
                out.append(Reserved(f"pay_{n}", "bal_a", amount_minor=n, coordinator=0, epoch=3))
            case 3:
                out.append(KeyCreated(f"key_{n}", "acc_1", token_hash=bytes([n % 256]) * 32, created_at_ms=n))
            case 4:
                out.append(BalanceOpened(f"bal_{n}", "EUR", overdraft_limit_minor=0, unlimited=n % 2 == 0))
            case _:
                out.append(Completed(f"pay_{n}"))
    return out


def replay(journal: Journal) -> tuple[int, bytes | None, list[StoredRecord]]:
    loaded = journal.load()
    return loaded.snapshot_seq, loaded.snapshot, list(loaded.records)


def stored(first_seq: int, records: Sequence[Record]) -> list[StoredRecord]:
    return [StoredRecord(first_seq + i, r) for i, r in enumerate(records)]


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S_MAX
    while not predicate():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


# -- the harness: one adapter, its storage, restarts and sabotage -----------------------------
class JournalHarness:
    def __init__(self, adapter: str, tmp_path: Path) -> None:
        self.adapter = adapter
        self.path = tmp_path / "j.sqlite"
        self.store = MemoryStore()
        self.opened: list[Journal] = []
        self._blocker: sqlite3.Connection | None = None

    def reopen(self, **kwargs: float) -> Journal:
        """A fresh journal object on the same storage: a process restart."""
        journal: Journal
        if self.adapter.startswith("sqlite"):
            # A short busy timeout, so that make_unwritable's lock fails a write in
            # milliseconds rather than after the default 5 s.
            on_loop = self.adapter == "sqlite-on-loop"
            elsewhere = self.adapter == "sqlite-elsewhere"
            journal = SqliteJournal(
                self.path,
                **{"busy_timeout_ms": 20, "commit_on_loop": on_loop, "history_elsewhere": elsewhere, **kwargs},
            )
        else:
            journal = MemoryJournal(self.store, **kwargs)
        self.opened.append(journal)
        return journal

    def frames(self) -> list[Frame]:
        """What is durable right now, read behind the adapter's back."""
        if self.adapter == "memory":
            return list(self.store.frames)
        if not self.path.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            found = conn.execute(
                "SELECT first_seq, last_seq, body, hash, lens FROM frames ORDER BY first_seq"
            ).fetchall()
        return [Frame(*r[:4], tuple(msgspec.msgpack.decode(r[4]))) for r in found]

    def seqs(self) -> list[int]:
        return [seq for f in self.frames() for seq in range(f.first_seq, f.last_seq + 1)]

    def rewrite(
        self, first_seq: int, *, body: bytes, hash_: bytes | None = None, lens: tuple[int, ...] | None = None
    ) -> None:
        """Replace a stored frame's body (and optionally its hash and lengths), as an
        attacker or bit rot would."""
        i = next(i for i, f in enumerate(self.frames()) if f.first_seq == first_seq)
        old = self.frames()[i]
        new = old._replace(body=body, hash=hash_ or old.hash, lens=old.lens if lens is None else lens)
        if self.adapter == "memory":
            self.store.frames[i] = new
            return
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            changed = conn.execute(
                "UPDATE frames SET body = ?, hash = ?, lens = ? WHERE first_seq = ?",
                (new.body, new.hash, msgspec.msgpack.encode(new.lens), first_seq),
            ).rowcount
        assert changed == 1

    def delete(self, first_seq: int) -> None:
        if self.adapter == "memory":
            before = len(self.store.frames)
            self.store.frames = [f for f in self.store.frames if f.first_seq != first_seq]
            assert len(self.store.frames) == before - 1
            return
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            assert conn.execute("DELETE FROM frames WHERE first_seq = ?", (first_seq,)).rowcount == 1

    def forge_snapshot_hash(self) -> None:
        if self.adapter == "memory":
            assert self.store.snapshot is not None
            seq, _, body = self.store.snapshot
            self.store.snapshot = (seq, b"\x01" * 16, body)
            return
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            assert conn.execute("UPDATE snapshots SET hash = ?", (b"\x01" * 16,)).rowcount >= 1

    def drop_history(self) -> None:
        """Lose the history index, as a crash before it was written or a deleted file would."""
        if self.adapter == "memory":
            self.store.history, self.store.history_seq = {}, 0
            return
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}-history{suffix}").unlink(missing_ok=True)

    async def make_unwritable(self, journal: Journal) -> None:
        """Memory: the store's fault switch. SQLite: another connection holds the write lock
        (`BEGIN EXCLUSIVE`); file permission bits would not stop a root test run."""
        if self.adapter == "memory":
            self.store.fail_writes = True
            return
        assert isinstance(journal, SqliteJournal)
        self._blocker = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
        self._blocker.execute("BEGIN EXCLUSIVE")

    def make_writable(self) -> None:
        self.store.fail_writes = False
        if self._blocker is not None:
            self._blocker.execute("ROLLBACK")
            self._blocker.close()
            self._blocker = None


@pytest.fixture(params=ADAPTERS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JournalHarness]:
    h = JournalHarness(request.param, tmp_path)
    try:
        yield h
    finally:
        h.make_writable()
        for journal in h.opened:
            await asyncio.wait_for(journal.close(), WAIT_S_MAX)


def assert_valid_chain(frames: Sequence[Frame], expected: Sequence[Record]) -> None:
    """Recompute the whole chain from genesis: contiguous frames, hashes, bodies."""
    codec = RecordCodec()
    prev, seq, found = GENESIS_HASH, 0, []
    for frame in frames:
        assert frame.first_seq == seq + 1, f"gap before seq {frame.first_seq}"
        assert frame.hash == frame_hash(prev, frame), f"chain broken at seq {frame.first_seq}"
        records = codec.decode_frame(frame.body)
        assert len(records) == frame.last_seq - frame.first_seq + 1 == len(frame.lens)
        offset = len(frame.body) - sum(frame.lens)  # each record can be cut out on its own
        for record, length in zip(records, frame.lens, strict=True):
            assert codec.decode(frame.body[offset : offset + length]) == record
            offset += length
        found += records
        prev, seq = frame.hash, frame.last_seq
    assert found == list(expected)


# -- loading and appending ---------------------------------------------------------------------
async def test_load_on_an_empty_journal(harness: JournalHarness) -> None:
    journal = harness.reopen()
    assert replay(journal) == (0, None, [])
    assert (journal.last_seq, journal.durable_seq) == (0, 0)
    await journal.durable()  # nothing to wait for
    assert journal.flush_count == 0
    assert harness.seqs() == []


async def test_append_returns_contiguous_seqs_and_is_not_durable_until_flushed(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    records = mixed(0, 25)
    seqs = [journal.append(r) for r in records]
    assert seqs == list(range(1, 26))
    assert journal.last_seq == 25
    # append is synchronous and queues only: nothing has been written yet
    assert journal.durable_seq == 0 and harness.seqs() == []
    await journal.durable()
    assert journal.durable_seq == 25
    assert_valid_chain(harness.frames(), records)


async def test_durable_returns_only_once_the_record_is_stored(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    seen: list[tuple[int, int, bool]] = []

    async def append_then_wait(n: int) -> None:
        await asyncio.sleep(0.001 * (n % 3))  # spread appends over several flushes
        seq = journal.append(posted(n))
        await journal.durable(seq)
        seen.append((seq, journal.durable_seq, seq in harness.seqs()))

    await asyncio.gather(*(append_then_wait(n) for n in range(30)))
    assert len(seen) == 30
    for seq, durable_seq, is_stored in seen:
        assert durable_seq >= seq
        assert is_stored, f"durable({seq}) returned before an independent reader could see it"
    flushes = journal.flush_count
    await journal.durable(5)  # already durable: returns without another flush
    assert journal.flush_count == flushes


async def test_close_writes_what_is_still_queued(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    records = mixed(0, 7)
    for r in records:
        journal.append(r)
    await journal.close()
    assert_valid_chain(harness.frames(), records)
    assert replay(harness.reopen()) == (0, None, stored(1, records))


async def test_reopen_replays_exactly_the_appended_records_in_order(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    records = mixed(0, 40)
    for r in records:
        journal.append(r)
    await journal.durable()
    await journal.close()

    again = harness.reopen()
    assert replay(again) == (0, None, stored(1, records))
    assert (again.last_seq, again.durable_seq) == (40, 40)


async def test_appends_after_reopen_continue_the_sequence_and_the_chain(harness: JournalHarness) -> None:
    everything: list[Record] = []
    for restart in range(3):  # the first open, then two restarts
        journal = harness.reopen()
        assert replay(journal) == (0, None, stored(1, everything))
        batch = mixed(len(everything), 9 + restart)
        seqs = [journal.append(r) for r in batch]
        assert seqs == list(range(len(everything) + 1, len(everything) + len(batch) + 1))
        everything += batch
        await journal.durable()
        await journal.close()
    assert replay(harness.reopen()) == (0, None, stored(1, everything))
    assert_valid_chain(harness.frames(), everything)


async def test_concurrent_appenders_share_flushes(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    appenders = 2000

    async def append_and_wait(n: int) -> int:
        seq = journal.append(posted(n))
        await journal.durable(seq)
        assert journal.durable_seq >= seq
        return seq

    seqs = await asyncio.gather(*(append_and_wait(n) for n in range(appenders)))
    assert sorted(seqs) == list(range(1, appenders + 1))
    assert journal.flush_count < appenders / 10, f"{journal.flush_count} flushes for {appenders} records"
    await journal.close()
    records = replay(harness.reopen())[2]
    assert [s.seq for s in records] == list(range(1, appenders + 1))
    assert sorted(s.record.payment_id for s in records) == sorted(f"pay_{n}" for n in range(appenders))


async def test_a_flush_writes_at_most_batch_rows_max(harness: JournalHarness) -> None:
    journal = harness.reopen(batch_rows_max=64)
    replay(journal)
    records = [posted(n) for n in range(1000)]
    for r in records:
        journal.append(r)
    await journal.durable()
    assert journal.flush_count >= 1000 / 64  # 16 records or fewer in the last one
    assert all(f.last_seq - f.first_seq < 64 for f in harness.frames())
    assert_valid_chain(harness.frames(), records)


async def test_records_appended_together_share_one_frame(harness: JournalHarness) -> None:
    """A group (a transfer's legs and its decision) never straddles frames, so a crash
    keeps all of it or none, even where the group crosses the frame size."""
    journal = harness.reopen(batch_rows_max=8)
    replay(journal)
    records = [posted(n) for n in range(40)]
    groups = [(5, 12), (14, 15), (20, 37)]  # [first, last) indexes; one is longer than a frame
    at = 0
    for first, last in groups:
        for r in records[at:first]:
            journal.append(r)
        journal.append_together(records[first:last])
        at = last
    for r in records[at:]:
        journal.append(r)
    await journal.durable()
    frames = harness.frames()
    for first, last in groups:  # seqs are 1-based
        holding = [f for f in frames if f.first_seq <= last and first + 1 <= f.last_seq]
        assert len(holding) == 1, (first, last, [(f.first_seq, f.last_seq) for f in holding])
    assert max(f.last_seq - f.first_seq + 1 for f in frames) >= 17  # the long group went whole
    assert_valid_chain(frames, records)


def batch_of_posts(first_seq: int, ns: Sequence[int], balance_id: str = "bal_a") -> PostedBatch:
    """`posted(n)` for each n, as one record at `first_seq`."""
    items = [posted(n, balance_id) for n in ns]
    return PostedBatch(
        first_seq,
        items[0].at_ms,
        [p.payment_id for p in items],
        [p.balance_id for p in items],
        [p.delta_minor for p in items],
        [p.balance_after_minor for p in items],
    )


async def test_a_batch_takes_a_position_per_item_and_is_read_item_by_item(harness: JournalHarness) -> None:
    """A shard's posts of a batch are one record, each post a statement line at its own
    position: replay sees the record once; queries, from memory and stored, see the lines."""
    journal = harness.reopen(history_rows_per_write=10**6, history_write_after_s=3600)
    replay(journal)
    assert journal.append(posted(0)) == 1
    assert journal.next_seq == 2
    batch = batch_of_posts(2, [1, 2, 3])
    assert journal.append(batch) == 4  # the last position it takes
    with pytest.raises(AssertionError):  # a batch names its own position: it must be the next one
        journal.append(batch_of_posts(2, [9]))
    assert journal.append(posted(4, "bal_b")) == 5
    await journal.durable()

    async def statement() -> list[StoredRecord]:
        found = await journal.query("bal_a", "po")
        paged, before = [], None  # a page at a time, cut inside the batch
        while page := await journal.query("bal_a", "po", limit=2, before_seq=before):
            paged += page
            before = page[-1].seq
        assert paged == found
        return found

    expected = [*(StoredRecord(2 + n, batch.item(n)) for n in (2, 1, 0)), StoredRecord(1, posted(0))]
    assert [s.record.payment_id for s in expected] == ["pay_3", "pay_2", "pay_1", "pay_0"]
    assert await statement() == expected  # from memory
    await journal.close()
    journal = harness.reopen()
    assert replay(journal)[2] == [
        StoredRecord(1, posted(0)),
        StoredRecord(2, batch),
        StoredRecord(5, posted(4, "bal_b")),
    ]
    assert journal.last_seq == 5 and journal.next_seq == 6
    assert await statement() == expected  # stored on close
    await journal.close()
    harness.drop_history()
    journal = harness.reopen()
    replay(journal)
    assert await statement() == expected  # the index rebuilt from the frames


async def test_a_frame_holds_at_most_batch_rows_max_positions_or_one_larger_batch(harness: JournalHarness) -> None:
    journal = harness.reopen(batch_rows_max=8)
    replay(journal)
    records: list[Record] = []
    for n, size in enumerate([5, 5, 1, 20, 2, 3]):
        records.append(batch_of_posts(journal.next_seq, range(10 * n, 10 * n + size)))
        journal.append(records[-1])
    await journal.durable()
    frames = harness.frames()
    assert [(f.first_seq, f.last_seq) for f in frames] == [(1, 5), (6, 11), (12, 31), (32, 36)]
    codec = RecordCodec()
    assert [r for f in frames for r in codec.decode_frame(f.body)] == records


async def test_a_batch_of_decisions_is_each_payment_in_lookups_lists_and_events(harness: JournalHarness) -> None:
    """A coordinator's batch of payments is one record; each payment keeps its own position:
    found by id, balance and key, and an event of its own (with its own id), from memory and
    stored, and handed to webhook delivery as the `Decided` it stands for."""
    codec = RecordCodec()
    payments = [
        msgspec.structs.replace(decided("pay_1").payment, status="success", idempotency_key="admin:K"),
        msgspec.structs.replace(decided("pay_2", "bal_x").payment, status="not_enough_money"),
        msgspec.structs.replace(decided("pay_3").payment, status="success", refund_of="pay_0"),
    ]
    journal = harness.reopen(history_rows_per_write=10**6, history_write_after_s=3600)
    journal.event_source = "c00"
    replay(journal)
    journal.append(decided("pay_0"))
    assert journal.append(DecidedBatch(2, payments)) == 4
    await journal.durable()

    async def answers(journal: Journal) -> list[object]:
        by_id = [await journal.tagged("pay", limit=5, only_id=p.id) for p in payments]
        events = await journal.events(limit=10, ascending=True)
        encoded = await journal.events_after_encoded(0, 10)
        return [
            by_id,
            await journal.tagged("b:bal_x", limit=5),
            await journal.tagged("k:admin:K", limit=5),
            [(event_seq(some_id), event_of(record)) for some_id, record in events],
            [(seq, codec.decode(body)) for seq, body in encoded],
        ]

    expected = [
        [[StoredRecord(2 + n, Decided(p))] for n, p in enumerate(payments)],
        [StoredRecord(3, Decided(payments[1]))],
        [StoredRecord(2, Decided(payments[0]))],
        [
            (1, ("payment.failed", 1_701)),  # `decided` makes a status other than success
            (2, ("payment.succeeded", 1_701)),
            (3, ("payment.failed", 1_701)),
            (4, ("refund.succeeded", 1_701)),
        ],
        [(1, decided("pay_0")), *((2 + n, Decided(p)) for n, p in enumerate(payments))],
    ]
    assert await answers(journal) == expected  # from memory
    await journal.close()
    again = harness.reopen()
    again.event_source = "c00"
    replay(again)
    assert await answers(again) == expected  # stored


# -- history queries --------------------------------------------------------------------------
async def _history(harness: JournalHarness) -> tuple[Journal, list[int]]:
    """bal_a postings interleaved with other keys and kinds; returns bal_a's seqs."""
    journal = harness.reopen()
    replay(journal)
    seqs_a = []
    for n in range(12):
        seqs_a.append(journal.append(posted(n, "bal_a")))
        journal.append(posted(n, "bal_b"))
        journal.append(Fenced(coordinator=0, epoch=n))
    journal.append(decided("bal_a"))  # same key, other kind
    await journal.durable()
    return journal, seqs_a


async def test_query_returns_newest_first_and_honours_limit_and_before_seq(harness: JournalHarness) -> None:
    journal, seqs_a = await _history(harness)
    newest_first = sorted(seqs_a, reverse=True)

    found = await journal.query("bal_a", "po")
    assert [s.seq for s in found] == newest_first
    assert [s.record for s in found] == [posted(n, "bal_a") for n in reversed(range(12))]

    assert [s.seq for s in await journal.query("bal_a", "po", limit=3)] == newest_first[:3]
    assert await journal.query("bal_a", "po", limit=0) == []
    cut = newest_first[4]
    assert [s.seq for s in await journal.query("bal_a", "po", before_seq=cut)] == newest_first[5:]
    assert [s.seq for s in await journal.query("bal_a", "po", limit=2, before_seq=cut)] == newest_first[5:7]
    assert await journal.query("bal_a", "po", before_seq=min(seqs_a)) == []

    paged: list[int] = []  # paging with before_seq visits every entry once
    before: int | None = None
    while page := await journal.query("bal_a", "po", limit=5, before_seq=before):
        paged += [s.seq for s in page]
        before = page[-1].seq
    assert paged == newest_first


async def test_query_filters_by_key_and_kind(harness: JournalHarness) -> None:
    journal, _ = await _history(harness)
    assert [s.record for s in await journal.tagged("pay", limit=5, only_id="bal_a")] == [decided("bal_a")]
    assert len(await journal.query("bal_b", "po")) == 12
    assert await journal.query("bal_c", "po") == []
    assert await journal.query("bal_a", "fe") == []  # Fenced has no key


async def test_record_key_indexes_posted_by_balance_and_decided_by_payment(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    journal.append(Posted("pay_1", "bal_x", delta_minor=-5, balance_after_minor=95, at_ms=1))
    journal.append(decided("pay_1", balance_from="bal_x", balance_to="bal_y"))
    journal.append(Reserved("pay_2", "bal_x", amount_minor=5, coordinator=0, epoch=1))
    journal.append(EpochStarted(4))
    await journal.durable()

    assert [s.seq for s in await journal.query("bal_x", "po")] == [1]
    assert await journal.query("pay_1", "po") == []  # not by payment id
    assert [s.seq for s in await journal.tagged("pay", limit=5, only_id="pay_1")] == [2]
    assert await journal.tagged("pay", limit=5, only_id="bal_x") == []  # not by either balance
    assert await journal.tagged("pay", limit=5, only_id="pay_2") == []  # only decisions
    assert await journal.query("bal_x", "rs") == []  # unkeyed kinds are not indexed
    assert await journal.query("pay_2", "rs") == []


async def test_query_sees_only_durable_rows(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    await journal.durable(journal.append(posted(0)))  # the adapter is open and has written once

    pending = journal.append(posted(1))  # queued; its flush may finish while we query
    seen = [s.seq for s in await journal.query("bal_a", "po")]
    assert seen in ([1], [2, 1])  # row 2 only once committed: the reader sees no open transaction
    await journal.durable(pending)
    assert [s.seq for s in await journal.query("bal_a", "po")] == [2, 1]

    await harness.make_unwritable(journal)
    try:
        stuck = journal.append(posted(2))
        await eventually(lambda: not journal.writable, "a failed flush")
        assert [s.seq for s in await journal.query("bal_a", "po")] == [2, 1]
        assert journal.durable_seq < stuck
    finally:
        harness.make_writable()
    await asyncio.wait_for(journal.durable(stuck), WAIT_S_MAX)
    assert [s.seq for s in await journal.query("bal_a", "po")] == [3, 2, 1]


async def test_history_lost_or_behind_is_caught_up_from_the_frames(harness: JournalHarness) -> None:
    journal, seqs_a = await _history(harness)
    await journal.close()
    harness.drop_history()

    again = harness.reopen()
    replay(again)
    assert again.indexed_seq == 0 < again.durable_seq
    assert [s.seq for s in await again.query("bal_a", "po")] == sorted(seqs_a, reverse=True)
    assert again.indexed_seq == again.durable_seq
    later = again.append(posted(99, "bal_a"))  # live records are indexed after the caught-up ones
    await again.durable(later)
    assert [s.seq for s in await again.query("bal_a", "po", limit=2)] == [later, max(seqs_a)]


async def test_history_follows_every_durable_record_without_a_query(harness: JournalHarness) -> None:
    journal = harness.reopen(history_rows_per_write=1)
    replay(journal)
    for n in range(50):
        await journal.durable(journal.append(posted(n)))
        assert journal.indexed_seq == n + 1  # queryable as soon as durable (held in memory)
    await eventually(lambda: journal.index_stored_seq == 50, "the stored index reaches the last durable record")
    await journal.close()
    again = harness.reopen()
    replay(again)
    assert again.indexed_seq == 50  # a restart starts caught up


async def test_rows_held_in_memory_are_stored_once_they_have_waited(harness: JournalHarness) -> None:
    """Below a full batch, rows are stored after `history_write_after_s`, also when the
    frames before them had no index rows at all."""
    journal = harness.reopen(history_rows_per_write=10**6, history_write_after_s=0.05)
    replay(journal)
    await journal.durable(journal.append(Fenced(coordinator=0, epoch=1)))  # no index rows
    await journal.durable(journal.append(posted(1)))
    assert journal.index_stored_seq < journal.indexed_seq == 2
    await eventually(lambda: journal.index_stored_seq == 2, "the waiting row stored")
    assert [s.seq for s in await journal.query("bal_a", "po")] == [2]


def _statuses(n: int, prefix: str) -> Decided:
    """Payment n between bal_a/bal_b (alternating sides), one in three refused; ids are
    not in seq order, so ordering by id and by seq differ."""
    d = decided(f"{prefix}{n * 37 % 101:03d}", *(("bal_a", "bal_b") if n % 2 else ("bal_b", "bal_a")))
    return Decided(msgspec.structs.replace(d.payment, status="success" if n % 3 else "not_enough_money"))


async def _every_answer(journal: Journal, prefix: str) -> list[list[int]]:
    """Each kind of history query, paged with small pages so pages cross from rows held
    in memory to stored ones: by seq with a seq or an id cursor, by id, with a second tag."""
    answers: list[list[int]] = []

    async def pages(fetch: Callable[[StoredRecord | None], object]) -> None:
        last: StoredRecord | None = None
        for _ in range(100):  # a cursor that does not move would page forever
            page = await fetch(last)
            if not page:
                return
            answers.append([s.seq for s in page])  # type: ignore[attr-defined]
            last = page[-1]  # type: ignore[index]
        raise AssertionError("paging never ended")

    def payment_id(s: StoredRecord) -> str:
        return s.record.payment_id if isinstance(s.record, Posted) else s.record.payment.id  # type: ignore[union-attr]

    for balance in ("bal_a", "bal_b"):
        await pages(lambda last, b=balance: journal.query(b, "po", limit=4, before_seq=last and last.seq))
        await pages(
            lambda last, b=balance: journal.tagged(f"po:{b}", limit=3, by_seq=True, before_id=last and payment_id(last))
        )
        await pages(
            lambda last, b=balance: journal.tagged(
                f"b:{b}", limit=5, also_tag="s:success", before_id=last and payment_id(last)
            )
        )
    for tag in ("pay", "s:not_enough_money"):
        await pages(lambda last, t=tag: journal.tagged(t, limit=6, before_id=last and payment_id(last)))
    # by seq both ways over a tag with several records per frame (as events are paged)
    await pages(lambda last: journal.tagged("pay", limit=3, by_seq=True, before_seq=last and last.seq))
    await pages(
        lambda last: journal.tagged("pay", limit=3, by_seq=True, after_seq=last.seq if last else 0, ascending=True)
    )
    for n in (10, 45):  # stored, held in memory
        answers.append([s.seq for s in await journal.tagged("pay", limit=5, only_id=f"{prefix}{n * 37 % 101:03d}")])
    return answers


@pytest.mark.parametrize(
    "prefix", ["pay_", "pay_0000000", "pay_000000000"], ids=["own-buckets", "buckets-interleaved", "one-bucket"]
)
async def test_queries_answer_the_same_from_memory_and_from_the_stored_index(
    harness: JournalHarness, prefix: str
) -> None:
    """Rows wait in memory until a batch is stored; a query must not tell the difference.
    The stored index groups a frame's records by tag and by the start of their ids: with
    short ids each is alone in its bucket; two characters short of a bucket, a frame holds
    several buckets of a tag; with a long shared start all share one, where a page by id
    sorts records of many frames."""
    journal = harness.reopen(history_rows_per_write=1, history_write_after_s=3600)
    replay(journal)
    for n in range(60):
        if n == 30:  # the first half stored, the second held in memory
            await eventually(lambda: journal.index_stored_seq == journal.durable_seq, "the first half stored")
            journal.history_rows_per_write = 10**6
        journal.append(posted(n * 53 % 61, "bal_a" if n % 2 else "bal_b", prefix))
        journal.append(_statuses(n, prefix))
        if n % 4 == 3:
            await journal.durable()
    await journal.durable()
    assert 0 < journal.index_stored_seq < journal.indexed_seq == journal.durable_seq
    mixed_answers = await _every_answer(journal, prefix)
    assert len(mixed_answers) > 20 and all(mixed_answers)
    await journal.close()

    again = harness.reopen()
    replay(again)
    assert again.index_stored_seq == again.durable_seq  # everything stored on close
    assert await _every_answer(again, prefix) == mixed_answers


async def test_a_frame_whose_ids_alternate_buckets_pages_by_seq_in_seq_order(harness: JournalHarness) -> None:
    """One frame, records of one tag whose ids fall in buckets A, B, A (ids are made before
    records are journaled, so a busy frame crosses a bucket's edge back and forth): held
    in memory and stored, a page by seq goes 1, 2, 3 and a page by id in id order."""
    journal = harness.reopen(history_rows_per_write=10**6, history_write_after_s=3600)
    replay(journal)
    ids = ["pay_000000001x", "pay_000000002y", "pay_000000001z"]  # 13-character buckets: A, B, A
    await journal.durable(journal.append_together([decided(i) for i in ids]))

    async def answers(j: Journal) -> list[list[int]]:
        return [
            [s.seq for s in await j.tagged("pay", limit=1, by_seq=True, after_seq=1, ascending=True)],
            [s.seq for s in await j.tagged("pay", limit=1, by_seq=True, before_seq=3)],
            [s.seq for s in await j.tagged("pay", limit=3, by_seq=True)],
            [s.seq for s in await j.tagged("pay", limit=3, by_seq=True, ascending=True)],
            [s.seq for s in await j.tagged("pay", limit=3)],
        ]

    expected = [[2], [2], [3, 2, 1], [1, 2, 3], [2, 3, 1]]
    assert journal.index_stored_seq == 0 and await answers(journal) == expected  # held in memory
    await journal.close()
    again = harness.reopen()
    replay(again)
    assert again.index_stored_seq == again.durable_seq and await answers(again) == expected  # stored


async def test_any_key_is_found_again_once_its_rows_are_stored(harness: JournalHarness) -> None:
    """An Idempotency-Key may hold any text (quotes, backslashes, control characters,
    non-Latin letters, emoji): stored in the index, it finds its payment as it did held."""
    keys = ['say "hi"', "back\\slash", "tab\tnew\nline", "ключ-платежа", "支付", "💸 refund", "a" * 255]
    journal = harness.reopen(history_rows_per_write=1)
    replay(journal)
    for n, key in enumerate(keys):
        journal.append(Decided(msgspec.structs.replace(decided(f"pay_{n:03d}").payment, idempotency_key=key)))
    await journal.durable()
    await eventually(lambda: journal.index_stored_seq == journal.durable_seq, "every row stored")
    await journal.close()
    again = harness.reopen()
    replay(again)
    for n, key in enumerate(keys):
        [found] = await again.tagged(f"k:{key}", limit=2)
        assert isinstance(found.record, Decided) and found.record.payment.id == f"pay_{n:03d}", key


# -- snapshots ----------------------------------------------------------------------------------
async def test_snapshot_bounds_replay_and_the_chain_continues_across_it(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    before = mixed(0, 10)
    for r in before:
        journal.append(r)
    assert await journal.save_snapshot(b"state@10") == 10
    await journal.close()

    again = harness.reopen()
    assert replay(again) == (10, b"state@10", [])
    assert (again.last_seq, again.durable_seq) == (10, 10)
    after = mixed(10, 5)
    assert [again.append(r) for r in after] == [11, 12, 13, 14, 15]
    await again.close()

    third = harness.reopen()
    assert replay(third) == (10, b"state@10", stored(11, after))
    assert_valid_chain(harness.frames(), before + after)  # the hash kept at the snapshot was the real one
    # history on both sides of the snapshot stays queryable (mixed() posts to bal_0 at n=0 and n=12)
    assert [s.seq for s in await third.query("bal_0", "po")] == [13, 1]


async def test_snapshot_captures_the_position_at_the_call(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    for r in mixed(0, 6):
        journal.append(r)
    write = journal.save_snapshot(b"state@6")  # state and position taken together, written later
    later = mixed(6, 3)
    for r in later:
        journal.append(r)
    assert await write == 6
    await journal.close()
    assert replay(harness.reopen()) == (6, b"state@6", stored(7, later))


async def test_the_latest_snapshot_wins(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    records = mixed(0, 12)
    for r in records[:4]:
        journal.append(r)
    assert await journal.save_snapshot(b"first") == 4
    for r in records[4:9]:
        journal.append(r)
    assert await journal.save_snapshot(b"second") == 9
    for r in records[9:]:
        journal.append(r)
    await journal.close()
    assert replay(harness.reopen()) == (9, b"second", stored(10, records[9:]))


# -- tampering ----------------------------------------------------------------------------------
async def _ten_records(harness: JournalHarness) -> list[Record]:
    journal = harness.reopen()
    replay(journal)
    records = mixed(0, 10)
    for r in records:
        await journal.durable(journal.append(r))  # a frame each
    await journal.close()
    return records


async def _snapshot_at_five(harness: JournalHarness) -> Journal:
    """A fresh journal holding five records and a snapshot taken at seq 5, left open."""
    journal = harness.reopen()
    replay(journal)
    for r in mixed(0, 5):
        journal.append(r)
    await journal.save_snapshot(b"state@5")
    return journal


def _replay_until_corrupt(harness: JournalHarness, match: str) -> list[StoredRecord]:
    seen: list[StoredRecord] = []
    with pytest.raises(JournalCorrupt, match=match):
        for item in harness.reopen().load().records:
            seen.append(item)
    return seen


async def test_a_flipped_body_byte_is_detected(harness: JournalHarness) -> None:
    records = await _ten_records(harness)
    frame = harness.frames()[4]
    harness.rewrite(5, body=frame.body[:-1] + bytes([frame.body[-1] ^ 0x01]))
    assert _replay_until_corrupt(harness, "hash chain broken at seq 5") == stored(1, records[:4])


async def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(harness: JournalHarness) -> None:
    records = await _ten_records(harness)
    frames = harness.frames()
    forged, lens = RecordCodec().encode_frame([Completed("pay_forged")])
    harness.rewrite(5, body=forged, hash_=chain_hash(frames[3].hash, 5, 5, forged, tuple(lens)), lens=tuple(lens))
    seen = _replay_until_corrupt(harness, "hash chain broken at seq 6")
    assert seen == [*stored(1, records[:4]), StoredRecord(5, Completed("pay_forged"))]


async def test_swapped_rows_are_detected(harness: JournalHarness) -> None:
    await _ten_records(harness)
    frames = harness.frames()
    harness.rewrite(3, body=frames[3].body, hash_=frames[3].hash, lens=frames[3].lens)
    harness.rewrite(4, body=frames[2].body, hash_=frames[2].hash, lens=frames[2].lens)
    assert len(_replay_until_corrupt(harness, "hash chain broken at seq 3")) == 2


async def test_a_deleted_middle_row_is_a_sequence_gap(harness: JournalHarness) -> None:
    records = await _ten_records(harness)
    harness.delete(6)
    assert _replay_until_corrupt(harness, "sequence gap: expected 6, found 7") == stored(1, records[:5])


async def test_a_tampered_row_after_a_snapshot_is_detected(harness: JournalHarness) -> None:
    journal = await _snapshot_at_five(harness)
    for r in mixed(5, 4):
        await journal.durable(journal.append(r))  # a frame each
    await journal.close()
    frame = next(f for f in harness.frames() if f.first_seq == 7)
    harness.rewrite(7, body=frame.body[:-1] + bytes([frame.body[-1] ^ 0x10]))
    assert [s.seq for s in _replay_until_corrupt(harness, "hash chain broken at seq 7")] == [6]


async def test_changed_record_lengths_break_the_chain(harness: JournalHarness) -> None:
    """The lengths say where each record starts (history queries cut records out by them)."""
    journal = harness.reopen()
    replay(journal)
    for r in mixed(0, 2):  # a posting and a decision: two different lengths
        journal.append(r)
    await journal.durable()
    for r in mixed(2, 2):
        journal.append(r)
    await journal.close()
    frame = harness.frames()[0]
    assert frame.lens[0] != frame.lens[1]
    harness.rewrite(1, body=frame.body, lens=tuple(reversed(frame.lens)))
    assert _replay_until_corrupt(harness, "hash chain broken at seq 1") == []


async def test_a_snapshot_whose_hash_is_not_the_chains_is_detected(harness: JournalHarness) -> None:
    journal = await _snapshot_at_five(harness)
    journal.append(posted(6))
    await journal.close()
    harness.forge_snapshot_hash()
    with pytest.raises(JournalCorrupt, match="the snapshot at seq 5 does not match the chain"):
        replay(harness.reopen())
    with pytest.raises(JournalCorrupt, match="the snapshot at seq 5 does not match the chain"):
        list(harness.reopen().load(from_genesis=True).records)


async def test_nothing_is_appended_before_every_stored_record_is_read(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    for r in mixed(0, 3):
        await journal.durable(journal.append(r))
    await journal.close()
    again = harness.reopen()
    records = again.load().records
    next(records)  # seq 1 of 3 read: seq 2 is not free
    with pytest.raises(AssertionError, match="before every stored record was loaded"):
        again.append(posted(9))
    assert [s.seq for s in records] == [2, 3]
    assert again.append(posted(9)) == 4


# -- an unwritable disk ---------------------------------------------------------------------------
async def test_unwritable_storage_holds_acks_until_it_recovers(harness: JournalHarness) -> None:
    journal = harness.reopen()
    replay(journal)
    records = mixed(0, 12)
    await journal.durable(journal.append(records[0]))
    assert journal.writable

    await harness.make_unwritable(journal)
    try:
        for r in records[1:8]:
            journal.append(r)
        waiting = asyncio.ensure_future(journal.durable(8))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiting), 0.2)
        await eventually(lambda: not journal.writable, "writable turns False")
        # what was already started must still be recorded once the disk is back
        for r in records[8:]:
            journal.append(r)
        assert not waiting.done()
        assert journal.durable_seq == 1
        assert harness.seqs() == [1]
    finally:
        harness.make_writable()

    await asyncio.wait_for(waiting, WAIT_S_MAX)
    assert journal.durable_seq >= 8
    await journal.durable()
    assert journal.writable
    assert_valid_chain(harness.frames(), records)  # each record stored exactly once, in order
    await journal.close()
    assert replay(harness.reopen()) == (0, None, stored(1, records))


# -- SQLite adapter specifics (outside the contract) ------------------------------------------------
# A dropped connection's __del__ would warn; were that an error, __del__ would stop before ending
# the connection's non-daemon worker thread and the test process would never exit.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("first_use", ["two queries", "a query and the first flush"])
async def test_sqlite_concurrent_first_use_opens_one_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_use: str
) -> None:
    opened: list[object] = []
    real_connect = aiosqlite.connect

    def counting_connect(*args: object, **kwargs: object) -> aiosqlite.Connection:
        opened.append(args[0])
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiosqlite, "connect", counting_connect)
    journal = SqliteJournal(tmp_path / "j.sqlite")
    replay(journal)
    if first_use == "two queries":  # e.g. two statement requests right after a restart
        await asyncio.gather(journal.query("bal_a", "po"), journal.query("bal_b", "po"))
    else:
        await asyncio.gather(journal.query("bal_a", "po"), journal.durable(journal.append(posted(1))))
    await journal.close()
    # One reader for the queries, never a spare one (writes use the writer thread's own).
    assert len(opened) == 1, f"{len(opened)} reader connections opened"


async def test_sqlite_refuses_a_journal_in_the_old_format(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, kind TEXT, key TEXT, body BLOB, hash BLOB)")
    with pytest.raises(JournalFormatError, match="journal format 1"):
        SqliteJournal(path).load()


async def test_sqlite_history_stored_by_the_indexer_process_and_by_the_owner_if_it_dies(tmp_path: Path) -> None:
    """With `history_elsewhere` the owner never stores the index while it holds little: the
    indexer process does, and the owner forgets what it stored. Killed, the process stores
    nothing more; the owner, closing, stores what it holds, and nothing is lost."""
    journal = SqliteJournal(tmp_path / "j.sqlite", history_elsewhere=True, history_rows_per_write=1)
    journal.event_source = "c00"
    replay(journal)
    for n in range(20):
        journal.append(_statuses(n, "pay_"))
    await journal.durable()
    await eventually(lambda: journal.file._indexer is not None, "the indexer process started")
    await eventually(
        lambda: journal.index_stored_seq == journal.durable_seq == 20 and not journal._recent.rows,
        "the indexer process stored every row and the owner forgot them",
    )
    first = await _every_answer(journal, "pay_")
    indexer = journal.file._indexer
    assert indexer is not None and indexer.poll() is None
    indexer.kill()
    indexer.wait()
    for n in range(20, 40):
        journal.append(_statuses(n, "pay_"))
    await journal.durable()
    assert journal.index_stored_seq == 20 and journal.indexed_seq == 40  # the rest held in memory
    answers = await _every_answer(journal, "pay_")
    assert answers != first and len(answers) > 10
    await journal.close()
    again = SqliteJournal(tmp_path / "j.sqlite")
    again.event_source = "c00"
    replay(again)
    assert again.index_stored_seq == again.durable_seq == 40  # the owner stored them on close
    assert await _every_answer(again, "pay_") == answers
    await again.close()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_sqlite_history_that_cannot_be_written_is_served_from_memory_then_fails_queries(
    tmp_path: Path,
) -> None:
    """While the stored index cannot be written, its rows wait in memory and queries see
    them; once memory holds its bound, a query fails (503) instead of hanging."""
    journal = SqliteJournal(tmp_path / "j.sqlite", busy_timeout_ms=20, history_rows_in_memory_max=2)
    replay(journal)
    await journal.durable(journal.append(posted(1)))
    assert [s.seq for s in await journal.query("bal_a", "po")] == [1]
    blocker = sqlite3.connect(f"{journal.path}-history", timeout=1.0, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        await journal.durable(journal.append(posted(2)))  # the journal itself is fine
        assert [s.seq for s in await journal.query("bal_a", "po")] == [2, 1]
        await journal.durable(journal.append(posted(3)))  # past the bound
        with pytest.raises(JournalUnavailable, match="history index"):
            await asyncio.wait_for(journal.query("bal_a", "po"), WAIT_S_MAX)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    found = await asyncio.wait_for(journal.query("bal_a", "po"), WAIT_S_MAX)  # retried once it can
    assert [s.seq for s in found] == [3, 2, 1]
    await journal.close()


async def test_sqlite_history_ahead_of_its_journal_is_rebuilt(tmp_path: Path) -> None:
    """A journal restored from an older copy next to a newer index: the index would point at
    records the journal no longer has, and new records would reuse their seqs."""
    path = tmp_path / "j.sqlite"
    journal = SqliteJournal(path)
    replay(journal)
    await journal.durable(journal.append(posted(1)))
    await journal.close()
    older = tmp_path / "older.sqlite"
    shutil.copyfile(path, older)
    journal = SqliteJournal(path)
    replay(journal)
    await journal.durable(journal.append(posted(2)))
    await journal.close()
    shutil.copyfile(older, path)  # the journal goes back to one record; its index stays at two

    restored = SqliteJournal(path)
    replay(restored)
    assert restored.indexed_seq == 0
    await restored.durable(restored.append(posted(3, "bal_b")))
    assert [s.record for s in await restored.query("bal_a", "po")] == [posted(1)]
    assert [s.record for s in await restored.query("bal_b", "po")] == [posted(3, "bal_b")]
    await restored.close()


async def _rebuilt_after(tmp_path: Path, tamper: Callable[[sqlite3.Connection], object]) -> Path:
    """A journal of one record whose history file `tamper` changes while it is closed:
    opened again, its index starts over from the journal and finds the record. Returns
    the history file's path."""
    path = tmp_path / "j.sqlite"
    journal = SqliteJournal(path)
    replay(journal)
    await journal.durable(journal.append(posted(1)))
    await journal.indexed()
    history = journal.file.history_path
    await journal.close()
    with sqlite3.connect(history) as conn:
        tamper(conn)
    conn.close()
    reopened = SqliteJournal(path)
    replay(reopened)
    assert reopened.indexed_seq == 0, "the index starts again from the journal"
    assert [s.record for s in await reopened.query("bal_a", "po")] == [posted(1)]
    await reopened.close()
    return history


@pytest.mark.parametrize("prefix", ["pay_", "pay_000000000"], ids=["own-buckets", "one-bucket"])
async def test_sqlite_history_stored_as_one_run_in_small_chunks_answers_as_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    """Everything a journal holds goes into one run on close, each tag's bucket cut into rows
    of two entries: pages that start, end and filter inside a run and inside a chunk answer
    as they did from memory."""
    monkeypatch.setattr(journal_sqlite, "RUN_CHUNK", 2)
    path = tmp_path / "j.sqlite"
    held = SqliteJournal(path, history_rows_per_write=10**6, history_write_after_s=3600)
    replay(held)
    for n in range(40):
        held.append(posted(n * 53 % 61, "bal_a" if n % 2 else "bal_b", prefix))
        held.append(_statuses(n, prefix))
        if n % 4 == 3:
            await held.durable()
    await held.durable()
    assert held.index_stored_seq == 0
    answers = await _every_answer(held, prefix)
    await held.close()
    with contextlib.closing(sqlite3.connect(held.file.history_path)) as db:
        runs, rows, buckets = db.execute(
            "SELECT COUNT(DISTINCT run), COUNT(*), COUNT(DISTINCT tag || ' ' || bucket) FROM tag_runs"
        ).fetchone()
    assert runs == 1  # one store
    assert rows > buckets if prefix == "pay_000000000" else rows == buckets  # shared buckets: cut in chunks

    stored = SqliteJournal(path)
    replay(stored)
    assert stored.index_stored_seq == stored.durable_seq
    assert await _every_answer(stored, prefix) == answers
    await stored.close()


def test_sqlite_history_cuts_records_by_key_never_by_walking_the_journal(tmp_path: Path) -> None:
    """The statements that read a query's records take its list first and find each frame
    (and each second-tag row) by key: walking every frame of a journal for each page made
    pages slower as the journal grew."""
    db = sqlite3.connect(tmp_path / "plan.sqlite")
    db.executescript(journal_sqlite.SCHEMA)
    db.execute("ATTACH DATABASE ? AS hist", (str(tmp_path / "plan.sqlite-history"),))
    db.executescript(journal_sqlite.HISTORY_SCHEMA.replace("IF NOT EXISTS ", "IF NOT EXISTS hist."))
    cut = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + journal_sqlite.CUT_RECORDS, ("[[1, 0, 1]]", 0))]
    also = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + journal_sqlite.ALSO_RUNS, ('[["b", 1]]', 0, "t"))]
    db.close()
    assert cut[0].startswith("SCAN j") and "first_seq=?" in cut[1], cut
    assert also[0].startswith("SCAN j") and "run=?" in also[1], also


async def test_sqlite_history_tagged_by_another_version_is_rebuilt(tmp_path: Path) -> None:
    """An index made before `record_tags` changed lacks the new tags: it is rebuilt from the
    journal, so lists over new tags see old records too."""

    def as_version_1(conn: sqlite3.Connection) -> None:  # its rows under an old tag
        conn.execute("UPDATE tag_runs SET tag = 'old:' || tag")
        conn.execute("DELETE FROM tagging")
        conn.execute("INSERT INTO tagging VALUES (1)")

    history = await _rebuilt_after(tmp_path, as_version_1)
    with sqlite3.connect(history) as conn:
        assert conn.execute("SELECT version FROM tagging").fetchall() == [(RECORD_TAGS_VERSION,)]
        assert conn.execute("SELECT COUNT(*) FROM tag_runs WHERE tag LIKE 'old:%'").fetchone() == (0,)
    conn.close()


@pytest.mark.parametrize(
    ("layout", "stamped"),
    [("rows", True), ("rows", False), ("groups", True)],
    ids=["rows-stamped", "rows-before-stamps", "groups-per-frame"],
)
async def test_sqlite_history_of_an_older_layout_is_rebuilt_as_runs(tmp_path: Path, layout: str, stamped: bool) -> None:
    """An index from before runs (a `history` table, a row per record and tag, the oldest
    without a `tagging` stamp; or `tag_groups`, a row per frame and tag) is dropped and
    made again from the journal."""

    def as_older(conn: sqlite3.Connection) -> None:
        conn.execute("DROP TABLE tag_runs")
        conn.execute("DROP TABLE key_entries")
        if layout == "rows":
            conn.execute("CREATE TABLE history (part, tag, id, seq, frame, offset, length)")
            conn.execute("INSERT INTO history VALUES (0, 'po:bal_a', 'pay_1', 1, 1, 1, 10)")
        else:
            conn.execute("CREATE TABLE tag_groups (part, tag, bucket, frame, entries)")
            conn.execute("""INSERT INTO tag_groups VALUES (0, 'po:bal_a', 'pay_1', 1, '[["pay_1",1,1,10]]')""")
        if not stamped:
            conn.execute("DROP TABLE tagging")

    history = await _rebuilt_after(tmp_path, as_older)
    with sqlite3.connect(history) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not tables & {"history", "tag_groups"} and {"tag_runs", "key_entries"} <= tables
        assert conn.execute("SELECT version FROM tagging").fetchall() == [(RECORD_TAGS_VERSION,)]
    conn.close()
