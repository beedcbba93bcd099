"""The balance book of one partition: balances, their open reservations, and coordinator fences.

Every change goes through `apply(record)`, the one function used both for live traffic
and for replay, so recovery reproduces exactly what clients were told. The `decide_*`
methods only *compute* the record (or a rejection) from current state; the shard journals
that record and then applies it, with no suspension point in between (docs/design.md §1.5).

Invariants, asserted after every change:
  reserved >= 0, incoming >= 0, and for a limited balance
  amount - reserved >= -overdraft_limit   (what is escrowed is always covered)
"""

from __future__ import annotations

import sys
from collections.abc import Set as AbstractSet

import msgspec

from ledger.money import INT64_MAX
from ledger.records import (
    AccountActivity,
    BalanceChanged,
    BalanceOpened,
    Fenced,
    HeldBatch,
    Posted,
    PostedBatch,
    Prepared,
    Record,
    Reserved,
    Voided,
    VoidedBatch,
)
from ledger.results import Check

DEBIT = 0
CREDIT = 1
_NONE_OPEN: frozenset[str] = frozenset()


class Balance:
    """Mutable, compact: a book may hold a million of these."""

    __slots__ = (
        "account_active",
        "active",
        "amount",
        "currency",
        "incoming",
        "overdraft_limit",
        "reserved",
        "unlimited",
    )

    def __init__(self, currency: str, overdraft_limit: int, unlimited: bool) -> None:
        self.amount = 0
        self.reserved = 0
        self.incoming = 0  # prepared credits not yet posted (guards int64 overflow)
        self.overdraft_limit = overdraft_limit
        self.currency = sys.intern(currency)  # one "USD" for a million balances, not a million
        self.active = True
        self.account_active = True
        self.unlimited = unlimited

    @property
    def usable(self) -> bool:
        return self.active and self.account_active

    @property
    def available(self) -> int:
        return self.amount - self.reserved + self.overdraft_limit


class Reservation(msgspec.Struct, array_like=True):
    side: int  # DEBIT (a reservation) or CREDIT (a prepared credit)
    amount_minor: int  # what is still held
    coordinator: int
    epoch: int
    posts: int = 0  # partial posts applied (captures that kept the rest held), in order
    transfer_id: str | None = None  # a transfer's leg


class OpenReservation(msgspec.Struct, frozen=True, array_like=True):
    """A phase-one entry still open on a balance (a debit reserved or a credit prepared),
    as a coordinator's recovery collects them: not to be confused with the API's
    authorization holds, whose legs are such entries too."""

    payment_id: str
    balance_id: str
    side: int
    amount_minor: int
    currency: str
    transfer_id: str | None = None


class BalanceView(msgspec.Struct, frozen=True, array_like=True):
    balance_id: str
    currency: str
    amount_minor: int
    reserved_minor: int
    available_minor: int
    overdraft_limit_minor: int
    active: bool
    unlimited: bool
    account_active: bool = True


class BookSnapshot(msgspec.Struct, frozen=True, array_like=True):
    balances: list[tuple[str, str, int, int, int, int, bool, bool, bool]]
    # (reservation id, balance, side, amount, coordinator, epoch, partial posts, transfer id); 1.0 had
    # only the first six
    reservations: list[tuple[str | int | None, ...]]
    fences: dict[int, int]


class BalanceBook:
    def __init__(self) -> None:
        self.balances: dict[str, Balance] = {}
        self.reservations: dict[tuple[str, str], Reservation] = {}
        self.reservations_by_balance: dict[str, set[str]] = {}  # balance -> ids of its open reservations
        self.fences: dict[int, int] = {}

    # -- decisions: pure functions of current state ---------------------------------
    def decide_open(
        self, balance_id: str, currency: str, overdraft_limit_minor: int, unlimited: bool
    ) -> BalanceOpened | None:
        if balance_id in self.balances:
            return None  # idempotent: opened before
        return BalanceOpened(balance_id, currency, overdraft_limit_minor, unlimited)

    def decide_change(
        self, balance_id: str, active: bool | None, overdraft_limit_minor: int | None
    ) -> tuple[Check, BalanceChanged | None]:
        balance = self.balances.get(balance_id)
        if balance is None:
            return Check.BALANCE_NOT_FOUND, None
        new_active = balance.active if active is None else active
        new_limit = balance.overdraft_limit if overdraft_limit_minor is None else overdraft_limit_minor
        if (new_active, new_limit) == (balance.active, balance.overdraft_limit):
            return Check.OK, None
        if not balance.unlimited and balance.amount - balance.reserved < -new_limit:
            return Check.NOT_ENOUGH_MONEY, None  # the lower limit would not cover what is spent
        return Check.OK, BalanceChanged(balance_id, new_active, new_limit)

    def decide_account_activity(self, balance_id: str, account_active: bool) -> AccountActivity | None:
        balance = self.balances.get(balance_id)
        if balance is None or balance.account_active == account_active:
            return None
        return AccountActivity(balance_id, account_active)

    def _check_leg(
        self, payment_id: str, balance_id: str, currency: str, coordinator: int, epoch: int
    ) -> tuple[Check | None, Balance | None]:
        """The checks both legs share, in precedence order: (a verdict, or None to go on)."""
        if epoch < self.fences.get(coordinator, 0):
            return Check.FENCED, None
        balance = self.balances.get(balance_id)
        if balance is None:
            return Check.BALANCE_NOT_FOUND, None
        if (payment_id, balance_id) in self.reservations:
            return Check.OK, None  # a retried call: the reservation exists already
        if not balance.usable:
            return Check.BALANCE_DISABLED, None
        if balance.currency != currency:
            return Check.CURRENCIES_DONT_MATCH, None
        return None, balance

    def decide_reserve(
        self,
        payment_id: str,
        balance_id: str,
        amount_minor: int,
        currency: str,
        coordinator: int,
        epoch: int,
        transfer_id: str | None = None,
    ) -> tuple[Check, Reserved | None]:
        refusal = self._refusal(DEBIT, payment_id, balance_id, amount_minor, currency, coordinator, epoch)
        if refusal is not None:
            return refusal, None
        return Check.OK, Reserved(payment_id, balance_id, amount_minor, coordinator, epoch, transfer_id)

    def decide_prepare(
        self,
        payment_id: str,
        balance_id: str,
        amount_minor: int,
        currency: str,
        coordinator: int,
        epoch: int,
        transfer_id: str | None = None,
    ) -> tuple[Check, Prepared | None]:
        refusal = self._refusal(CREDIT, payment_id, balance_id, amount_minor, currency, coordinator, epoch)
        if refusal is not None:
            return refusal, None
        return Check.OK, Prepared(payment_id, balance_id, amount_minor, coordinator, epoch, transfer_id)

    def _refusal(
        self,
        side: int,
        payment_id: str,
        balance_id: str,
        amount_minor: int,
        currency: str,
        coordinator: int,
        epoch: int,
    ) -> Check | None:
        """Why the leg is not held now (OK: it was before), or None: it can be, reserved on
        the paying side (DEBIT) or prepared on the receiving side."""
        assert amount_minor > 0, "amounts are validated at the gateway"
        verdict, balance = self._check_leg(payment_id, balance_id, currency, coordinator, epoch)
        if verdict is not None:
            return verdict
        assert balance is not None
        if side != DEBIT:
            return Check.AMOUNT_OVERFLOW if balance.amount + balance.incoming + amount_minor > INT64_MAX else None
        if not balance.unlimited and balance.available < amount_minor:
            return Check.NOT_ENOUGH_MONEY
        if balance.amount - balance.reserved - amount_minor < -INT64_MAX:
            return Check.AMOUNT_OVERFLOW  # an issuer cannot issue past what int64 records
        return None

    # -- a batch's legs: decided and applied one by one, journaled as one record ------
    # (the caller journals them, HeldBatch, PostedBatch, VoidedBatch, before it awaits
    # anything; replaying that record applies each leg through the same functions)
    def hold_leg(
        self,
        side: int,
        payment_id: str,
        balance_id: str,
        amount_minor: int,
        currency: str,
        coordinator: int,
        epoch: int,
        transfer_id: str | None,
    ) -> Check | None:
        """Phase one of a leg: its refusal (OK if it is held already), or None once it is
        held now (reserved as a debit, prepared as a credit)."""
        refusal = self._refusal(side, payment_id, balance_id, amount_minor, currency, coordinator, epoch)
        if refusal is None:
            self._hold(side, payment_id, balance_id, amount_minor, coordinator, epoch, transfer_id)
        return refusal

    def post_leg(self, payment_id: str, balance_id: str) -> tuple[int, int] | None:
        """Post the whole reservation of a decided leg: (delta, balance after), or None if it
        was posted or voided before (phase two is retried idempotently)."""
        reservation = self.reservations.get((payment_id, balance_id))
        if reservation is None:
            return None
        delta = -reservation.amount_minor if reservation.side == DEBIT else reservation.amount_minor
        return delta, self._post_whole(payment_id, balance_id, delta)

    def void_leg(self, payment_id: str, balance_id: str) -> bool:
        """Release the reservation of a leg not to be posted; False if there is none (any more)."""
        if (payment_id, balance_id) not in self.reservations:
            return False
        self._void(payment_id, balance_id)
        return True

    def decide_post(
        self,
        payment_id: str,
        balance_id: str,
        at_ms: int,
        amount_minor: int | None = None,
        hold_id: str | None = None,
        capture_seq: int | None = None,
    ) -> Posted | None:
        """Post the reservation `hold_id or payment_id`: all of it, or `amount_minor` of it and
        release the rest; or, as its `capture_seq`-th partial post, `amount_minor` of it
        and keep the rest reserved (an authorization hold captured several times)."""
        reservation = self.reservations.get((hold_id or payment_id, balance_id))
        if reservation is None:
            return None  # posted (or voided) before: phase 2 is retried idempotently
        if capture_seq is not None and capture_seq <= reservation.posts:
            return None  # this partial post was applied before
        assert capture_seq is None or capture_seq == reservation.posts + 1, "partial posts apply in order"
        amount = reservation.amount_minor if amount_minor is None else amount_minor
        assert 0 < amount <= reservation.amount_minor, "a capture is positive and within the reservation"
        balance = self.balances[balance_id]
        delta = -amount if reservation.side == DEBIT else amount
        return Posted(payment_id, balance_id, delta, balance.amount + delta, at_ms, hold_id, capture_seq)

    def decide_void(self, payment_id: str, balance_id: str) -> Voided | None:
        if (payment_id, balance_id) not in self.reservations:
            return None
        return Voided(payment_id, balance_id)

    def decide_fence(self, coordinator: int, epoch: int) -> Fenced | None:
        if epoch <= self.fences.get(coordinator, 0):
            return None
        return Fenced(coordinator, epoch)

    # -- the one mutator ----------------------------------------------------------------
    def apply(self, record: Record) -> None:
        if isinstance(record, HeldBatch):
            transfer_ids = record.transfer_ids or [None] * len(record.payment_ids)
            for side, payment_id, balance_id, amount, transfer_id in zip(
                record.sides, record.payment_ids, record.balance_ids, record.amounts, transfer_ids, strict=True
            ):
                self._hold(side, payment_id, balance_id, amount, record.coordinator, record.epoch, transfer_id)
            return
        if isinstance(record, PostedBatch):
            for payment_id, balance_id, delta, after in zip(
                record.payment_ids, record.balance_ids, record.deltas, record.balances_after, strict=True
            ):
                assert self._post_whole(payment_id, balance_id, delta) == after, "replay diverged from the journal"
            return
        if isinstance(record, VoidedBatch):
            for payment_id, balance_id in zip(record.payment_ids, record.balance_ids, strict=True):
                self._void(payment_id, balance_id)
            return
        if isinstance(record, Reserved | Prepared):
            side = DEBIT if isinstance(record, Reserved) else CREDIT
            self._hold(
                side,
                record.payment_id,
                record.balance_id,
                record.amount_minor,
                record.coordinator,
                record.epoch,
                record.transfer_id,
            )
            return
        if isinstance(record, Posted):
            balance = self.balances[record.balance_id]
            key = record.hold_id or record.payment_id
            if record.capture_seq is None:
                reservation = self._close(key, record.balance_id)
                released = reservation.amount_minor  # the post, and the rest let go
            else:
                reservation = self.reservations[(key, record.balance_id)]
                assert record.capture_seq == reservation.posts + 1, "partial posts apply in order"
                released = abs(record.delta_minor)
                reservation.amount_minor -= released  # the rest stays held
                reservation.posts = record.capture_seq
            assert abs(record.delta_minor) <= released, "a post never exceeds its reservation"
            _escrow(balance, reservation.side, -released)
            balance.amount += record.delta_minor
            assert balance.amount == record.balance_after_minor, "replay diverged from the journal"
        elif isinstance(record, Voided):
            self._void(record.payment_id, record.balance_id)
            return
        elif isinstance(record, BalanceOpened):
            assert record.balance_id not in self.balances, "a balance is opened once"
            self.balances[record.balance_id] = Balance(record.currency, record.overdraft_limit_minor, record.unlimited)
            return
        elif isinstance(record, BalanceChanged):
            balance = self.balances[record.balance_id]
            balance.active = record.active
            balance.overdraft_limit = record.overdraft_limit_minor
        elif isinstance(record, AccountActivity):
            self.balances[record.balance_id].account_active = record.account_active
            return
        elif isinstance(record, Fenced):
            self.fences[record.coordinator] = record.epoch
            return
        else:
            raise AssertionError(f"not a partition record: {record!r}")
        self._check(balance)

    def _hold(
        self,
        side: int,
        payment_id: str,
        balance_id: str,
        amount: int,
        coordinator: int,
        epoch: int,
        transfer_id: str | None,
    ) -> None:
        balance = self.balances[balance_id]
        _escrow(balance, side, amount)
        self._open(payment_id, balance_id, Reservation(side, amount, coordinator, epoch, 0, transfer_id))
        self._check(balance)

    def _post_whole(self, payment_id: str, balance_id: str, delta: int) -> int:
        """The whole reservation posted as `delta`; the balance's amount after it."""
        reservation = self._close(payment_id, balance_id)
        whole = -reservation.amount_minor if reservation.side == DEBIT else reservation.amount_minor
        assert delta == whole, "a whole post is its reservation, paid out or in"
        balance = self.balances[balance_id]
        _escrow(balance, reservation.side, -reservation.amount_minor)
        balance.amount += delta
        self._check(balance)
        return balance.amount

    def _void(self, payment_id: str, balance_id: str) -> None:
        balance = self.balances[balance_id]
        reservation = self._close(payment_id, balance_id)
        _escrow(balance, reservation.side, -reservation.amount_minor)
        self._check(balance)

    def _open(self, key: str, balance_id: str, reservation: Reservation) -> None:
        self.reservations[(key, balance_id)] = reservation
        self.reservations_by_balance.setdefault(balance_id, set()).add(key)

    def _close(self, key: str, balance_id: str) -> Reservation:
        reservation = self.reservations.pop((key, balance_id))
        ids = self.reservations_by_balance[balance_id]
        ids.discard(key)
        if not ids:
            del self.reservations_by_balance[balance_id]  # memory stays bounded by open reservations
        return reservation

    @staticmethod
    def _check(balance: Balance) -> None:
        assert balance.reserved >= 0 and balance.incoming >= 0, "negative escrow"
        assert balance.unlimited or balance.amount - balance.reserved >= -balance.overdraft_limit, (
            "balance below its overdraft limit"
        )

    # -- reads ------------------------------------------------------------------------------
    def view(self, balance_id: str) -> BalanceView | None:
        b = self.balances.get(balance_id)
        if b is None:
            return None
        return BalanceView(
            balance_id,
            b.currency,
            b.amount,
            b.reserved,
            b.available,
            b.overdraft_limit,
            b.active,
            b.unlimited,
            b.account_active,
        )

    def reservations_on(self, balance_id: str) -> AbstractSet[str]:
        """Ids of the holds open on `balance_id` (payments in flight, authorization holds)."""
        return self.reservations_by_balance.get(balance_id, _NONE_OPEN)

    def open_reservations(self, coordinator: int | None = None) -> list[OpenReservation]:
        return [
            OpenReservation(pid, bid, r.side, r.amount_minor, self.balances[bid].currency, r.transfer_id)
            for (pid, bid), r in self.reservations.items()
            if coordinator is None or r.coordinator == coordinator
        ]

    def totals_by_currency(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for b in self.balances.values():
            totals[b.currency] = totals.get(b.currency, 0) + b.amount
        return totals

    # -- snapshots bound replay time ---------------------------------------------------
    def snapshot(self) -> BookSnapshot:
        return BookSnapshot(
            balances=[
                (
                    bid,
                    b.currency,
                    b.amount,
                    b.reserved,
                    b.incoming,
                    b.overdraft_limit,
                    b.active,
                    b.unlimited,
                    b.account_active,
                )
                for bid, b in self.balances.items()
            ],
            reservations=[
                (pid, bid, r.side, r.amount_minor, r.coordinator, r.epoch, r.posts, r.transfer_id)
                for (pid, bid), r in self.reservations.items()
            ],
            fences=dict(self.fences),
        )

    @classmethod
    def from_snapshot(cls, snap: BookSnapshot) -> BalanceBook:
        book = cls()
        for bid, currency, amount, reserved, incoming, limit, active, unlimited, account_active in snap.balances:
            b = Balance(currency, limit, unlimited)
            b.amount, b.reserved, b.incoming = amount, reserved, incoming
            b.active, b.account_active = active, account_active
            book.balances[bid] = b
        for r in snap.reservations:  # 1.0: without the last two
            posts = r[6] if len(r) > 6 else 0
            transfer_id = r[7] if len(r) > 7 else None
            assert isinstance(r[0], str) and isinstance(r[1], str) and isinstance(posts, int), r
            side, amount, coordinator, epoch = (int(x) for x in r[2:6])  # type: ignore[arg-type]
            reservation = Reservation(
                side, amount, coordinator, epoch, posts, None if transfer_id is None else str(transfer_id)
            )
            book._open(r[0], r[1], reservation)
        book.fences = dict(snap.fences)
        return book


def _escrow(balance: Balance, side: int, change: int) -> None:
    """Change what legs of `side` hold on `balance`: reserved for debits, incoming for
    credits (positive: a leg held, negative: released)."""
    if side == DEBIT:
        balance.reserved += change
    else:
        balance.incoming += change
