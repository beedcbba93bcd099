"""A coordinator's memory as a pure class, and the decisions it journals (docs/design.md §4).

`PaymentBook` is what a coordinator's journal rebuilds: `apply(record, now_ms)` is the one
way it changes, live (right after the record is appended) and in replay alike, so a
restarted coordinator holds exactly what the one before did. `snapshot()` and
`PaymentBook(limits, snapshot)` bound the replay. The functions below decide payments,
transfers, holds and recovery's aborts into the records the coordinator journals; they
read the time they are given and change nothing, so the same inputs always make the same
records (TigerBeetle's state machine has this shape; so does our shard's `BalanceBook`).

Nothing here awaits or does I/O: what is true between two records is decided here, and the
actor (actors/coordinator/) only moves records between the journal, the shards and callers.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

import msgspec

from ledger.activity import Activity, Minute
from ledger.book import DEBIT, OpenReservation
from ledger.ids import is_hold_id
from ledger.messages import HoldRef, HoldRequest, PaymentRequest, TransferRequest
from ledger.outcomes import ABORTED_IN_RECOVERY, JOURNAL_UNAVAILABLE, decided_record, pending_transfer
from ledger.records import (
    Completed,
    Completions,
    Decided,
    DecidedBatch,
    EpochStarted,
    HoldClosed,
    HoldPlaced,
    HoldRecord,
    PaymentRecord,
    Record,
    TransferDecided,
    TransferLeg,
    TransferRecord,
    payment_balances,
    payment_sides,
)
from ledger.results import Check, PaymentStatus, decide, decide_fx, decide_legs

Dated = TypeVar("Dated", PaymentRecord, TransferRecord, HoldRecord)  # what the caches keep
HOLD_HELD: Final = "held"  # an authorization hold's status while it still holds money


@dataclass(frozen=True)
class BookLimits:
    recent_max: int  # payments, transfers and closed holds kept in memory (older: read from the journal)
    keys_max: int  # idempotency keys kept in memory (older ones inside the window: read from the journal)
    key_window_ms: int  # how long an idempotency key replays its first outcome


class CoordinatorSnapshot(msgspec.Struct, frozen=True, array_like=True):
    """A book at one journal position. Ordered collections are oldest first, as their
    caches evict."""

    epoch: int
    unfinished: list[PaymentRecord]
    recent: list[PaymentRecord]
    open_holds: list[HoldRecord]
    recent_holds: list[HoldRecord]
    keys: list[tuple[str, bytes | None, str, int]]  # key, fingerprint, payment/hold/transfer id, at ms
    keys_evicted_until_ms: int
    recent_transfers: list[TransferRecord] = []
    activity: list[Minute] = []  # payments decided per minute over the last hour


class OnDisk:
    """`PaymentBook.key`'s answer when a key may be in the journal only (evicted from memory
    while still inside its window): the caller looks there."""


ON_DISK: Final = OnDisk()


class PaymentBook:
    def __init__(self, limits: BookLimits, snapshot: CoordinatorSnapshot | None = None) -> None:
        self.limits = limits
        s = snapshot or CoordinatorSnapshot(0, [], [], [], [], [], 0)
        self.epoch = s.epoch
        self.unfinished: dict[str, PaymentRecord] = {p.id: p for p in s.unfinished}  # decided, phase two not durable
        self.recent: OrderedDict[str, PaymentRecord] = OrderedDict((p.id, p) for p in s.recent)
        self.open_holds: dict[str, HoldRecord] = {h.id: h for h in s.open_holds}  # held: never presumed aborted
        self.recent_holds: OrderedDict[str, HoldRecord] = OrderedDict((h.id, h) for h in s.recent_holds)
        self.recent_transfers: OrderedDict[str, TransferRecord] = OrderedDict((t.id, t) for t in s.recent_transfers)
        self.keys: OrderedDict[str, tuple[bytes | None, str, int]] = OrderedDict(
            (key, (fingerprint, some_id, at_ms)) for key, fingerprint, some_id, at_ms in s.keys
        )
        self.keys_evicted_until_ms = s.keys_evicted_until_ms  # newest key dropped while inside its window
        # Every payment, transfer and hold created after this is in memory if it was decided
        # (`knows`); one created before may be in the journal only. The owner raises it to
        # when it started: what an earlier incarnation decided was created before that.
        self.ids_evicted_until_ms = 0
        self.activity = Activity(s.activity)

    # -- the one way the book changes ------------------------------------------------------
    def apply(self, record: Record, now_ms: int) -> None:
        if isinstance(record, Decided):
            self._decided(record.payment, now_ms)
        elif isinstance(record, DecidedBatch):
            for p in record.payments:
                self._decided(p, now_ms)
        elif isinstance(record, TransferDecided):
            t = record.transfer
            self._remember(self.recent_transfers, t.id, t)
            self._remember_key(t.idempotency_key, t.fingerprint, t.id, t.created_at_ms, now_ms)
        elif isinstance(record, Completions):
            for payment_id in record.payment_ids:
                self.unfinished.pop(payment_id, None)
        elif isinstance(record, Completed):
            self.unfinished.pop(record.payment_id, None)
        elif isinstance(record, HoldPlaced):
            h = record.hold
            self._remember_hold(h)
            self._remember_key(h.idempotency_key, h.fingerprint, h.id, h.created_at_ms, now_ms)
        elif isinstance(record, HoldClosed):
            self._remember_hold(record.hold)
            closed_ms = record.hold.closed_at_ms or 0
            self._remember_key(record.idempotency_key, record.fingerprint, record.hold.id, closed_ms, now_ms)
        elif isinstance(record, EpochStarted):
            assert record.epoch > self.epoch, "epochs only grow"
            self.epoch = record.epoch
        else:
            raise AssertionError(f"not a coordinator record: {record!r}")

    def _decided(self, p: PaymentRecord, now_ms: int) -> None:
        self.unfinished[p.id] = p
        self._remember(self.recent, p.id, p)
        self.activity.add(p)
        self._remember_key(p.idempotency_key, p.fingerprint, p.id, p.created_at_ms, now_ms)

    def redrive(self, payment: PaymentRecord) -> None:
        """Recovery found reservations of a decided payment no longer in memory: its phase
        two is owed again (the shards' posts and voids are idempotent)."""
        self.unfinished[payment.id] = payment
        self._remember(self.recent, payment.id, payment)

    def snapshot(self) -> CoordinatorSnapshot:
        return CoordinatorSnapshot(
            epoch=self.epoch,
            unfinished=list(self.unfinished.values()),
            recent=list(self.recent.values()),
            open_holds=list(self.open_holds.values()),
            recent_holds=list(self.recent_holds.values()),
            keys=[(key, *value) for key, value in self.keys.items()],
            keys_evicted_until_ms=self.keys_evicted_until_ms,
            recent_transfers=list(self.recent_transfers.values()),
            activity=self.activity.minutes(),
        )

    # -- reads --------------------------------------------------------------------------------
    def knows(self, some_id: str) -> bool:
        """Whether a payment, transfer or hold of this id is journaled and still in memory."""
        return (
            some_id in self.unfinished
            or some_id in self.recent
            or some_id in self.open_holds
            or some_id in self.recent_holds
            or some_id in self.recent_transfers
        )

    def hold(self, hold_id: str) -> HoldRecord | None:
        return self.open_holds.get(hold_id) or self.recent_holds.get(hold_id)

    def key(self, key: str, now_ms: int) -> tuple[bytes | None, str] | OnDisk | None:
        """What `key` points at inside its window: (fingerprint, id); None if it is new (or
        expired, which forgets it); ON_DISK if only the journal can tell."""
        window_start_ms = now_ms - self.limits.key_window_ms
        known = self.keys.get(key)
        if known is not None:
            if known[2] >= window_start_ms:
                return known[0], known[1]
            del self.keys[key]
            return None
        return ON_DISK if self.keys_evicted_until_ms >= window_start_ms else None

    def due_holds(self, now_ms: int, busy: Iterable[str] = ()) -> list[HoldRecord]:
        """Open holds past their time, as expired, leaving out the `busy` ones (being
        captured or voided: a partial capture's post may still be on its way)."""
        skip = set(busy)
        return [
            msgspec.structs.replace(h, status="expired", closed_at_ms=now_ms)
            for h in self.open_holds.values()
            if h.expires_at_ms <= now_ms and h.id not in skip
        ]

    # -- inside apply -------------------------------------------------------------------------
    def _remember(self, cache: OrderedDict[str, Dated], key: str, value: Dated) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.limits.recent_max:
            self._forget(cache.popitem(last=False)[1])

    def _forget(self, dropped: Dated) -> None:
        self.ids_evicted_until_ms = max(self.ids_evicted_until_ms, dropped.created_at_ms)

    def _remember_hold(self, hold: HoldRecord) -> None:
        if hold.status == HOLD_HELD:
            self.open_holds[hold.id] = hold
        else:
            self.open_holds.pop(hold.id, None)
        self.recent_holds[hold.id] = hold
        self.recent_holds.move_to_end(hold.id)
        while len(self.recent_holds) > self.limits.recent_max:
            self._forget(self.recent_holds.popitem(last=False)[1])  # open ones stay in open_holds

    def _remember_key(
        self, key: str | None, fingerprint: bytes | None, some_id: str, created_at_ms: int, now_ms: int
    ) -> None:
        if key is None:
            return
        self.keys[key] = (fingerprint, some_id, created_at_ms)
        self.keys.move_to_end(key)
        window_start_ms = now_ms - self.limits.key_window_ms
        while self.keys:
            oldest_key, (_, _, oldest_ms) = next(iter(self.keys.items()))
            if oldest_ms >= window_start_ms and len(self.keys) <= self.limits.keys_max:
                break
            del self.keys[oldest_key]
            if oldest_ms >= window_start_ms:  # evicted while still inside the window
                self.keys_evicted_until_ms = max(self.keys_evicted_until_ms, oldest_ms)


# -- decisions: the records a coordinator journals, made from what phase one answered ------
Codes = dict[tuple[str, str], Check]  # (payment id, balance id) -> that leg's phase-one check
Leg = tuple[str, str, str, int, str]  # phase one of one pair of sides: (id, from, to, amount, currency)


def legs_of(r: PaymentRequest) -> list[Leg]:
    """Phase one's pairs of sides for a payment: one, or two for an exchange payment."""
    if r.fx is None:
        return [(r.payment_id, r.balance_from, r.balance_to, r.amount_minor, r.currency)]
    return [(r.payment_id, *side) for side in payment_sides(r)]


def checks_of(r: PaymentRequest, codes: Codes) -> list[Check]:
    return [codes[(r.payment_id, b)] for b in payment_balances(r)]


def reserved(codes: Codes, ids: Container[str]) -> list[HoldRef]:
    """The sides phase one reserved or prepared for `ids`: what aborting them must void."""
    return [HoldRef(some_id, b) for (some_id, b), code in codes.items() if code == Check.OK and some_id in ids]


def sides_of(holds: list[HoldRecord]) -> list[HoldRef]:
    """Both sides of each authorization hold: what closing it without a capture releases."""
    return [HoldRef(h.id, b) for h in holds for b in (h.balance_from, h.balance_to)]


def unavailable(r: PaymentRequest, codes: Codes) -> bool:
    """A shard could not take part in `r` (its journal is unwritable): `r` is aborted."""
    return Check.UNAVAILABLE in checks_of(r, codes)


def _status_of(r: PaymentRequest, codes: Codes, expired: set[str]) -> tuple[PaymentStatus, str | None]:
    if r.payment_id in expired:
        return PaymentStatus.QUOTE_EXPIRED, "quote_expired"
    if r.fx is None:
        return decide(codes[(r.payment_id, r.balance_from)], codes[(r.payment_id, r.balance_to)])
    return decide_fx(*checks_of(r, codes))


def decide_payments(
    requests: list[PaymentRequest], codes: Codes, expired: set[str], aborted: set[str], now_ms: int
) -> list[list[Record]]:
    """One frame per payment. An aborted one (a shard or the registry could not take part)
    is `system_failure`/JOURNAL_UNAVAILABLE without its key: the caller answers 503 and
    the key stays free for the retry, while a client already told 202 finds it final."""
    frames: list[list[Record]] = []
    for r in requests:
        if r.payment_id in aborted:
            keyless = msgspec.structs.replace(r, idempotency_key=None, fingerprint=None)
            frames.append([Decided(decided_record(keyless, PaymentStatus.SYSTEM_FAILURE, JOURNAL_UNAVAILABLE, now_ms))])
        else:
            frames.append([Decided(decided_record(r, *_status_of(r, codes, expired), now_ms))])
    return frames


def decide_transfers(
    requests: list[TransferRequest], codes: Codes, expired: set[str], aborted: set[str], now_ms: int
) -> list[list[Record]]:
    """One frame per transfer: its legs' decisions and its own, durable all or none. A
    transfer succeeds only if every leg would; aborted as payments are."""
    frames: list[list[Record]] = []
    for t in requests:
        reason: str | None
        if t.transfer_id in aborted:
            status, reason, failed_leg = PaymentStatus.SYSTEM_FAILURE, JOURNAL_UNAVAILABLE, None
            t = msgspec.structs.replace(t, idempotency_key=None, fingerprint=None)
        else:
            status, reason, failed_leg = decide_legs([_status_of(r, codes, expired) for r in t.legs])
        transfer = msgspec.structs.replace(
            pending_transfer(t),
            status=status,
            reason=reason,
            failed_leg=failed_leg,
            settled_at_ms=now_ms,
            fingerprint=t.fingerprint,
        )
        legs: list[Record] = [Decided(decided_record(r, status, reason, now_ms, t)) for r in t.legs]
        frames.append([*legs, TransferDecided(transfer)])
    return frames


def aborts(holds: dict[str, list[OpenReservation]], now_ms: int) -> list[list[Record]]:
    """Recovery's presumed abort: `system_failure`/ABORTED_IN_RECOVERY for each payment
    with reservations but no decision, and for each hold (a refused hold, so that a
    redelivered call to place it answers that, as a hold). A transfer's legs (their
    reservations name it) are aborted in one frame with their transfer, so that it reads
    failed, and a redelivered call answers that instead of running it."""
    frames: list[list[Record]] = []
    legs_of_transfer: dict[str, list[PaymentRecord]] = defaultdict(list)
    for payment_id, hs in holds.items():
        debit = next((h for h in hs if h.side == DEBIT), None)
        credit = next((h for h in hs if h.side != DEBIT), None)
        record = PaymentRecord(
            id=payment_id,
            balance_from=debit.balance_id if debit else "",
            balance_to=credit.balance_id if credit else "",
            amount_minor=hs[0].amount_minor,
            currency=hs[0].currency,
            status=PaymentStatus.SYSTEM_FAILURE,
            reason=ABORTED_IN_RECOVERY,
            created_at_ms=now_ms,
            settled_at_ms=now_ms,
            transfer_id=hs[0].transfer_id,
        )
        if is_hold_id(payment_id):  # an authorization hold cut off while being placed: refused
            r = record
            hold = HoldRecord(
                r.id,
                r.balance_from,
                r.balance_to,
                r.amount_minor,
                r.currency,
                r.status,
                r.reason,
                now_ms,
                now_ms,
                now_ms,
            )
            frames.append([HoldPlaced(hold)])
            continue
        if record.transfer_id is None:
            frames.append([Decided(record)])
        else:
            legs_of_transfer[record.transfer_id].append(record)
    for transfer_id, legs in legs_of_transfer.items():
        transfer = TransferRecord(
            id=transfer_id,
            status=PaymentStatus.SYSTEM_FAILURE,
            reason=ABORTED_IN_RECOVERY,
            failed_leg=None,
            legs=[TransferLeg(p.id, p.balance_from, p.balance_to, p.amount_minor, p.currency) for p in legs],
            created_at_ms=now_ms,
            settled_at_ms=now_ms,
        )
        frames.append([*(Decided(p) for p in legs), TransferDecided(transfer)])
    return frames


def place(r: HoldRequest, debit: Check, credit: Check, now_ms: int) -> HoldPlaced:
    """An authorization hold as phase one answered: held, or closed with the reason."""
    status, reason = decide(debit, credit)
    held = status == PaymentStatus.SUCCESS
    return HoldPlaced(
        HoldRecord(
            id=r.hold_id,
            balance_from=r.balance_from,
            balance_to=r.balance_to,
            amount_minor=r.amount_minor,
            currency=r.currency,
            status=HOLD_HELD if held else str(status),
            reason=reason,
            created_at_ms=r.created_at_ms,
            expires_at_ms=r.expires_at_ms,
            closed_at_ms=None if held else now_ms,
            idempotency_key=r.idempotency_key,
            fingerprint=r.fingerprint,
            description=r.description,
            metadata=r.metadata,
        )
    )


@dataclass(frozen=True)
class CaptureRequest:
    hold_id: str
    amount_minor: int | None  # None: all the hold still holds
    payment_id: str
    created_at_ms: int
    key: str | None
    fingerprint: bytes | None
    final: bool  # release the rest (else it stays held for the next capture)


def capture(hold: HoldRecord, c: CaptureRequest, now_ms: int) -> list[Record] | str:
    """A capture of an open hold: its payment and the hold after it, as one frame; or why
    not (a refusal code)."""
    assert hold.status == HOLD_HELD, f"capture of hold {hold.id} that is {hold.status}"
    left = hold.amount_minor - (hold.captured_minor or 0)
    amount = left if c.amount_minor is None else c.amount_minor
    if not 0 < amount <= left:
        return "amount_exceeds_hold"
    final = c.final or amount == left
    captures = [*(hold.captures or ()), c.payment_id]
    payment = PaymentRecord(
        id=c.payment_id,
        balance_from=hold.balance_from,
        balance_to=hold.balance_to,
        amount_minor=amount,
        currency=hold.currency,
        status=PaymentStatus.SUCCESS,
        reason=None,
        created_at_ms=c.created_at_ms,
        settled_at_ms=now_ms,
        description=hold.description if hold.description is not None else "capture",
        metadata=hold.metadata,
        idempotency_key=c.key,
        fingerprint=c.fingerprint,
        hold_id=hold.id,
        capture_seq=None if final else len(captures),
    )
    after = msgspec.structs.replace(
        hold,
        status="captured" if final else HOLD_HELD,
        closed_at_ms=now_ms if final else None,
        captured_minor=(hold.captured_minor or 0) + amount,
        payment_id=c.payment_id,
        captures=captures,
    )
    return [Decided(payment), HoldClosed(after, at_ms=now_ms)]


def void(hold: HoldRecord, key: str | None, fingerprint: bytes | None, now_ms: int) -> HoldClosed:
    assert hold.status == HOLD_HELD, f"void of hold {hold.id} that is {hold.status}"
    closed = msgspec.structs.replace(hold, status="voided", closed_at_ms=now_ms)
    return HoldClosed(closed, key, fingerprint, now_ms)
