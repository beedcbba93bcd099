"""What must hold in a simulated cluster: after every step, whenever it finds an actor's
crash, and at the end of a run (docs/design.md §1).

After every step, while every shard and coordinator is up (a down one's state is only on
its disk until it restarts):
  - per currency, the balances sum to zero once the decided payments' phase two that is
    still on its way is counted: a side of a successful payment whose reservation is still
    open on its shard has not moved its money yet (a debit posted and its credit not yet
    is money in flight, not money lost);
  - no limited balance is below its limit, nothing escrowed is negative.
At each crash of a coordinator: every decision a client was told of is in what its disk
kept (acknowledged means durable).
At the end (faults stopped, everything settled): `verify` finds nothing on the journals, no
reservation is left open, every acknowledged payment is decided in the journals as it was
answered, and the live books are what the journals replay to.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from actors.audit import Source, canonical, verify_journals
from actors.coordinator import PaymentCoordinator
from actors.shard import BalanceShard
from actors.topology import coordinator_name, coordinator_of, partition_of, shard_name
from journal.base import Journal
from ledger.book import BalanceBook, BookSnapshot
from ledger.records import Decided, payment_sides
from ledger.results import PaymentStatus
from tests.sim.cluster import SimCluster
from tests.sim.disk import SimJournal, SimStore


class Invariants:
    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.acknowledged: dict[str, str] = {}  # payment id -> the status a client was told
        self.checked = 0

    # -- every step -------------------------------------------------------------------------
    def _actors(self) -> tuple[list[BalanceShard], list[PaymentCoordinator]] | None:
        c, s = self.cluster, self.cluster.settings
        shards = [c.objects.get(shard_name(k)) for k in range(s.shards)]
        coordinators = [c.objects.get(coordinator_name(k)) for k in range(s.coordinators)]
        if any(x is None for x in shards) or any(x is None for x in coordinators):
            return None
        return shards, coordinators  # type: ignore[return-value]

    def step(self) -> None:
        found = self._actors()
        if found is None:
            return
        shards, coordinators = found
        self.checked += 1
        books: dict[int, BalanceBook] = {}
        totals: dict[str, int] = defaultdict(int)
        for shard in shards:
            for p, part in shard.partitions.items():
                books[p] = part.book
                for balance_id, b in part.book.balances.items():
                    totals[b.currency] += b.amount
                    assert b.reserved >= 0 and b.incoming >= 0, f"{balance_id}: negative escrow"
                    assert b.unlimited or b.amount - b.reserved >= -b.overdraft_limit, (
                        f"{balance_id} is below its limit"
                    )
        partitions = self.cluster.settings.partitions
        for coordinator in coordinators:
            for p in coordinator.book.unfinished.values():
                if p.status != PaymentStatus.SUCCESS:
                    continue
                key = p.hold_id or p.id
                for debit, credit, amount, currency in payment_sides(p):
                    for balance_id, sign in ((debit, -1), (credit, 1)):
                        r = books[partition_of(balance_id, partitions)].reservations.get((key, balance_id))
                        if r is not None and (p.capture_seq is None or r.posts < p.capture_seq):
                            totals[currency] += sign * amount  # not moved here yet
        assert not any(totals.values()), f"money created or lost: {dict(totals)}"

    # -- at a crash -------------------------------------------------------------------------
    def coordinator_kept(self, index: int, store: SimStore) -> None:
        """The disk of coordinator `index` after its crash holds every decision it answered."""
        kept = _decisions(SimJournal(store))
        s = self.cluster.settings
        for payment_id, status in self.acknowledged.items():
            if coordinator_of(payment_id, s.coordinators) != index:
                continue
            assert kept.get(payment_id) == status, (
                f"{payment_id} was answered {status} but coordinator-{index}'s disk has {kept.get(payment_id)}"
            )

    # -- at the end -------------------------------------------------------------------------
    def sources(self) -> list[Source]:
        def source(name: str, kind: str, store: SimStore) -> Source:
            def snapshot() -> tuple[int, BookSnapshot | None]:
                if store.snapshot is None or kind != "shard":
                    return 0, None
                return store.snapshot[0], msgspec.msgpack.decode(store.snapshot[2], type=BookSnapshot)

            def journal() -> Journal:
                return SimJournal(store)

            return Source(name, kind, journal, snapshot)

        kinds = {"registry": "registry", "p": "shard", "c": "coordinator"}
        return [
            source(name, kinds[name.split("-")[0]], store)
            for name, store in sorted(self.cluster.stores.items())
            if name.split("-")[0] in kinds
        ]

    def end(self) -> dict[str, Any]:
        report = verify_journals(self.sources())
        assert not report.violations, f"verify: {report.violations[:5]}"
        decided = {k: v for s in self.sources() if s.kind == "coordinator" for k, v in _decisions(s.open()).items()}
        for payment_id, status in self.acknowledged.items():
            assert decided.get(payment_id) == status, (
                f"{payment_id} was answered {status}, journals say {decided.get(payment_id)}"
            )
        found = self._actors()
        assert found is not None, "an actor is still down at the end"
        for shard in found[0]:
            for p, part in shard.partitions.items():
                assert not part.book.reservations, f"p-{p} still holds {list(part.book.reservations)[:3]}"
                replayed = BalanceBook()
                for stored in SimJournal(self.cluster.stores[f"p-{p}"]).load(from_genesis=True).records:
                    replayed.apply(stored.record)
                assert canonical(replayed.snapshot()) == canonical(part.book.snapshot()), (
                    f"p-{p}: the live book is not its journal's"
                )
        return {"payments": report.payments, "transfers": report.transfers, "records": report.records}


def _decisions(journal: Journal) -> dict[str, str]:
    """Payment id -> status, of every decision a coordinator's journal holds."""
    found = (stored.record for stored in journal.load(from_genesis=True).records)
    return {r.payment.id: r.payment.status for r in found if isinstance(r, Decided)}
