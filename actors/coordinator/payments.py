"""A batch of payments (or transfers) from claim to answer: the coordinator's half of a
payment's trip, read top to bottom in `Payments.trip` (docs/design.md §4).

    claim      keys and ids: a known one replays its first outcome (actors/coordinator/idempotency.py)
    quotes     an exchange payment uses its quote once (the registry journals the use)
    phase one  reserve(from) ‖ prepare(to), one call per shard for the whole batch
    abort      what a shard could not take part in: its reservations released, 503 for a retry
    decide     the records, from what phase one answered (ledger/payment_book.py, pure)
    commit     the records journaled and durable: the commit point, after which the outcome is final
    owe        phase two to the shards, carried by the next phase-one call (actors/coordinator/phase_two.py)
    answer     outcomes in request order

A transfer is a variant, not a copy: its legs are payments through the same stages, and its
decision frame holds its legs' decisions with its own. A refund is a payment, checked
against the one it refunds first. The ingress's side of the trip is gateway/payments.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from actors.coordinator.history import REFUNDS_PER_PAYMENT_MAX, History
from actors.coordinator.idempotency import Claims, Request
from actors.coordinator.phase_two import PhaseTwo
from actors.coordinator.remote import PhaseOneReply, Remote
from actors.coordinator.state import CoordinatorState, Turns
from actors.telemetry import Telemetry
from ledger.messages import PaymentRequest, SideRequest, TransferRequest
from ledger.outcomes import Outcome
from ledger.payment_book import Codes, Leg, decide_payments, decide_transfers, legs_of, reserved, unavailable
from ledger.records import Decided, DecidedBatch, PaymentRecord, Record, TransferDecided, TransferRecord
from ledger.results import CHECKS, Check, PaymentStatus

Frames = list[list[Record]]


@dataclass(frozen=True)
class Variant:
    """What differs between a batch of payments and one of transfers."""

    legs: Callable[[Sequence[Request]], list[PaymentRequest]]  # the payments phase one holds
    unit_of: Callable[[Sequence[Request]], dict[str, str]]  # payment id -> what aborts with it
    decide: Callable[[Sequence[Request], Codes, set[str], set[str], int], Frames]
    result: Callable[[list[Record]], PaymentRecord | TransferRecord]  # of one frame
    counted: Callable[[Outcome], tuple[str, int] | None]  # (status, payments) decided by this call


def _count_payment(o: Outcome) -> tuple[str, int] | None:
    return (str(o.payment.status), 1) if o.payment is not None and not o.replayed else None


def _count_transfer(o: Outcome) -> tuple[str, int] | None:  # each leg is a payment
    return (str(o.transfer.status), len(o.transfer.legs)) if o.transfer is not None and not o.replayed else None


def _decided_payment(frame: list[Record]) -> PaymentRecord:
    [record] = frame
    assert isinstance(record, Decided)
    return record.payment


def _decided_transfer(frame: list[Record]) -> TransferRecord:
    record = frame[-1]
    assert isinstance(record, TransferDecided)
    return record.transfer


PAYMENTS = Variant(
    legs=lambda rs: list(rs),  # type: ignore[arg-type]
    unit_of=lambda rs: {r.payment_id: r.payment_id for r in rs},
    decide=decide_payments,  # type: ignore[arg-type]
    result=_decided_payment,
    counted=_count_payment,
)
TRANSFERS = Variant(  # a transfer's legs abort together: any leg a shard could not take aborts all
    legs=lambda ts: [r for t in ts for r in t.legs],  # type: ignore[union-attr]
    unit_of=lambda ts: {r.payment_id: t.payment_id for t in ts for r in t.legs},  # type: ignore[union-attr]
    decide=decide_transfers,  # type: ignore[arg-type]
    result=_decided_transfer,
    counted=_count_transfer,
)


class Payments:
    def __init__(
        self,
        state: CoordinatorState,
        remote: Remote,
        claims: Claims,
        phase_two: PhaseTwo,
        history: History,
        telemetry: Telemetry,
        turns: Turns,
    ) -> None:
        self.state = state
        self.remote = remote
        self.claims = claims
        self.phase_two = phase_two
        self.history = history
        self.telemetry = telemetry
        self.turns = turns

    async def pay(self, requests: list[PaymentRequest]) -> list[Outcome]:
        return await self.trip(requests, PAYMENTS)

    async def transfer(self, requests: list[TransferRequest]) -> list[Outcome]:
        """A batch of transfers shares one phase-one call per shard, as payments do."""
        return await self.trip(requests, TRANSFERS)

    async def trip(self, requests: Sequence[Request], variant: Variant) -> list[Outcome]:
        started = time.perf_counter()
        with self.phase_two.carrier(), self.telemetry.serving():
            answers, fresh = await self.claims.sort(requests)  # claim
            results: Sequence[PaymentRecord | TransferRecord | None] = [None] * len(fresh)
            try:
                if fresh:
                    results = await self._decide(fresh, variant)
            finally:
                self.claims.release(fresh, results)
            outcomes = await self.claims.answer(answers, results)  # answer
        decided: Counter[str] = Counter()
        for o in outcomes:
            counted = variant.counted(o)
            if counted is not None:
                decided[counted[0]] += counted[1]
        for status, count in decided.items():  # one update per status: a Ray metric call is ~10 µs
            self.telemetry.payments.inc(count, {"status": status})
        if decided:  # once per call, not per payment, for the same reason
            self.telemetry.payment_latency_ms.observe((time.perf_counter() - started) * 1000)
        return outcomes

    async def _decide(self, fresh: list[Request], variant: Variant) -> list[PaymentRecord | TransferRecord]:
        self.state.require_writable()
        legs = variant.legs(fresh)
        unit_of = variant.unit_of(fresh)
        expired, no_quote = await self._use_quotes(legs)  # quotes
        held = [r for r in legs if r.payment_id not in expired]
        transfer_of = {r.payment_id: unit_of[r.payment_id] for r in held if unit_of[r.payment_id] != r.payment_id}
        codes = await self.phase_one([leg for r in held for leg in legs_of(r)], transfer_of)  # phase one
        down = (
            {
                r.payment_id
                for r in legs
                if (r.payment_id in no_quote if r.payment_id in expired else unavailable(r, codes))
            }
            if expired or Check.UNAVAILABLE in codes.values()  # (a scan in C; the usual answer is no)
            else set()
        )
        aborted = {unit_of[p] for p in down}  # abort
        if aborted:
            await self._release([r for r in legs if unit_of[r.payment_id] in aborted], codes, expired)
        frames = variant.decide(fresh, codes, expired, aborted, self.state.clock())  # decide
        if variant is PAYMENTS and len(frames) > 1:  # one record for the batch, a position each
            self.state.commit(DecidedBatch(self.state.journal.next_seq, [_decided_payment(f) for f in frames]))
        else:
            for frame in frames:
                self.state.commit(*frame)  # commit
        await self.state.durable()
        self.phase_two.owe([r.payment for frame in frames for r in frame if isinstance(r, Decided)])  # owe
        return [variant.result(frame) for frame in frames]

    # -- the stages that call other actors -------------------------------------------------
    async def _use_quotes(self, legs: list[PaymentRequest]) -> tuple[set[str], set[str]]:
        """The payments whose quote expired or was used already (decided quote_expired), and
        those the registry could not answer for (aborted as if a journal were down)."""
        quoted = [r for r in legs if r.fx is not None]
        if not quoted:
            return set(), set()
        used = await self.remote.use_quotes([(r.fx.id, r.payment_id) for r in quoted], self.state.clock())  # type: ignore[union-attr]
        if used is None:
            ids = {r.payment_id for r in quoted}
            return ids, ids
        return {r.payment_id for r, ok in zip(quoted, used, strict=True) if not ok}, set()

    async def phase_one(self, legs: list[Leg], transfer_of: dict[str, str] | None = None) -> Codes:
        """Reserve on the paying side and prepare the receiving side of every leg, one call
        per shard that also carries the phase two owed there; each side's check. The
        reservations of a transfer's legs (`transfer_of`: leg id -> transfer id) name it."""
        epoch = self.state.epoch
        debits: dict[int, list[SideRequest]] = {}
        credits: dict[int, list[SideRequest]] = {}
        for some_id, balance_from, balance_to, amount_minor, currency in legs:
            transfer_id = None if transfer_of is None else transfer_of.get(some_id)
            debits.setdefault(self.remote.shard_of(balance_from), []).append(
                SideRequest(some_id, balance_from, amount_minor, currency, transfer_id)
            )
            credits.setdefault(self.remote.shard_of(balance_to), []).append(
                SideRequest(some_id, balance_to, amount_minor, currency, transfer_id)
            )
        shards = sorted(debits.keys() | credits.keys())  # one call per shard carries both sides
        carried = self.phase_two.take_owed_to(shards)
        try:
            replies: list[PhaseOneReply | BaseException] = await asyncio.gather(
                *(self.remote.phase_one(k, epoch, debits.get(k, []), credits.get(k, []), carried[k]) for k in shards),
                return_exceptions=True,
            )
        except BaseException:
            self.phase_two.not_carried(carried)
            raise
        self.phase_two.carried(carried, replies)
        codes: Codes = {}
        for k, reply in zip(shards, replies, strict=True):
            for side, items in enumerate((debits.get(k, []), credits.get(k, []))):
                for n, item in enumerate(items):
                    # A shard that raised: refuse the leg. Legs it may have held before
                    # failing stay reserved until this coordinator's next recovery, whose
                    # fence finds them undecided and releases them.
                    code = Check.UNAVAILABLE if isinstance(reply, BaseException) else CHECKS[reply[side][n]]
                    codes[(item.payment_id, item.balance_id)] = code
        return codes

    async def _release(self, aborted: list[PaymentRequest], codes: Codes, expired: set[str]) -> None:
        """Before an abort is answered: void the sides that did reserve, and give back the
        quotes used, so that the retry (same key, a new payment id) may use them."""
        await self.remote.void(reserved(codes, {r.payment_id for r in aborted}))
        uses = [(r.fx.id, r.payment_id) for r in aborted if r.fx is not None and r.payment_id not in expired]
        if uses:
            await self.remote.release_quotes(uses)

    # -- refunds ------------------------------------------------------------------------------
    async def refund(self, r: PaymentRequest) -> Outcome:
        """Give back all or part of a successful payment this coordinator decided: a payment
        from its receiver to its payer (`r.amount_minor` 0: whatever is left). Refunds of one
        payment run one at a time, so their successful sum never exceeds it; a refused one
        (the receiver spent the money) counts for nothing."""
        assert r.refund_of is not None
        async with self.turns.one_at_a_time(r.refund_of):
            if r.idempotency_key is not None and await self.claims.known(r.idempotency_key) is not None:
                return (await self.pay([r]))[0]  # a retry: its first outcome, whatever it was
            original = await self.history.payment(r.refund_of)
            if (
                original is None
                or original.status != PaymentStatus.SUCCESS
                or original.refund_of is not None
                or original.fx is not None  # given back by an exchange the other way, at a new quote
            ):
                return Outcome(payment=original, refused="not_refundable")
            refunds = await self.history.refunds_of(r.refund_of)
            left = original.amount_minor - sum(p.amount_minor for p in refunds if p.status == PaymentStatus.SUCCESS)
            amount = r.amount_minor or left
            if amount <= 0 or amount > left or len(refunds) >= REFUNDS_PER_PAYMENT_MAX:
                return Outcome(payment=original, refused="refund_exceeds_payment")
            return (await self.pay([msgspec.structs.replace(r, amount_minor=amount)]))[0]
