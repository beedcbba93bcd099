"""One claim path for idempotency keys: a key decided while another request with it was
still looking on disk is found, not claimed a second time (that would move money twice).
The journal read is held open at will by a stand-in history, so the interleaving is exact."""

from __future__ import annotations

import asyncio
import types

from actors.coordinator.idempotency import Claims, Redelivered
from actors.coordinator.state import InFlight
from ledger.messages import PaymentRequest
from ledger.payment_book import BookLimits, CoordinatorSnapshot, PaymentBook
from ledger.records import Completions, Decided, PaymentRecord

NOW_MS = 1_765_000_000_000  # a realistic clock: the window starts after the epoch


class SlowHistory:
    """A journal read taken before another request's record was written: it finds nothing,
    and answers only when the test lets it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def key(self, key: str, window_start_ms: int) -> None:
        await self.gate.wait()


async def test_a_key_decided_during_a_disk_lookup_is_found_afterwards() -> None:
    # Keys were evicted inside the window, so a key not in memory may be on disk.
    snapshot = CoordinatorSnapshot(1, [], [], [], [], [], keys_evicted_until_ms=NOW_MS - 5)
    book = PaymentBook(BookLimits(recent_max=100, keys_max=1, key_window_ms=86_400_000), snapshot)
    history = SlowHistory()
    state = types.SimpleNamespace(book=book, clock=lambda: NOW_MS, inflight=InFlight())
    claims = Claims(state, history)  # type: ignore[arg-type]

    second = asyncio.ensure_future(claims.known("K"))  # request B looks K up on disk
    await asyncio.sleep(0)
    # Request A with K: claimed, decided, journaled and answered while B's read is out.
    state.inflight.claim("pay_A", "K", b"fp")
    payment = PaymentRecord(
        "pay_A", "bal_x", "bal_y", 1, "USD", "success", None, NOW_MS, NOW_MS, idempotency_key="K", fingerprint=b"fp"
    )
    book.apply(Decided(payment), NOW_MS)
    state.inflight.release("pay_A", "K", decided=True)
    history.gate.set()
    assert await second == (b"fp", "pay_A")


async def test_a_claim_in_flight_is_found_and_given_back_when_undecided() -> None:
    book = PaymentBook(BookLimits(recent_max=100, keys_max=10, key_window_ms=86_400_000))
    state = types.SimpleNamespace(book=book, clock=lambda: NOW_MS, inflight=InFlight())
    claims = Claims(state, SlowHistory())  # type: ignore[arg-type]
    state.inflight.claim("pay_A", "K", b"fp")
    waiting = state.inflight.answered("pay_A")
    assert waiting is not None
    assert await claims.known("K") == (b"fp", "pay_A")
    state.inflight.release("pay_A", "K", decided=False)
    assert await claims.known("K") is None and waiting.cancelled()


class BookHistory:
    """The decisions in memory, as History reads them first."""

    def __init__(self, book: PaymentBook) -> None:
        self.book = book

    async def payment(self, payment_id: str) -> PaymentRecord | None:
        return self.book.recent.get(payment_id)


async def test_a_redelivered_keyed_call_whose_payment_recovery_aborted_binds_no_key() -> None:
    """Aborted in recovery (which knows no keys), its record names no key: a redelivered call
    with the key answers `unavailable`, so the client's retry finds what the key did bind (the
    simulator's seed 11 found the aborted one answered, and the key answering twice)."""
    book = PaymentBook(BookLimits(recent_max=100, keys_max=10, key_window_ms=86_400_000))
    state = types.SimpleNamespace(book=book, clock=lambda: NOW_MS, inflight=InFlight())
    claims = Claims(state, BookHistory(book))  # type: ignore[arg-type]
    aborted = PaymentRecord(
        "pay_A", "bal_x", "bal_y", 1, "USD", "system_failure", "aborted_in_recovery", NOW_MS, NOW_MS
    )
    book.apply(Decided(aborted), NOW_MS)
    assert (await claims.replay("pay_A", "K")).refused == "unavailable"
    assert (await claims.replay("pay_A")).payment == aborted  # without a key: its own outcome


class JournalHistory:
    """Decisions as the journal keeps them, whether memory still does or not; counts reads."""

    def __init__(self) -> None:
        self.decided: dict[str, PaymentRecord] = {}
        self.reads = 0

    async def decision(self, payment_id: str) -> PaymentRecord | None:
        self.reads += 1
        return self.decided.get(payment_id)


def _request(payment_id: str, created_at_ms: int) -> PaymentRequest:
    return PaymentRequest(payment_id, "bal_x", "bal_y", 1, "USD", created_at_ms)


async def test_a_call_delivered_again_after_its_decision_left_memory_is_not_run_again() -> None:
    """The simulator's seed 130001: a payment aborted in recovery was delivered again once
    memory had dropped it, ran afresh under its decided id, and left its debit held forever."""
    book = PaymentBook(BookLimits(recent_max=1, keys_max=10, key_window_ms=86_400_000))
    history = JournalHistory()
    state = types.SimpleNamespace(book=book, clock=lambda: NOW_MS, inflight=InFlight())
    claims = Claims(state, history)  # type: ignore[arg-type]
    for n, payment_id in enumerate(("pay_A", "pay_B")):
        record = PaymentRecord(payment_id, "bal_x", "bal_y", 1, "USD", "success", None, NOW_MS + n, NOW_MS + n)
        history.decided[payment_id] = record
        book.apply(Decided(record), NOW_MS + n)
    book.apply(Completions(["pay_A", "pay_B"]), NOW_MS + 2)  # settled: no longer unfinished
    assert not book.knows("pay_A")  # dropped from memory: only the journal has it

    answers, fresh = await claims.sort([_request("pay_A", NOW_MS)])
    assert fresh == [] and answers == [Redelivered("pay_A", None)]
    # One created after everything memory dropped is new for sure: no journal read.
    reads = history.reads
    answers, fresh = await claims.sort([_request("pay_C", NOW_MS + 1)])
    assert [r.payment_id for r in fresh] == ["pay_C"] and history.reads == reads
