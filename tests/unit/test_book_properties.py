"""BalanceBook: its invariants under random operation sequences, and worked examples.

The state machine drives the book exactly like a shard does (decide, then apply the
returned record) and keeps an independent model of every balance and hold next to it.
After every step: money is conserved per currency (posts of a payment's two legs happen
in one step), escrow never goes negative, limited balances stay within their overdraft,
the book equals its model, and replaying the journaled records (through the codec) or
restoring a snapshot reproduces the very same state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger.book import CREDIT, DEBIT, BalanceBook, BookSnapshot
from ledger.money import INT64_MAX
from ledger.records import (
    AccountActivity,
    BalanceChanged,
    BalanceOpened,
    EpochStarted,
    Fenced,
    HeldBatch,
    Posted,
    PostedBatch,
    Prepared,
    Record,
    RecordCodec,
    Reserved,
    Voided,
    VoidedBatch,
)
from ledger.results import Check, PaymentStatus, decide

T = TypeVar("T")
CODEC = RecordCodec()
_snapshot_decoder = msgspec.msgpack.Decoder(BookSnapshot)


def snapshot_bytes(book: BalanceBook) -> bytes:
    return msgspec.msgpack.encode(book.snapshot())


# -- the model ----------------------------------------------------------------------------


@dataclass
class ModelBalance:
    currency: str
    limit: int
    unlimited: bool
    amount: int = 0
    reserved: int = 0
    incoming: int = 0
    active: bool = True
    account_active: bool = True

    @property
    def usable(self) -> bool:
        return self.active and self.account_active


@dataclass
class Payment:
    pid: str
    src: str
    dst: str
    amount: int
    currency: str
    coordinator: int
    epoch: int
    held: list[str] = field(default_factory=list)  # balances on which a leg is still held


@dataclass(frozen=True)
class Finished:
    pid: str  # the id the posts were made under
    hold_key: str  # the key of the holds that were closed
    balances: tuple[str, str]


ISSUERS = {"iss_usd": "USD", "iss_eur": "EUR"}
BALANCE_IDS = ["iss_usd", "a_usd", "b_usd", "c_usd", "iss_eur", "a_eur"]
CHOICES = [*BALANCE_IDS, "missing"]  # "missing" is never opened
COORDINATORS = [0, 1]
AMOUNTS = st.integers(min_value=1, max_value=300)


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = BalanceBook()
        self.replica = BalanceBook()  # fed only with decoded journal records
        self.records: list[Record] = []
        self.model: dict[str, ModelBalance] = {}
        self.reservations: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        self.fences: dict[int, int] = {}
        self.open: dict[str, Payment] = {}  # both legs held: to be posted, captured or voided
        self.doomed: dict[str, Payment] = {}  # refused by one side: what is held must be voided
        self.finished: list[Finished] = []
        self.counter = 0
        self.clock_ms = 1_700_000_000_000

    # -- helpers ------------------------------------------------------------------------
    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter:05d}"

    def tick(self) -> int:
        self.clock_ms += 1
        return self.clock_ms

    def commit(self, record: Record) -> None:
        """What a shard does with a decided record: journal it, then apply it."""
        body = CODEC.encode(record)
        self.records.append(record)
        self.book.apply(record)
        self.replica.apply(CODEC.decode(body))

    def replay_everything_into_a_fresh_book(self) -> None:
        """Recovery without a snapshot: every journaled record, decoded, into a new book."""
        fresh = BalanceBook()
        for record in self.records:
            fresh.apply(CODEC.decode(CODEC.encode(record)))
        assert snapshot_bytes(fresh) == snapshot_bytes(self.book)

    def pure(self, decide_fn: Callable[..., T], *args: Any) -> T:
        """Call a decide_* method and check it did not touch the book."""
        before = snapshot_bytes(self.book)
        result = decide_fn(*args)
        assert snapshot_bytes(self.book) == before, f"{decide_fn.__name__} changed the book"
        return result

    def expected_hold_check(
        self, pid: str, bid: str, amount: int, currency: str, coordinator: int, epoch: int, *, debit: bool
    ) -> tuple[Check, bool]:
        """(check, whether a record is due) for a reserve (debit) or a prepare."""
        if epoch < self.fences.get(coordinator, 0):
            return Check.FENCED, False
        m = self.model.get(bid)
        if m is None:
            return Check.BALANCE_NOT_FOUND, False
        if (pid, bid) in self.reservations:
            return Check.OK, False  # retried: already held
        if not m.usable:
            return Check.BALANCE_DISABLED, False
        if m.currency != currency:
            return Check.CURRENCIES_DONT_MATCH, False
        if debit and not m.unlimited and m.amount - m.reserved + m.limit < amount:
            return Check.NOT_ENOUGH_MONEY, False
        if not debit and m.amount + m.incoming + amount > INT64_MAX:
            return Check.AMOUNT_OVERFLOW, False
        return Check.OK, True

    def hold_leg(self, p: Payment, bid: str, *, debit: bool) -> Check:
        decide_fn = self.book.decide_reserve if debit else self.book.decide_prepare
        args = (p.pid, bid, p.amount, p.currency, p.coordinator, p.epoch)
        check, due = self.expected_hold_check(*args, debit=debit)
        code, record = self.pure(decide_fn, *args)
        assert code == check
        if not due:
            assert record is None
            return code
        kind = Reserved if debit else Prepared
        assert record == kind(p.pid, bid, p.amount, p.coordinator, p.epoch)
        self.commit(record)
        m = self.model[bid]
        if debit:
            m.reserved += p.amount
        else:
            m.incoming += p.amount
        self.reservations[(p.pid, bid)] = (DEBIT if debit else CREDIT, p.amount, p.coordinator, p.epoch)
        p.held.append(bid)
        return code

    def post_leg(self, pid: str, bid: str, hold_key: str, amount: int | None) -> Posted:
        side, held_minor, _, _ = self.reservations[(hold_key, bid)]
        at_ms = self.tick()
        hold_id = None if hold_key == pid else hold_key
        record = self.pure(self.book.decide_post, pid, bid, at_ms, amount, hold_id)
        posted_minor = held_minor if amount is None else amount
        delta = -posted_minor if side == DEBIT else posted_minor
        m = self.model[bid]
        assert record == Posted(pid, bid, delta, m.amount + delta, at_ms, hold_id)
        return record

    def close_hold_in_model(self, hold_key: str, bid: str, delta: int) -> None:
        side, held_minor, _, _ = self.reservations.pop((hold_key, bid))
        m = self.model[bid]
        if side == DEBIT:
            m.reserved -= held_minor
        else:
            m.incoming -= held_minor
        m.amount += delta

    def void_payment(self, p: Payment) -> None:
        for bid in (p.src, p.dst):
            record = self.pure(self.book.decide_void, p.pid, bid)
            if bid in p.held:
                assert record == Voided(p.pid, bid)
                self.commit(record)
                self.close_hold_in_model(p.pid, bid, 0)
            else:
                assert record is None
        p.held.clear()
        self.finished.append(Finished(p.pid, p.pid, (p.src, p.dst)))

    # -- setup --------------------------------------------------------------------------
    @initialize(limit_c=st.integers(0, 500), limit_eur=st.integers(0, 500))
    def open_balances(self, limit_c: int, limit_eur: int) -> None:
        specs = [
            ("iss_usd", "USD", 0, True),
            ("a_usd", "USD", 0, False),
            ("b_usd", "USD", 0, False),
            ("c_usd", "USD", limit_c, False),
            ("iss_eur", "EUR", 0, True),
            ("a_eur", "EUR", limit_eur, False),
        ]
        for bid, currency, limit, unlimited in specs:
            record = self.pure(self.book.decide_open, bid, currency, limit, unlimited)
            assert record == BalanceOpened(bid, currency, limit, unlimited)
            self.commit(record)
            self.model[bid] = ModelBalance(currency, limit, unlimited)
            assert self.pure(self.book.decide_open, bid, currency, limit, unlimited) is None

    # -- phase 1 ------------------------------------------------------------------------
    @rule(
        data=st.data(),
        src=st.sampled_from(CHOICES),
        amount=AMOUNTS,
        coordinator=st.sampled_from(COORDINATORS),
    )
    def start_payment(self, data: st.DataObject, src: str, amount: int, coordinator: int) -> None:
        dst = data.draw(st.sampled_from([b for b in CHOICES if b != src]), label="dst")
        self.phase1(data, src, dst, amount, coordinator)

    @rule(
        data=st.data(),
        issuer=st.sampled_from(sorted(ISSUERS)),
        amount=AMOUNTS,
        coordinator=st.sampled_from(COORDINATORS),
    )
    def start_deposit(self, data: st.DataObject, issuer: str, amount: int, coordinator: int) -> None:
        """From an issuer to a balance of its currency: how money enters the ledger."""
        others = [b for b in BALANCE_IDS if b != issuer and self.model[b].currency == ISSUERS[issuer]]
        self.phase1(data, issuer, data.draw(st.sampled_from(others), label="dst"), amount, coordinator)

    def phase1(self, data: st.DataObject, src: str, dst: str, amount: int, coordinator: int) -> None:
        currency = self.model[src].currency if src in self.model else "USD"
        epoch = self.fences.get(coordinator, 0)
        if epoch > 0 and data.draw(st.booleans(), label="stale epoch"):
            epoch = data.draw(st.integers(0, epoch - 1), label="epoch")
        p = Payment(self.next_id("pay"), src, dst, amount, currency, coordinator, epoch)
        debit = self.hold_leg(p, src, debit=True)
        credit = self.hold_leg(p, dst, debit=False)
        event(f"reserve: {debit.name}")
        event(f"prepare: {credit.name}")
        # Retried legs while they are held change nothing.
        for bid, decide_fn in ((src, self.book.decide_reserve), (dst, self.book.decide_prepare)):
            if bid in p.held:
                args = (p.pid, bid, p.amount, p.currency, p.coordinator, p.epoch)
                assert self.pure(decide_fn, *args) == (Check.OK, None)
        status, reason = decide(debit, credit)
        if status == PaymentStatus.SUCCESS:
            assert reason is None and p.held == [src, dst]
            self.open[p.pid] = p
        else:
            assert reason == min(c for c in (debit, credit) if c != Check.OK).name.lower()
            self.doomed[p.pid] = p

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def retry_phase1_of_open_payment(self, data: st.DataObject) -> None:
        p = self.open[data.draw(st.sampled_from(sorted(self.open)))]
        expected = Check.FENCED if p.epoch < self.fences.get(p.coordinator, 0) else Check.OK
        args = (p.pid, p.src, p.amount, p.currency, p.coordinator, p.epoch)
        assert self.pure(self.book.decide_reserve, *args) == (expected, None)
        args = (p.pid, p.dst, p.amount, p.currency, p.coordinator, p.epoch)
        assert self.pure(self.book.decide_prepare, *args) == (expected, None)

    # -- phase 2 ------------------------------------------------------------------------
    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def post_payment(self, data: st.DataObject) -> None:
        p = self.open.pop(data.draw(st.sampled_from(sorted(self.open))))
        # Both legs are decided, then both applied: conservation holds after every step.
        debit = self.post_leg(p.pid, p.src, p.pid, None)
        credit = self.post_leg(p.pid, p.dst, p.pid, None)
        assert debit.delta_minor == -p.amount and credit.delta_minor == p.amount
        for record in (debit, credit):
            self.commit(record)
            self.close_hold_in_model(p.pid, record.balance_id, record.delta_minor)
        self.finished.append(Finished(p.pid, p.pid, (p.src, p.dst)))

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def capture_payment(self, data: st.DataObject) -> None:
        """A hold captured (possibly in part) by a payment with its own id."""
        p = self.open.pop(data.draw(st.sampled_from(sorted(self.open))))
        amount = data.draw(st.integers(1, p.amount), label="captured")
        capture_id = self.next_id("cap")
        debit = self.post_leg(capture_id, p.src, p.pid, amount)
        credit = self.post_leg(capture_id, p.dst, p.pid, amount)
        for record in (debit, credit):
            self.commit(record)
            self.close_hold_in_model(p.pid, record.balance_id, record.delta_minor)
        self.finished.append(Finished(capture_id, p.pid, (p.src, p.dst)))

    @precondition(lambda self: self.open or self.doomed)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.open.keys() | self.doomed.keys())))
        self.void_payment(self.open.pop(pid, None) or self.doomed.pop(pid))

    @precondition(lambda self: self.finished)
    @rule(data=st.data())
    def retry_phase2_of_finished_payment(self, data: st.DataObject) -> None:
        f = data.draw(st.sampled_from(self.finished))
        hold_id = None if f.hold_key == f.pid else f.hold_key
        for bid in f.balances:
            if bid in self.model:
                assert self.pure(self.book.decide_post, f.pid, bid, self.tick(), None, hold_id) is None
            assert self.pure(self.book.decide_void, f.hold_key, bid) is None

    # -- a shard's batch: legs decided and applied one by one, journaled as one record ----
    def journal_applied(self, record: Record) -> None:
        """A batch record of legs the book applied already: only the replica applies it."""
        self.records.append(record)
        self.replica.apply(CODEC.decode(CODEC.encode(record)))

    @rule(data=st.data(), payments=st.integers(1, 6), coordinator=st.sampled_from(COORDINATORS))
    def batch_of_payments(self, data: st.DataObject, payments: int, coordinator: int) -> None:
        """Phase one of several payments (a HeldBatch), then the posts of those holding both
        legs (a PostedBatch) and the voids of the rest (a VoidedBatch): a balance paid twice
        in one batch sees the first leg in the second's check and in its balance after."""
        epoch = self.fences.get(coordinator, 0)
        batch, held = [], []
        for _ in range(payments):
            src = data.draw(st.sampled_from(CHOICES), label="src")
            dst = data.draw(st.sampled_from([b for b in CHOICES if b != src]), label="dst")
            currency = self.model[src].currency if src in self.model else "USD"
            p = Payment(self.next_id("pay"), src, dst, data.draw(AMOUNTS), currency, coordinator, epoch)
            for side, bid in ((DEBIT, src), (CREDIT, dst)):
                args = (p.pid, bid, p.amount, p.currency, p.coordinator, p.epoch)
                check, due = self.expected_hold_check(*args, debit=side == DEBIT)
                refusal = self.book.hold_leg(side, *args, None)
                assert (Check.OK if refusal is None else refusal) == check and (refusal is None) == due
                if due:
                    m = self.model[bid]
                    if side == DEBIT:
                        m.reserved += p.amount
                    else:
                        m.incoming += p.amount
                    self.reservations[(p.pid, bid)] = (side, p.amount, p.coordinator, p.epoch)
                    p.held.append(bid)
                    held.append((p.pid, bid, p.amount, side))
            batch.append(p)
        if held:
            ids, bids, amounts, sides = (list(c) for c in zip(*held, strict=True))
            self.journal_applied(HeldBatch(len(self.records) + 1, coordinator, epoch, ids, bids, amounts, bytes(sides)))
        posted, voided = [], []
        for p in batch:
            if p.held == [p.src, p.dst]:
                for bid in (p.src, p.dst):
                    result = self.book.post_leg(p.pid, bid)
                    side = self.reservations[(p.pid, bid)][0]
                    delta = -p.amount if side == DEBIT else p.amount
                    self.close_hold_in_model(p.pid, bid, delta)
                    assert result == (delta, self.model[bid].amount)
                    posted.append((p.pid, bid, delta, self.model[bid].amount))
                    assert self.book.post_leg(p.pid, bid) is None  # posted: a retry changes nothing
        at_ms = self.tick()
        if posted:
            ids, bids, deltas, after = (list(c) for c in zip(*posted, strict=True))
            self.journal_applied(PostedBatch(len(self.records) + 1, at_ms, ids, bids, deltas, after))
        for p in batch:
            if p.held != [p.src, p.dst]:
                for bid in p.held:
                    assert self.book.void_leg(p.pid, bid)
                    self.close_hold_in_model(p.pid, bid, 0)
                    voided.append((p.pid, bid))
                    assert not self.book.void_leg(p.pid, bid)
            p.held.clear()
            self.finished.append(Finished(p.pid, p.pid, (p.src, p.dst)))
        if voided:
            ids, bids = (list(c) for c in zip(*voided, strict=True))
            self.journal_applied(VoidedBatch(len(self.records) + 1, ids, bids))
        self.money_is_conserved()

    # -- administration -----------------------------------------------------------------
    @rule(
        bid=st.sampled_from(CHOICES),
        active=st.none() | st.booleans(),
        limit=st.none() | st.integers(0, 500),
    )
    def change_balance(self, bid: str, active: bool | None, limit: int | None) -> None:
        code, record = self.pure(self.book.decide_change, bid, active, limit)
        m = self.model.get(bid)
        if m is None:
            assert (code, record) == (Check.BALANCE_NOT_FOUND, None)
            return
        event(f"change: {code.name}, {'record' if record else 'no record'}")
        new_active = m.active if active is None else active
        new_limit = m.limit if limit is None else limit
        if (new_active, new_limit) == (m.active, m.limit):
            assert (code, record) == (Check.OK, None)
        elif not m.unlimited and m.amount - m.reserved < -new_limit:
            assert (code, record) == (Check.NOT_ENOUGH_MONEY, None)
        else:
            assert (code, record) == (Check.OK, BalanceChanged(bid, new_active, new_limit))
            self.commit(record)
            m.active, m.limit = new_active, new_limit

    @rule(bid=st.sampled_from(CHOICES), active=st.booleans())
    def change_account_activity(self, bid: str, active: bool) -> None:
        record = self.pure(self.book.decide_account_activity, bid, active)
        m = self.model.get(bid)
        if m is None or m.account_active == active:
            assert record is None
            return
        assert record == AccountActivity(bid, active)
        self.commit(record)
        m.account_active = active

    @rule(data=st.data(), coordinator=st.sampled_from(COORDINATORS))
    def fence(self, data: st.DataObject, coordinator: int) -> None:
        current = self.fences.get(coordinator, 0)
        epoch = data.draw(st.integers(0, current + 2), label="epoch")
        record = self.pure(self.book.decide_fence, coordinator, epoch)
        if epoch <= current:
            assert record is None
            return
        assert record == Fenced(coordinator, epoch)
        self.commit(record)
        self.fences[coordinator] = epoch

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def money_is_conserved(self) -> None:
        totals: dict[str, int] = {}
        for b in self.book.balances.values():
            totals[b.currency] = totals.get(b.currency, 0) + b.amount
        assert all(total == 0 for total in totals.values()), totals
        assert all(total == 0 for total in self.book.totals_by_currency().values())

    @invariant()
    def escrow_is_never_negative_and_limits_hold(self) -> None:
        for bid, b in self.book.balances.items():
            assert b.reserved >= 0 and b.incoming >= 0, bid
            if not b.unlimited:
                assert b.amount - b.reserved >= -b.overdraft_limit, bid
                assert b.available >= 0, bid

    @invariant()
    def book_matches_model(self) -> None:
        assert set(self.book.balances) == set(self.model)
        for bid, m in self.model.items():
            view = self.book.view(bid)
            assert view is not None
            assert (view.currency, view.amount_minor, view.reserved_minor) == (m.currency, m.amount, m.reserved)
            assert view.available_minor == m.amount - m.reserved + m.limit
            assert (view.active, view.account_active, view.unlimited) == (m.active, m.account_active, m.unlimited)
            assert self.book.balances[bid].incoming == m.incoming
        assert self.book.view("missing") is None
        held = {key: (h.side, h.amount_minor, h.coordinator, h.epoch) for key, h in self.book.reservations.items()}
        assert held == self.reservations
        assert self.book.fences == self.fences
        assert sorted((h.payment_id, h.balance_id) for h in self.book.open_reservations()) == sorted(self.reservations)
        for bid in self.model:  # the per-balance index a read waits on agrees with the holds
            assert self.book.reservations_on(bid) == {pid for pid, b in self.reservations if b == bid}
        assert all(self.book.reservations_by_balance.values()), "no empty entries left behind"

    @invariant()
    def replayed_records_give_the_same_state(self) -> None:
        assert snapshot_bytes(self.replica) == snapshot_bytes(self.book)

    @invariant()
    def snapshot_round_trips(self) -> None:
        snap = self.book.snapshot()
        restored = BalanceBook.from_snapshot(_snapshot_decoder.decode(msgspec.msgpack.encode(snap)))
        assert restored.snapshot() == snap
        assert restored.reservations_by_balance == self.book.reservations_by_balance
        assert BalanceBook.from_snapshot(snap).snapshot() == snap

    def teardown(self) -> None:
        """Once every payment is voided, nothing is held anywhere and money still adds up."""
        if sys.exception() is not None or not self.model:
            return  # a step already failed (keep its report clean), or nothing was set up
        for p in [*self.open.values(), *self.doomed.values()]:
            self.void_payment(p)
        self.open.clear()
        self.doomed.clear()
        assert self.book.reservations == {} and self.book.reservations_by_balance == {}
        for b in self.book.balances.values():
            assert b.reserved == 0 and b.incoming == 0
        self.money_is_conserved()
        self.replay_everything_into_a_fresh_book()


BookMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestBookMachine = BookMachine.TestCase


# -- examples -----------------------------------------------------------------------------


def new_book(*specs: tuple[str, str, int, bool]) -> BalanceBook:
    """A book with an issuer per currency plus `specs` (id, currency, overdraft, unlimited)."""
    book = BalanceBook()
    for spec in [("iss_usd", "USD", 0, True), ("iss_eur", "EUR", 0, True), *specs]:
        record = book.decide_open(*spec)
        assert record is not None
        book.apply(record)
    return book


def pay(book: BalanceBook, pid: str, src: str, dst: str, amount: int, currency: str = "USD") -> tuple[Check, Check]:
    """A whole payment within one book: reserve and prepare, then post or void both."""
    debit, reserved = book.decide_reserve(pid, src, amount, currency, 0, 0)
    if reserved is not None:
        book.apply(reserved)
    credit, prepared = book.decide_prepare(pid, dst, amount, currency, 0, 0)
    if prepared is not None:
        book.apply(prepared)
    ok = debit == Check.OK and credit == Check.OK
    for bid in (src, dst):
        record = book.decide_post(pid, bid, 1) if ok else book.decide_void(pid, bid)
        if record is not None:
            book.apply(record)
    return debit, credit


def reserve(book: BalanceBook, pid: str, bid: str, amount: int, currency: str = "USD") -> Check:
    code, record = book.decide_reserve(pid, bid, amount, currency, 0, 0)
    if record is not None:
        book.apply(record)
    return code


def test_reserve_more_than_available_is_not_enough_money() -> None:
    book = new_book(("a", "USD", 0, False))
    assert pay(book, "dep", "iss_usd", "a", 100) == (Check.OK, Check.OK)
    before = snapshot_bytes(book)
    assert book.decide_reserve("p1", "a", 101, "USD", 0, 0) == (Check.NOT_ENOUGH_MONEY, None)
    assert snapshot_bytes(book) == before
    assert book.decide_reserve("p1", "a", 100, "USD", 0, 0)[0] == Check.OK


def test_reservations_are_escrow() -> None:
    book = new_book(("a", "USD", 0, False))
    pay(book, "dep", "iss_usd", "a", 100)
    assert reserve(book, "p1", "a", 60) == Check.OK
    view = book.view("a")
    assert view is not None and (view.amount_minor, view.reserved_minor, view.available_minor) == (100, 60, 40)
    assert reserve(book, "p2", "a", 50) == Check.NOT_ENOUGH_MONEY
    assert reserve(book, "p3", "a", 40) == Check.OK
    assert reserve(book, "p4", "a", 1) == Check.NOT_ENOUGH_MONEY
    # Voiding an escrow gives its amount back to `available`.
    voided = book.decide_void("p1", "a")
    assert voided is not None
    book.apply(voided)
    assert reserve(book, "p2", "a", 50) == Check.OK
    view = book.view("a")
    assert view is not None and (view.amount_minor, view.reserved_minor, view.available_minor) == (100, 90, 10)


def test_overdraft_limit_counts_as_available() -> None:
    book = new_book(("a", "USD", 50, False), ("b", "USD", 0, False))
    assert pay(book, "p1", "a", "b", 51) == (Check.NOT_ENOUGH_MONEY, Check.OK)
    assert pay(book, "p2", "a", "b", 50) == (Check.OK, Check.OK)
    view = book.view("a")
    assert view is not None and (view.amount_minor, view.available_minor) == (-50, 0)
    assert pay(book, "p3", "b", "a", 51) == (Check.NOT_ENOUGH_MONEY, Check.OK)  # b has only 50


def test_disabled_balance_is_refused_on_both_sides() -> None:
    book = new_book(("a", "USD", 0, False), ("b", "USD", 0, False))
    pay(book, "dep", "iss_usd", "a", 100)
    code, record = book.decide_change("a", False, None)
    assert code == Check.OK and record == BalanceChanged("a", False, 0)
    book.apply(record)
    before = snapshot_bytes(book)
    assert book.decide_reserve("p1", "a", 10, "USD", 0, 0) == (Check.BALANCE_DISABLED, None)
    assert book.decide_prepare("p2", "a", 10, "USD", 0, 0) == (Check.BALANCE_DISABLED, None)
    assert snapshot_bytes(book) == before
    code, record = book.decide_change("a", True, None)
    assert code == Check.OK and record is not None
    book.apply(record)
    assert pay(book, "p3", "a", "b", 10) == (Check.OK, Check.OK)


def test_disabled_account_keeps_the_balance_status_apart() -> None:
    book = new_book(("a", "USD", 0, False))
    record = book.decide_account_activity("a", False)
    assert record == AccountActivity("a", False)
    book.apply(record)
    assert book.decide_account_activity("a", False) is None
    assert book.decide_prepare("p1", "a", 10, "USD", 0, 0) == (Check.BALANCE_DISABLED, None)
    view = book.view("a")
    assert view is not None and view.active and not view.account_active
    record = book.decide_account_activity("a", True)
    assert record is not None
    book.apply(record)
    assert book.decide_prepare("p1", "a", 10, "USD", 0, 0)[0] == Check.OK


def test_currencies_must_match() -> None:
    book = new_book(("a", "USD", 0, False), ("e", "EUR", 0, False))
    pay(book, "dep", "iss_usd", "a", 100)
    assert book.decide_reserve("p1", "a", 10, "EUR", 0, 0) == (Check.CURRENCIES_DONT_MATCH, None)
    assert book.decide_prepare("p1", "e", 10, "USD", 0, 0) == (Check.CURRENCIES_DONT_MATCH, None)
    assert pay(book, "p2", "a", "e", 10) == (Check.OK, Check.CURRENCIES_DONT_MATCH)
    view = book.view("a")
    assert view is not None and (view.amount_minor, view.reserved_minor) == (100, 0)
    assert book.totals_by_currency() == {"USD": 0, "EUR": 0}


def test_unknown_balance_is_not_found() -> None:
    book = new_book()
    assert book.decide_reserve("p1", "nope", 1, "USD", 0, 0) == (Check.BALANCE_NOT_FOUND, None)
    assert book.decide_prepare("p1", "nope", 1, "USD", 0, 0) == (Check.BALANCE_NOT_FOUND, None)
    assert book.decide_change("nope", False, None) == (Check.BALANCE_NOT_FOUND, None)
    assert book.decide_account_activity("nope", False) is None
    assert book.decide_post("p1", "nope", 1) is None
    assert book.decide_void("p1", "nope") is None


def test_prepare_that_could_overflow_int64_is_refused() -> None:
    book = new_book(("a", "USD", 0, False))
    pay(book, "dep", "iss_usd", "a", INT64_MAX - 5)
    assert book.decide_prepare("p1", "a", 6, "USD", 0, 0) == (Check.AMOUNT_OVERFLOW, None)
    code, record = book.decide_prepare("p2", "a", 3, "USD", 0, 0)
    assert code == Check.OK and record is not None
    book.apply(record)
    # Prepared credits count too, though they are not posted yet.
    assert book.decide_prepare("p3", "a", 3, "USD", 0, 0) == (Check.AMOUNT_OVERFLOW, None)
    code, record = book.decide_prepare("p4", "a", 2, "USD", 0, 0)
    assert code == Check.OK and record is not None


def test_lowering_the_overdraft_below_what_is_spent_is_refused() -> None:
    book = new_book(("a", "USD", 100, False), ("b", "USD", 0, False))
    pay(book, "p1", "a", "b", 60)
    assert reserve(book, "p2", "a", 20) == Check.OK  # escrow counts as spent
    assert book.decide_change("a", None, 79) == (Check.NOT_ENOUGH_MONEY, None)
    assert book.decide_change("a", False, 79) == (Check.NOT_ENOUGH_MONEY, None)
    assert book.decide_change("a", None, 80) == (Check.OK, BalanceChanged("a", True, 80))
    assert book.decide_change("a", None, 100) == (Check.OK, None)  # nothing to change


def test_fenced_epochs_are_refused() -> None:
    book = new_book(("a", "USD", 0, False))
    assert book.decide_fence(7, 0) is None  # epoch 0 is where every coordinator starts
    record = book.decide_fence(7, 2)
    assert record == Fenced(7, 2)
    book.apply(record)
    assert book.decide_fence(7, 2) is None and book.decide_fence(7, 1) is None
    assert book.decide_reserve("p1", "iss_usd", 5, "USD", 7, 1) == (Check.FENCED, None)
    assert book.decide_prepare("p1", "a", 5, "USD", 7, 1) == (Check.FENCED, None)
    assert book.decide_reserve("p1", "iss_usd", 5, "USD", 7, 2)[0] == Check.OK
    assert book.decide_reserve("p1", "iss_usd", 5, "USD", 8, 0)[0] == Check.OK  # other coordinators unaffected
    assert book.decide_fence(7, 3) == Fenced(7, 3)


def test_partial_capture_releases_the_rest_of_the_hold() -> None:
    book = new_book(("a", "USD", 0, False), ("b", "USD", 0, False))
    pay(book, "dep", "iss_usd", "a", 100)
    reserve(book, "hold_1", "a", 70)
    code, prepared = book.decide_prepare("hold_1", "b", 70, "USD", 0, 0)
    assert code == Check.OK and prepared is not None
    book.apply(prepared)
    debit = book.decide_post("cap_1", "a", 5, 30, "hold_1")
    credit = book.decide_post("cap_1", "b", 5, 30, "hold_1")
    assert debit == Posted("cap_1", "a", -30, 70, 5, "hold_1")
    assert credit == Posted("cap_1", "b", 30, 30, 5, "hold_1")
    book.apply(debit)
    book.apply(credit)
    a, b = book.view("a"), book.view("b")
    assert a is not None and (a.amount_minor, a.reserved_minor, a.available_minor) == (70, 0, 70)
    assert b is not None and b.amount_minor == 30 and book.balances["b"].incoming == 0
    assert book.reservations == {}
    assert book.decide_post("cap_1", "a", 6, 30, "hold_1") is None


def test_posting_more_than_the_hold_is_a_bug() -> None:
    book = new_book(("a", "USD", 0, False))
    reserve(book, "p1", "iss_usd", 10)
    with pytest.raises(AssertionError):
        book.decide_post("p1", "iss_usd", 1, 11)
    with pytest.raises(AssertionError):
        book.decide_post("p1", "iss_usd", 1, 0)


def test_replay_that_diverges_from_the_journal_stops_loudly() -> None:
    book = new_book(("a", "USD", 0, False))
    reserve(book, "p1", "iss_usd", 10)
    with pytest.raises(AssertionError):
        book.apply(Posted("p1", "iss_usd", -10, -9, 1))  # wrong balance_after


def test_apply_refuses_records_of_other_journals() -> None:
    with pytest.raises(AssertionError):
        new_book().apply(EpochStarted(1))


def test_opening_twice_is_idempotent_and_applying_twice_is_a_bug() -> None:
    book = BalanceBook()
    record = book.decide_open("a", "USD", 0, False)
    assert record == BalanceOpened("a", "USD", 0, False)
    book.apply(record)
    assert book.decide_open("a", "USD", 0, False) is None
    assert book.decide_open("a", "EUR", 5, True) is None
    with pytest.raises(AssertionError):
        book.apply(record)


def test_issuer_cannot_issue_past_int64() -> None:
    # Two deposits of the largest amount the API accepts, into two different balances.
    # Each receiver stays within int64 (prepare guards it); the issuer's reserve refuses
    # the second, which would take it below -2**63 where no record could express it.
    book = new_book(("a", "USD", 0, False), ("b", "USD", 0, False))
    codes = []
    for pid, dst in (("dep_1", "a"), ("dep_2", "b")):
        code, reserved = book.decide_reserve(pid, "iss_usd", INT64_MAX, "USD", 0, 0)
        codes.append(code)
        if reserved is None:
            continue
        book.apply(reserved)
        prepared = book.decide_prepare(pid, dst, INT64_MAX, "USD", 0, 0)[1]
        assert prepared is not None
        book.apply(prepared)
        for bid in ("iss_usd", dst):
            posted = book.decide_post(pid, bid, 1)
            assert posted is not None
            CODEC.encode(posted)  # every decided record can be journaled
            book.apply(posted)
    assert codes == [Check.OK, Check.AMOUNT_OVERFLOW]
    msgspec.msgpack.encode(book.snapshot())
