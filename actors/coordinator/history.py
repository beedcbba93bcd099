"""What a coordinator answers about what it decided: recent records from its book, the
rest from its journal's history index, requests in flight as `pending`.
"""

from __future__ import annotations

import asyncio

from actors.coordinator.state import CoordinatorState
from ledger.messages import PaymentQuery, PaymentRequest
from ledger.outcomes import pending_record, pending_transfer
from ledger.payment_book import HOLD_HELD
from ledger.records import Decided, HoldClosed, HoldPlaced, HoldRecord, PaymentRecord, TransferDecided, TransferRecord
from ledger.results import PaymentStatus

REFUNDS_PER_PAYMENT_MAX = 100  # partial refunds of one payment (each is checked against all before it)
KEY_RECORDS_MAX = 8  # records one idempotency key can tag besides its payment (hold, close)


def _matches(q: PaymentQuery, payment_id: str, p: PaymentRequest | PaymentRecord) -> bool:
    """Whether a payment passes the filters a history tag did not already apply."""
    if q.balance_id is not None and q.balance_id not in (p.balance_from, p.balance_to):
        return False
    if q.status is not None and getattr(p, "status", PaymentStatus.PENDING) != q.status:
        return False
    if q.idempotency_key is not None and p.idempotency_key != q.idempotency_key:
        return False
    return (q.before_id is None or payment_id < q.before_id) and (q.after_id is None or payment_id > q.after_id)


class History:
    def __init__(self, state: CoordinatorState) -> None:
        self.state = state
        self.book = state.book
        self.journal = state.journal
        self.inflight = state.inflight

    async def payment(self, payment_id: str) -> PaymentRecord | None:
        known = self.book.recent.get(payment_id)
        if known is not None:
            return known
        pending = self.inflight.payments.get(payment_id)
        if pending is not None:
            return pending_record(pending)
        return await self.decision(payment_id)

    async def transfer(self, transfer_id: str) -> TransferRecord | None:
        known = self.book.recent_transfers.get(transfer_id)
        if known is not None:
            return known
        pending = self.inflight.transfers.get(transfer_id)
        if pending is not None:
            return pending_transfer(pending)
        found = await self.journal.tagged("tr", limit=1, only_id=transfer_id)
        if not found:
            return None
        record = found[0].record
        assert isinstance(record, TransferDecided)
        return record.transfer

    async def hold(self, hold_id: str) -> HoldRecord | None:
        releasing = self.state.releasing.get(hold_id)
        if releasing is not None:  # closed, its sides on their way out: bounded as a shard's read
            await asyncio.wait([releasing], timeout=self.state.settings.read_settle_wait_ms / 1000)
        known = self.book.hold(hold_id)
        if known is not None:
            return known
        for kind in ("hc", "hp"):  # closed, else as placed
            found = await self.journal.query(hold_id, kind, limit=1)
            if found:
                record = found[0].record
                assert isinstance(record, HoldPlaced | HoldClosed)
                return record.hold
        return None

    async def key(self, key: str, window_start_ms: int) -> tuple[bytes | None, str] | None:
        """(fingerprint, id) of the journaled record `key` tags, if inside the window."""
        for stored in await self.journal.tagged(f"k:{key}", limit=1):
            r = stored.record
            if isinstance(r, Decided) and r.payment.created_at_ms >= window_start_ms:
                return r.payment.fingerprint, r.payment.id
            if isinstance(r, HoldPlaced) and r.hold.created_at_ms >= window_start_ms:
                return r.hold.fingerprint, r.hold.id
            if isinstance(r, HoldClosed) and (r.hold.closed_at_ms or 0) >= window_start_ms:
                return r.fingerprint, r.hold.id
            if isinstance(r, TransferDecided) and r.transfer.created_at_ms >= window_start_ms:
                return r.transfer.fingerprint, r.transfer.id
        return None

    async def decision(self, payment_id: str) -> PaymentRecord | None:
        """A payment's journaled decision, wherever it is (recovery: one not in memory)."""
        found = await self.journal.tagged("pay", limit=1, only_id=payment_id)
        if not found:
            return None
        record = found[0].record
        assert isinstance(record, Decided)
        return record.payment

    async def payments(self, q: PaymentQuery) -> list[PaymentRecord]:
        """Payments decided here (or, for `pending`, in flight), in id (creation time)
        order as `q` asks."""
        await self.journal.durable()
        if q.status == PaymentStatus.PENDING:
            found = [pending_record(r) for r in self.inflight.payments.values() if _matches(q, r.payment_id, r)]
            found.sort(key=lambda p: p.id, reverse=not q.ascending)
            return found[: q.limit]
        status_tag = f"s:{q.status}" if q.status else None
        if q.idempotency_key is not None:  # at most a few records: filter the rest here
            tag, also = f"k:{q.idempotency_key}", None
        elif q.balance_id:
            tag, also = f"b:{q.balance_id}", status_tag
        else:
            tag, also = status_tag or "pay", None
        # A key tags its payment, or a hold and its captures: a few records, filtered here.
        limit = q.limit + KEY_RECORDS_MAX if q.idempotency_key is not None else q.limit
        stored = await self.journal.tagged(
            tag, limit=limit, before_id=q.before_id, after_id=q.after_id, also_tag=also, ascending=q.ascending
        )
        out = [
            s.record.payment
            for s in stored
            if isinstance(s.record, Decided) and _matches(q, s.record.payment.id, s.record.payment)
        ]
        return out[: q.limit]

    async def transfers(
        self, balance_id: str | None, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[TransferRecord]:
        """Transfers decided here, all or those with a leg on `balance_id`, in id order."""
        await self.journal.durable()
        stored = await self.journal.tagged(
            f"tb:{balance_id}" if balance_id else "tr",
            limit=limit,
            before_id=before_id,
            after_id=after_id,
            ascending=ascending,
        )
        return [s.record.transfer for s in stored if isinstance(s.record, TransferDecided)]

    async def refunds_of(self, payment_id: str) -> list[PaymentRecord]:
        """The refunds decided for a payment, newest first."""
        await self.journal.durable()
        stored = await self.journal.tagged(f"rf:{payment_id}", limit=REFUNDS_PER_PAYMENT_MAX + 1)
        return [s.record.payment for s in stored if isinstance(s.record, Decided)]

    async def holds(
        self,
        balance_id: str | None,
        status: str | None,
        limit: int,
        before_id: str | None,
        after_id: str | None,
        ascending: bool,
    ) -> list[HoldRecord]:
        """Holds placed here, by balance (either side) and current status, in id order. A
        filter on another status than `held` pages through the holds placed (scanning
        history in proportion to how many do not match)."""
        if status == HOLD_HELD:  # the ones still held are all in memory: no history to scan
            held = sorted(
                (
                    h
                    for h in self.book.open_holds.values()
                    if (balance_id is None or balance_id in (h.balance_from, h.balance_to))
                    and (before_id is None or h.id < before_id)
                    and (after_id is None or h.id > after_id)
                ),
                key=lambda h: h.id,
                reverse=not ascending,
            )
            return held[:limit]
        tag = f"hb:{balance_id}" if balance_id else "holds"
        out: list[HoldRecord] = []
        while len(out) < limit:
            stored = await self.journal.tagged(
                tag, limit=limit, before_id=before_id, after_id=after_id, ascending=ascending
            )
            placed = [s.record.hold for s in stored if isinstance(s.record, HoldPlaced)]
            for h in placed:
                now = await self.hold(h.id)
                if now is not None and (status is None or now.status == status):
                    out.append(now)
            if len(stored) < limit:
                break
            last = placed[-1].id
            before_id, after_id = (before_id, last) if ascending else (last, after_id)
        return out[:limit]
