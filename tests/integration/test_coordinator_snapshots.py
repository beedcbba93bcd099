"""A coordinator's snapshot + the records after it rebuild exactly the state that live
traffic built, and the same state that replaying every record from genesis builds."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from actors.coordinator import PaymentCoordinator
from journal import MemoryJournal, MemoryStore
from ledger.ids import make_id
from ledger.messages import HoldRequest
from tests.support.local import LocalLedger
from tests.support.scenario import now_ms, open_funded_balances, payment


async def test_snapshot_and_tail_rebuild_the_live_state(tmp_path: Path) -> None:
    ledger = await LocalLedger(
        tmp_path,
        memory=True,
        snapshot_every_records=25,  # several snapshots, and a tail after the last
        recent_payments_max=30,  # the caches evict (so their order matters), yet outlast the tail
        idempotency_keys_in_memory_max=8,
    ).start()
    _, ids, _ = await open_funded_balances(ledger.client, 6, 100_00)
    for n in range(40):
        request = payment(ids[n % 6], ids[(n + 1) % 6], 1_00 if n % 7 else 1_000_00)  # some: not_enough_money
        if n < 20 and n % 2:  # keys early: the evictions happen before the last snapshot
            request = msgspec.structs.replace(request, idempotency_key=f"admin:k{n}", fingerprint=b"fp")
        await ledger.client.pay([request])
    holds = [
        HoldRequest(make_id("hold", now_ms(), os.urandom(10)), ids[0], ids[1], 50, "USD", now_ms(), now_ms() + 60_000)
        for _ in range(3)
    ]
    for h in holds:
        assert (await ledger.client.place_hold(h)).hold is not None
    capture = make_id("pay", now_ms(), os.urandom(10))
    assert (await ledger.client.capture_hold(holds[0].hold_id, None, capture, now_ms(), None, None)).hold is not None

    live = ledger.coordinator()
    await live.finish_phase2()  # no phase two left to confirm (and journal) while we compare
    await live.journal.durable()
    await live.state.snapshot_written()
    state = live.book.snapshot()
    assert state.open_holds and state.keys and state.keys_evicted_until_ms > 0
    # The dashboard's minutes too: 6 deposits, 40 payments and the capture, each counted once.
    assert sum(m.succeeded + m.failed for m in state.activity) == 47
    store = ledger.stores["c-0"]  # type: ignore[index]
    assert store.snapshot is not None and store.snapshot[0] < live.journal.last_seq

    from_snapshot = PaymentCoordinator(ledger.settings, 0, ledger.peer, MemoryJournal(store.survivor()))
    assert from_snapshot.state.snapshot_seq == store.snapshot[0]
    assert from_snapshot.book.snapshot() == state

    no_snapshot = MemoryStore(store.frames)
    from_genesis = PaymentCoordinator(ledger.settings, 0, ledger.peer, MemoryJournal(no_snapshot))
    assert from_genesis.state.snapshot_seq == 0
    assert from_genesis.book.snapshot() == state
    await ledger.stop()


async def test_a_snapshot_leaves_out_keys_of_requests_not_yet_journaled(tmp_path: Path) -> None:
    """A key is claimed before its payment is decided and given back if nothing is; a
    snapshot taken meanwhile must not make it outlive a restart (a retry would then find
    a key pointing at no payment). A key whose payment is journaled stays, in flight or not."""
    ledger = await LocalLedger(tmp_path, memory=True).start()
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 100_00)
    decided = msgspec.structs.replace(payment(a, b, 1_00), idempotency_key="admin:decided", fingerprint=b"fp")
    await ledger.client.pay([decided])
    coordinator = ledger.coordinator()
    claimed = msgspec.structs.replace(payment(a, b, 2_00), idempotency_key="admin:claimed", fingerprint=b"fp")
    coordinator.state.inflight.claim(claimed.payment_id, claimed.idempotency_key, claimed.fingerprint)
    assert await coordinator.claims.known("admin:claimed") == (b"fp", claimed.payment_id)

    keys = {key for key, *_ in coordinator.book.snapshot().keys}
    assert "admin:decided" in keys and "admin:claimed" not in keys
    coordinator.state.inflight.release(claimed.payment_id, claimed.idempotency_key, decided=False)
    assert await coordinator.claims.known("admin:claimed") is None  # given back: free for the retry
    await ledger.stop()
