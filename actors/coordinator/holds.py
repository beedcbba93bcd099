"""Authorization holds (the API's `/v1/holds`): placed with phase one like a payment, then
captured (in one or several parts) or voided, or expired by a sweep. The money stays
reserved on the paying balance while the hold is open; a capture is a payment posting part
of that reservation. A hold's captures and voids run one at a time (`Turns`).
"""

from __future__ import annotations

import asyncio

from actors.coordinator.history import History
from actors.coordinator.idempotency import Claims
from actors.coordinator.payments import Payments
from actors.coordinator.phase_two import PhaseTwo
from actors.coordinator.remote import Remote
from actors.coordinator.state import CoordinatorState, Turns
from actors.settings import Settings
from ledger import payment_book
from ledger.messages import HoldRequest
from ledger.outcomes import Outcome
from ledger.payment_book import HOLD_HELD, CaptureRequest
from ledger.records import Decided, HoldClosed, HoldRecord
from ledger.results import Check


class Holds:
    def __init__(
        self,
        settings: Settings,
        state: CoordinatorState,
        remote: Remote,
        claims: Claims,
        payments: Payments,
        phase_two: PhaseTwo,
        history: History,
        turns: Turns,
    ) -> None:
        self.settings = settings
        self.state = state
        self.remote = remote
        self.claims = claims
        self.payments = payments
        self.phase_two = phase_two
        self.history = history
        self.turns = turns
        self._sweeper: asyncio.Task[None] | None = None

    async def place(self, r: HoldRequest) -> Outcome:
        claimed = await self.claims.check(r.idempotency_key, r.fingerprint)
        if claimed is not None:
            return claimed
        if await self.claims.seen(r.hold_id, r.created_at_ms):
            return await self.claims.replay(r.hold_id, r.idempotency_key)  # a redelivered call
        self.state.require_writable()
        self.state.inflight.claim(r.hold_id, r.idempotency_key, r.fingerprint)
        committed = False
        try:
            codes = await self.payments.phase_one(
                [(r.hold_id, r.balance_from, r.balance_to, r.amount_minor, r.currency)]
            )
            debit, credit = codes[(r.hold_id, r.balance_from)], codes[(r.hold_id, r.balance_to)]
            if Check.UNAVAILABLE in (debit, credit):  # as for payments: abort undecided, answer 503
                await self.remote.void(payment_book.reserved(codes, {r.hold_id}))
                return Outcome(refused="unavailable")
            placed = payment_book.place(r, debit, credit, self.state.clock())
            self.state.commit(placed)
            committed = True
            await self.state.durable()
            if placed.hold.status != HOLD_HELD:
                await self._void_sides([placed.hold])
            return Outcome(hold=placed.hold)
        finally:
            self.state.inflight.release(r.hold_id, r.idempotency_key, decided=committed)

    async def capture(self, c: CaptureRequest) -> Outcome:
        """Capture `c.amount_minor` of what the hold still holds (default: all of it). A final
        capture (or one of all that is left) releases the rest and closes the hold; one that
        is not keeps the rest held for the next capture."""
        async with self.turns.one_at_a_time(c.hold_id):
            # Inside the turn: a retry that waited for its first attempt finds that one's key.
            claimed = await self.claims.check(c.key, c.fingerprint)
            if claimed is not None:
                return claimed
            if await self.claims.seen(c.payment_id, c.created_at_ms):
                return await self.claims.replay(c.payment_id, c.key)
            await self.expire_due(c.hold_id)
            hold = self.state.book.open_holds.get(c.hold_id)
            if hold is None:  # from here to the commit, no await: one capture or void wins
                known = await self.history.hold(c.hold_id)
                return Outcome(hold=known, refused="not_found" if known is None else "not_held")
            frame = payment_book.capture(hold, c, self.state.clock())
            if isinstance(frame, str):
                return Outcome(hold=hold, refused=frame)
            self.state.require_writable()
            payment, after = frame
            assert isinstance(payment, Decided) and isinstance(after, HoldClosed)
            self.state.inflight.claim(c.payment_id, None, None)  # its key is journaled with it
            committed = False
            try:
                self.state.commit(payment, after)
                committed = True
                await self.state.durable()
                await self.phase_two.now([payment.payment])
                return Outcome(payment=payment.payment, hold=after.hold)
            finally:
                self.state.inflight.release(c.payment_id, None, decided=committed)

    async def void(self, hold_id: str, key: str | None, fingerprint: bytes | None) -> Outcome:
        async with self.turns.one_at_a_time(hold_id):  # after a capture in flight has posted
            claimed = await self.claims.check(key, fingerprint)
            if claimed is not None:
                return claimed
            await self.expire_due(hold_id)
            hold = self.state.book.open_holds.get(hold_id)
            if hold is None:
                known = await self.history.hold(hold_id)
                return Outcome(hold=known, refused="not_found" if known is None else "not_held")
            self.state.require_writable()
            closed = payment_book.void(hold, key, fingerprint, self.state.clock())
            self.state.commit(closed)
            await self._release([closed.hold])
            return Outcome(hold=closed.hold)

    async def expire_due(self, mine: str | None = None) -> None:
        """Expire the holds past their time, but not one being captured or voided (its
        partial post may still be on its way), unless it is `mine`, the caller's."""
        now_ms = self.state.clock()
        expired = self.state.book.due_holds(now_ms, busy=self.turns.busy() - {mine} if mine else self.turns.busy())
        if not expired or not self.state.journal.writable:
            return
        for h in expired:
            self.state.commit(HoldClosed(h, at_ms=now_ms))
        await self._release(expired)

    async def _release(self, closed: list[HoldRecord]) -> None:
        """After holds' closing records are committed (no await since): once durable, void
        their sides at the shards. Until then a read of such a hold waits (History.hold):
        one that shows it voided or expired then shows its money released."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for h in closed:
            self.state.releasing[h.id] = done
        try:
            await self.state.durable()
            await self._void_sides(closed)
        finally:
            for h in closed:
                if self.state.releasing.get(h.id) is done:
                    del self.state.releasing[h.id]
            done.set_result(None)

    def start_sweeping(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.hold_sweep_interval_ms / 1000)
            try:
                await self.expire_due()
            except Exception:  # the next sweep tries again; nothing is lost meanwhile
                continue

    async def _void_sides(self, holds: list[HoldRecord]) -> None:
        """Release both sides of closed holds that captured nothing more."""
        await self.remote.void(payment_book.sides_of(holds))
