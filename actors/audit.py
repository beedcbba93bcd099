"""`rayledger verify`: an offline audit of every journal in a data directory.

Checks, naming each violation it finds:
  - hash chains intact and sequences contiguous (replayed from the first record);
  - replay from genesis reproduces the state that snapshot + tail recovery builds;
  - per currency, the sum of all balances (issuers included) is 0;
  - no limited balance below its overdraft limit;
  - every decided payment is fully posted (success) or released, and every open
    reservation belongs to an open hold (nothing is held without a coordinator record);
  - every successful payment is posted on both of its balances (an exchange payment on
    all four, the FX liquidity balances included);
  - every transfer's legs are decided with it, with its status (all moved or none);
  - refunds of a payment add up to no more than it;
  - an idempotency key names one payment or hold within the window.
Run it on a stopped ledger (or a copy): a ledger killed mid-payment holds reservations
that its next start aborts, and the audit reports them until then.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec

from journal import Journal, JournalCorrupt, SqliteJournal, StoredRecord
from ledger.book import BalanceBook, BookSnapshot
from ledger.records import (
    Decided,
    DecidedBatch,
    HoldClosed,
    HoldPlaced,
    Posted,
    PostedBatch,
    TransferDecided,
    payment_balances,
    width,
)
from ledger.results import PaymentStatus

Progress = Callable[[int], None]


class Report(msgspec.Struct):
    journals: int = 0
    records: int = 0
    balances: int = 0
    payments: int = 0
    transfers: int = 0
    open_holds: int = 0
    open_legs: int = 0
    totals: dict[str, int] = msgspec.field(default_factory=dict)
    violations: list[str] = msgspec.field(default_factory=list)


class JournalRef(NamedTuple):
    """One journal: a file, and the journal's part in it (a shard file holds one per
    partition)."""

    path: Path
    part: int = 0

    @property
    def name(self) -> str:
        return f"{self.path.name}#{self.part}" if self.path.parent.name == "shards" else self.path.name


def _parts(path: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [int(p) for (p,) in conn.execute("SELECT DISTINCT part FROM frames ORDER BY part")]


def journal_files(data_dir: Path) -> list[JournalRef]:
    shards = sorted((data_dir / "shards").glob("s-*.sqlite"))
    return [
        *([JournalRef(data_dir / "registry.sqlite")] if (data_dir / "registry.sqlite").exists() else []),
        *(JournalRef(path, part) for path in shards for part in _parts(path)),
        *(JournalRef(path) for path in sorted((data_dir / "coordinators").glob("c-*.sqlite"))),
    ]


def count_records(ref: JournalRef) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{ref.path}?mode=ro", uri=True)) as conn:
        found = conn.execute("SELECT COALESCE(MAX(last_seq), 0) FROM frames WHERE part = ?", (ref.part,))
        return int(found.fetchone()[0])


class Source(NamedTuple):
    """A journal to audit, wherever it is stored: `kind` is "shard" (a partition),
    "coordinator" or "registry"; `open` gives the journal, `snapshot` its latest one."""

    name: str
    kind: str
    open: Callable[[], Journal]
    snapshot: Callable[[], tuple[int, BookSnapshot | None]]


def _source(ref: JournalRef) -> Source:
    kind = {"shards": "shard", "coordinators": "coordinator"}.get(ref.path.parent.name, "registry")
    return Source(ref.name, kind, lambda: SqliteJournal(ref.path, part=ref.part), lambda: _snapshot_of(ref))


def _replay(source: Source, report: Report, advance: Progress) -> Iterator[StoredRecord]:
    """Every record from genesis; a broken chain becomes a violation, not a crash."""
    report.journals += 1
    try:
        for stored in source.open().load(from_genesis=True).records:
            report.records += 1
            advance(1)
            yield stored
    except JournalCorrupt as exc:
        report.violations.append(f"{source.name}: {exc}")


def canonical(snap: BookSnapshot) -> tuple[object, ...]:
    """A book's state, comparable whatever order its parts were built in."""
    return (sorted(snap.balances), sorted(snap.reservations), sorted(snap.fences.items()))


def verify(data_dir: Path, advance: Progress = lambda n: None, idempotency_window_s: int = 86_400) -> Report:
    files = journal_files(data_dir)
    if not files:
        return Report(violations=[f"no journals in {data_dir}"])
    report = Report()
    partition_files: dict[int, list[str]] = defaultdict(list)
    for ref in (r for r in files if r.path.parent.name == "shards"):
        partition_files[ref.part].append(ref.path.name)
    for part, names in sorted(partition_files.items()):
        if len(names) > 1:  # a hand-off stopped between its copy and its delete
            report.violations.append(
                f"partition {part} is stored in {', '.join(names)}: start the ledger once to finish its hand-off"
            )
    return verify_journals([_source(ref) for ref in files], advance, idempotency_window_s, report)


def verify_journals(
    sources: list[Source],
    advance: Progress = lambda n: None,
    idempotency_window_s: int = 86_400,
    report: Report | None = None,
) -> Report:
    """The audit of these journals (SQLite files, or the simulator's memory journals)."""
    report = report if report is not None else Report()
    posted: set[tuple[str, str]] = set()
    open_holds: dict[tuple[str, str], str] = {}  # (hold id, balance) -> partition journal
    totals: dict[str, int] = defaultdict(int)
    for ref in (s for s in sources if s.kind == "shard"):
        book = BalanceBook()
        snapshot_seq, snapshot = ref.snapshot()
        try:
            for stored in _replay(ref, report, advance):
                book.apply(stored.record)
                if isinstance(stored.record, Posted):
                    posted.add((stored.record.payment_id, stored.record.balance_id))
                elif isinstance(stored.record, PostedBatch):
                    posted.update(zip(stored.record.payment_ids, stored.record.balance_ids, strict=True))
                if stored.seq + width(stored.record) - 1 == snapshot_seq and snapshot is not None:
                    if canonical(book.snapshot()) != canonical(snapshot):
                        report.violations.append(f"{ref.name}: snapshot at seq {snapshot_seq} differs from replay")
        except AssertionError as exc:
            report.violations.append(f"{ref.name}: replay broke an invariant: {exc}")
            continue
        for balance_id, b in book.balances.items():
            report.balances += 1
            totals[b.currency] += b.amount
            if not b.unlimited and b.amount < -b.overdraft_limit:
                report.violations.append(f"{balance_id}: {b.amount} is below its limit -{b.overdraft_limit}")
        for hold in book.open_reservations():
            open_holds[(hold.payment_id, hold.balance_id)] = ref.name

    decided: dict[str, Decided] = {}
    transfers: dict[str, TransferDecided] = {}
    holds: dict[str, str] = {}  # hold id -> status
    keys: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for ref in (s for s in sources if s.kind == "coordinator"):
        for stored in _replay(ref, report, advance):
            r = stored.record
            for p in r.payments if isinstance(r, DecidedBatch) else [r.payment] if isinstance(r, Decided) else []:
                decided[p.id] = Decided(p)
                if p.idempotency_key is not None:
                    keys[p.idempotency_key].append((p.created_at_ms, p.id))
            if isinstance(r, TransferDecided):
                transfers[r.transfer.id] = r
                if r.transfer.idempotency_key is not None:
                    keys[r.transfer.idempotency_key].append((r.transfer.created_at_ms, r.transfer.id))
            elif isinstance(r, HoldPlaced | HoldClosed):
                holds[r.hold.id] = r.hold.status
                if isinstance(r, HoldPlaced) and r.hold.idempotency_key is not None:
                    keys[r.hold.idempotency_key].append((r.hold.created_at_ms, r.hold.id))
    for ref in (s for s in sources if s.kind == "registry"):
        for _ in _replay(ref, report, advance):
            pass

    report.payments = len(decided)
    report.transfers = len(transfers)
    _check_transfers(transfers, decided, report)
    # As the holds API counts them: authorization holds still held (each reserves on its
    # source and prepares on its destination: two open legs).
    report.open_holds = sum(1 for status in holds.values() if status == "held")
    report.open_legs = len(open_holds)
    report.totals = dict(totals)
    for currency, total in sorted(totals.items()):
        if total != 0:
            report.violations.append(f"{currency}: balances sum to {total}, not 0 (money created or lost)")
    for (hold_id, balance_id), journal in sorted(open_holds.items()):
        if holds.get(hold_id) == "held":
            continue
        if hold_id in decided or hold_id in holds:
            report.violations.append(f"{hold_id} is decided but still holds money on {balance_id} ({journal})")
        else:
            report.violations.append(f"{hold_id} holds money on {balance_id} without a coordinator decision")
    refunded: dict[str, int] = defaultdict(int)
    for d in decided.values():
        if d.payment.refund_of is not None and d.payment.status == PaymentStatus.SUCCESS:
            refunded[d.payment.refund_of] += d.payment.amount_minor
    for original_id, amount in sorted(refunded.items()):
        original = decided.get(original_id)
        if original is None or original.payment.status != PaymentStatus.SUCCESS:
            report.violations.append(f"{original_id} was refunded but did not succeed")
        elif amount > original.payment.amount_minor:
            report.violations.append(f"{original_id}: refunds of {amount} exceed its {original.payment.amount_minor}")
    for payment_id, d in decided.items():
        p = d.payment
        if p.status == PaymentStatus.SUCCESS:
            for balance_id in payment_balances(p):  # an exchange payment's liquidity sides too
                if (payment_id, balance_id) not in posted:
                    report.violations.append(f"{payment_id} succeeded but was never posted on {balance_id}")
    window_ms = idempotency_window_s * 1000
    for key, uses in keys.items():
        uses.sort()
        for (t1, id1), (t2, id2) in itertools.pairwise(uses):
            if t2 - t1 < window_ms:
                report.violations.append(f"idempotency key {key!r} names both {id1} and {id2}")
    return report


def _snapshot_of(ref: JournalRef) -> tuple[int, BookSnapshot | None]:
    with contextlib.closing(sqlite3.connect(f"file:{ref.path}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT seq, body FROM snapshots WHERE part = ? ORDER BY seq DESC LIMIT 1", (ref.part,)
        ).fetchone()
    if row is None:
        return 0, None
    return int(row[0]), msgspec.msgpack.decode(row[1], type=BookSnapshot)


def _check_transfers(transfers: dict[str, TransferDecided], decided: dict[str, Decided], report: Report) -> None:
    """A transfer's legs are decided in its frame, each with its status: posted all (the
    posting check above sees each leg) or voided all."""
    legs_of: dict[str, set[str]] = defaultdict(set)
    for payment_id, d in decided.items():
        if d.payment.transfer_id is not None:
            legs_of[d.payment.transfer_id].add(payment_id)
    for transfer_id, t in sorted(transfers.items()):
        expected = {leg.payment_id for leg in t.transfer.legs}
        if legs_of.get(transfer_id, set()) != expected:
            report.violations.append(f"{transfer_id}: its legs' decisions are not exactly its legs")
        for leg in t.transfer.legs:
            leg_decided = decided.get(leg.payment_id)
            if leg_decided is not None and leg_decided.payment.status != t.transfer.status:
                report.violations.append(
                    f"{transfer_id}: leg {leg.payment_id} is {leg_decided.payment.status}, not {t.transfer.status}"
                )
    for transfer_id in sorted(legs_of.keys() - transfers.keys()):
        report.violations.append(f"{transfer_id}: legs decided without the transfer's decision")
