"""Idempotency: one claim path for keys and ids (docs/design.md §1.6).

A request's idempotency key replays its first outcome (or is refused as a conflict if the
request differs), and so does its id when Ray delivers a call again. A request is *in
flight* from its claim to its answer: concurrent duplicates wait for it, reads show it as
pending, and its key is claimed. The key enters the book only with the journaled decision;
a request aborted undecided gives its key back, so its retry runs afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NamedTuple

from actors.coordinator.history import History
from actors.coordinator.state import CoordinatorState
from ledger.ids import is_hold_id
from ledger.messages import PaymentRequest, TransferRequest
from ledger.outcomes import Outcome, decided_outcome, is_transfer_id, undecided
from ledger.payment_book import OnDisk
from ledger.records import PaymentRecord, TransferRecord

Request = PaymentRequest | TransferRequest


class Redelivered(NamedTuple):
    """A call delivered again: answer with its id's first outcome, if that is its key's."""

    some_id: str
    key: str | None


Answer = Outcome | str | Redelivered | None  # an outcome, the id a key points at, a redelivery, or fresh


class Claims:
    def __init__(self, state: CoordinatorState, history: History) -> None:
        self.state = state
        self.inflight = state.inflight
        self.history = history

    async def known(self, key: str) -> tuple[bytes | None, str] | None:
        """(fingerprint, id) of what `key` points at inside its window, or None if it is new."""
        claimed = self.inflight.keys.get(key)
        if claimed is not None:
            return claimed
        found = self.state.book.key(key, self.state.clock())
        if not isinstance(found, OnDisk):
            return found
        window_start_ms = self.state.clock() - self.state.book.limits.key_window_ms
        on_disk = await self.history.key(key, window_start_ms)
        if on_disk is not None:
            return on_disk
        # Claimed, or even decided, while we looked on disk: the read may predate its record.
        claimed = self.inflight.keys.get(key)
        if claimed is not None:
            return claimed
        again = self.state.book.key(key, self.state.clock())
        return None if isinstance(again, OnDisk) else again

    async def check(self, key: str | None, fingerprint: bytes | None) -> Outcome | None:
        """None if `key` is new (or absent); else the first outcome, or the conflict."""
        if key is None:
            return None
        known = await self.known(key)
        if known is None:
            return None
        return Outcome(conflict=True) if known[0] != fingerprint else await self.replay(known[1])

    async def seen(self, some_id: str, created_at_ms: int) -> bool:
        """Whether a payment, transfer or hold of this id was decided or is in flight: its
        call is a redelivery. Memory knows every one created after the book's
        `ids_evicted_until_ms`; an older one (a call delivered again after a restart) may be
        in the journal only. Running it afresh would hold money under an id decided already."""
        if self.state.book.knows(some_id) or some_id in self.inflight:
            return True
        if created_at_ms > self.state.book.ids_evicted_until_ms:
            return False
        if is_hold_id(some_id):
            found: object = await self.history.hold(some_id)
        elif is_transfer_id(some_id):
            found = await self.history.transfer(some_id)
        else:
            found = await self.history.decision(some_id)
        # Claimed or decided while we looked on disk: memory answers again.
        return found is not None or self.state.book.knows(some_id) or some_id in self.inflight

    async def sort(self, requests: Sequence[Request]) -> tuple[list[Answer], list[Request]]:
        """Each request's answer if it is known already (a key seen, an id redelivered),
        else None, and the fresh ones, now claimed and in flight."""
        answers: list[Answer] = []
        fresh: list[Request] = []
        try:
            for r in requests:
                if r.idempotency_key is not None:
                    known = await self.known(r.idempotency_key)
                    if known is not None:
                        answers.append(Outcome(conflict=True) if known[0] != r.fingerprint else known[1])
                        continue
                if await self.seen(r.payment_id, r.created_at_ms):
                    answers.append(Redelivered(r.payment_id, r.idempotency_key))
                    continue
                self.inflight.claim(r.payment_id, r.idempotency_key, r.fingerprint)
                if isinstance(r, TransferRequest):
                    self.inflight.transfers[r.payment_id] = r
                else:
                    self.inflight.payments[r.payment_id] = r
                fresh.append(r)
                answers.append(None)
        except BaseException:  # a journal read failed midway: give back what was claimed
            self.release(fresh, [None] * len(fresh))
            raise
        return answers, fresh

    def release(self, fresh: Sequence[Request], results: Sequence[PaymentRecord | TransferRecord | None]) -> None:
        for r, result in zip(fresh, results, strict=True):
            self.inflight.release(r.payment_id, r.idempotency_key, decided=not undecided(result))

    async def answer(
        self, answers: list[Answer], results: Sequence[PaymentRecord | TransferRecord | None]
    ) -> list[Outcome]:
        """Outcomes in request order: the fresh ones decided now, the others replayed."""
        decided = iter(results)
        out: list[Outcome] = []
        for a in answers:
            if a is None:
                out.append(decided_outcome(next(decided)))
            elif isinstance(a, Outcome):
                out.append(a)
            elif isinstance(a, Redelivered):
                out.append(await self.replay(a.some_id, a.key))
            else:
                out.append(await self.replay(a))
        return out

    async def replay(self, some_id: str, key: str | None = None) -> Outcome:
        """The first outcome of what an idempotency key or a redelivered call points at.
        A redelivered call with `key` whose id was decided without it (aborted by a
        recovery, which knows no keys) did not bind the key: it answers `unavailable`, as
        an undecided one does, and the client's retry with the key finds what the key
        did bind, or runs afresh. Else one key could answer two different outcomes."""
        done = self.inflight.answered(some_id)
        if done is not None:
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                if done.cancelled():  # the first attempt was aborted undecided
                    return Outcome(refused="unavailable")
                raise
        if is_hold_id(some_id):
            hold = await self.history.hold(some_id)
            assert hold is not None, f"an idempotency key points at unknown hold {some_id}"
            if key is not None and hold.idempotency_key != key:
                return Outcome(refused="unavailable")
            return Outcome(hold=hold, replayed=True)
        if is_transfer_id(some_id):
            transfer = await self.history.transfer(some_id)
            assert transfer is not None, f"an idempotency key points at unknown transfer {some_id}"
            if undecided(transfer) or (key is not None and transfer.idempotency_key != key):
                return Outcome(refused="unavailable")
            return Outcome(transfer=transfer, replayed=True)
        payment = await self.history.payment(some_id)
        assert payment is not None, f"an idempotency key points at unknown payment {some_id}"
        if undecided(payment) or (key is not None and payment.idempotency_key != key):
            return Outcome(refused="unavailable")  # a redelivered call of one answered 503: 503 again
        return Outcome(payment, replayed=True)
