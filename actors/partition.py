"""One partition of a shard: its balance book and its journal, and the legs of a batch that
are applied but not yet journaled (docs/design.md §9: one record per batch, not per leg)."""

from __future__ import annotations

import msgspec

from actors import clock
from journal import Journal
from ledger.book import BalanceBook, BookSnapshot
from ledger.messages import SideRequest
from ledger.records import HeldBatch, PostedBatch, Record, VoidedBatch
from ledger.results import Check


class Partition:
    def __init__(self, index: int, journal: Journal) -> None:
        self.index = index
        self.journal = journal
        self.snapshot_seq = 0
        loaded = journal.load()
        if loaded.snapshot is not None:
            self.book = BalanceBook.from_snapshot(msgspec.msgpack.decode(loaded.snapshot, type=BookSnapshot))
            self.snapshot_seq = loaded.snapshot_seq
        else:
            self.book = BalanceBook()
        self.replayed = 0
        for stored in loaded.records:
            self.book.apply(stored.record)
            self.replayed += 1
        self._legs = _Legs()  # applied, not yet journaled

    def commit(self, record: Record) -> None:
        """Journal, then apply: the order that makes replay reproduce live state."""
        self.seal()  # the legs applied before it are journaled before it
        self.journal.append(record)
        self.book.apply(record)

    # A batch's legs are decided and applied one by one, then journaled as one record per
    # kind (`seal`), in the order they were applied: posts, voids, then holds (each call
    # closes legs before it holds new ones), with no await in between.
    def hold(self, side: int, it: SideRequest, coordinator: int, epoch: int) -> int:
        """Phase one of a leg: its check."""
        refusal = self.book.hold_leg(
            side, it.payment_id, it.balance_id, it.amount_minor, it.currency, coordinator, epoch, it.transfer_id
        )
        if refusal is not None:
            return int(refusal)
        legs = self._legs
        if legs.held and (legs.coordinator, legs.epoch) != (coordinator, epoch):
            self.seal()
        legs.coordinator, legs.epoch = coordinator, epoch
        legs.held.append((it.payment_id, it.balance_id, it.amount_minor, side, it.transfer_id))
        return int(Check.OK)

    def post(self, payment_id: str, balance_id: str) -> bool:
        """Post a decided leg whole; False if it was posted or voided before."""
        posted = self.book.post_leg(payment_id, balance_id)
        if posted is None:
            return False
        if self._legs.voided or self._legs.held:
            self.seal()  # journaled in the order applied
        self._legs.posted.append((payment_id, balance_id, *posted))
        return True

    def void(self, payment_id: str, balance_id: str) -> bool:
        """Release a leg not to be posted; False if there is nothing (any more) to release."""
        if not self.book.void_leg(payment_id, balance_id):
            return False
        if self._legs.held:
            self.seal()
        self._legs.voided.append((payment_id, balance_id))
        return True

    def seal(self) -> None:
        """Journal the legs applied since the last seal (they are in memory only until then)."""
        legs = self._legs
        if legs.posted:
            ids, balances, deltas, after = (list(c) for c in zip(*legs.posted, strict=True))
            self.journal.append(PostedBatch(self.journal.next_seq, clock.now_ms(), ids, balances, deltas, after))
            legs.posted = []
        if legs.voided:
            ids, balances = (list(c) for c in zip(*legs.voided, strict=True))
            self.journal.append(VoidedBatch(self.journal.next_seq, ids, balances))
            legs.voided = []
        if legs.held:
            ids, balances, amounts, sides, transfers = (list(c) for c in zip(*legs.held, strict=True))
            transfer_ids = None if all(t is None for t in transfers) else transfers
            self.journal.append(
                HeldBatch(
                    self.journal.next_seq,
                    legs.coordinator,
                    legs.epoch,
                    ids,
                    balances,
                    amounts,
                    bytes(sides),
                    transfer_ids,
                )
            )
            legs.held = []


class _Legs:
    """A partition's legs applied and not yet journaled, by kind, in the order applied."""

    __slots__ = ("coordinator", "epoch", "held", "posted", "voided")

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, int, int]] = []  # payment, balance, delta, balance after
        self.voided: list[tuple[str, str]] = []
        self.held: list[tuple[str, str, int, int, str | None]] = []  # payment, balance, amount, side, transfer
        self.coordinator = self.epoch = 0
