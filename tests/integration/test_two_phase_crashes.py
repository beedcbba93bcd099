"""Deterministic crashes around every journal write of the two-phase protocol.

The whole ledger runs as plain objects on memory journals. A `CrashPoint` hook kills
"every process" at the first flush containing a given record kind — before that flush is
written, or right after — with no sleeping and no timing. The ledger is then rebuilt
from what the journals hold, recovers, and must show: money conserved, nothing left
reserved, every payment acknowledged before the crash present with its status, and
every payment that was not acknowledged either absent, or settled consistently.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from actors.coordinator import PaymentCoordinator
from journal import JournalUnavailable, MemoryJournal
from ledger.outcomes import JOURNAL_UNAVAILABLE
from ledger.records import PaymentRecord
from ledger.results import FINAL_STATUSES, PaymentStatus
from tests.support.audit import audit
from tests.support.events import captured_events
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances, payment

KINDS = {"reserve": "rs", "prepare": "pr", "decision": "de", "post": "po", "void": "vo"}


@pytest.mark.parametrize("batched", [False, True], ids=["alone", "batched"])
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("write", list(KINDS))
async def test_crash_around_each_journal_write(tmp_path: Path, write: str, when: str, batched: bool) -> None:
    """`batched`: the payments in flight go in one call, so each journal gets one record
    per batch (a DecidedBatch, and the shards' batches of legs)."""
    # Phase two goes at the next turn of the loop if no phase-one call carries it first:
    # the loop below is driven without sleeping, so a timer in milliseconds would never fire.
    ledger = await LocalLedger(tmp_path, memory=True, partitions=4, shards=2, phase2_carry_ms=0).start()
    _, ids, deposits = await open_funded_balances(ledger.client, 4, 10_00)
    # Acknowledged before anything goes wrong: must come back exactly as they were.
    acknowledged: list[PaymentRecord] = await ledger.client.pay([payment(ids[1], ids[2], 1_00)])
    acknowledged += await ledger.client.pay([payment(ids[2], ids[0], 99_00)])
    # In flight at the crash: across and within shards; the last two cannot be afforded.
    requests = [payment(ids[n % 4], ids[(n + 1) % 4], 3_00) for n in range(4)]
    requests += [payment(ids[0], ids[2], 50_00), payment(ids[3], ids[1], 60_00)]
    calls = [requests] if batched else [[r] for r in requests]
    tasks = [asyncio.ensure_future(ledger.client.pay(call)) for call in calls]

    def on_crash() -> None:  # what had been replied when the processes died
        acknowledged.extend(p for t in tasks if t.done() and not t.exception() for p in t.result())

    await ledger.crash_at(tasks, KINDS[write], when, on_crash)

    with captured_events() as events:
        await ledger.start()  # recovery: replay, fence, drive decided payments, abort the rest
    stats = await asyncio.gather(*(ledger.client.shard(k).call("stats") for k in range(2)))
    assert sum(s["open_reservations"] for s in stats) == 0, "recovery left money held"
    assert [p.status for p in acknowledged[:2]] == [PaymentStatus.SUCCESS, PaymentStatus.NOT_ENOUGH_MONEY]
    for ack in acknowledged:
        assert ack.status in FINAL_STATUSES
        assert await ledger.client.get_payment(ack.id) == ack
    # In flight at the crash: unknown, or settled with a final status (all or nothing).
    recovered = [await ledger.client.get_payment(r.payment_id) for r in requests]
    settled = [p for p in recovered if p is not None]
    assert all(p.status in FINAL_STATUSES for p in settled)
    audit(await ledger.client.all_balances(), [*deposits, *acknowledged[:2], *settled])
    if write in ("reserve", "prepare", "decision") and when == "before":
        # No decision reached the disk: every one of them was aborted, none succeeded.
        assert all(p.status == PaymentStatus.SYSTEM_FAILURE for p in settled)
    # Each payment aborted in recovery is logged with its id, and the recovery with the count.
    aborted = {p.id for p in settled if p.reason == "aborted_in_recovery"}
    assert {e["payment_id"] for e in events if e["event"] == "aborted_in_recovery"} == aborted
    [recovered] = [e for e in events if e["event"] == "recovered" and e["actor"] == "coordinator-0"]
    assert recovered["aborted"] == len(aborted) and recovered["epoch"] == 2
    if (write, when) == ("decision", "after"):
        # Every decision was durable: recovery drove each to its end. (Not so at a post or
        # void: phase two rides the next phase-one call, which may come before the decision
        # of a later payment.)
        assert len(settled) == len(requests) and all(p.reason != "aborted_in_recovery" for p in settled)
    await ledger.stop()


async def test_unwritable_partition_refuses_then_resumes(tmp_path: Path) -> None:
    """A journal that cannot be written: payments touching it are refused (503 upstream,
    nothing moves) while others go on; once it can be written again, all resume."""
    ledger = await LocalLedger(tmp_path, memory=True, partitions=4, shards=2).start()
    # Enough balances that some land outside the victim's partition (with 6, all six
    # shared one partition about once in a thousand runs).
    _, ids, deposits = await open_funded_balances(ledger.client, 16, 10_00)
    partition = {b: ledger.client.shard_for(b) for b in ids}
    from actors.topology import partition_of

    victim = ids[0]
    store = ledger.stores[f"p-{partition_of(victim, 4)}"]  # type: ignore[index]
    healthy = [b for b in ids if partition_of(b, 4) != partition_of(victim, 4)]
    assert len(healthy) >= 2, partition
    await ledger.coordinator().finish_phase2()  # the deposits' posts land before the disk fails
    store.fail_writes = True
    with captured_events() as events:
        first = asyncio.ensure_future(ledger.client.pay_outcomes([payment(victim, healthy[0], 1_00)]))
        for _ in range(1000):  # its flush fails: the journal turns unwritable, the payment waits
            await asyncio.sleep(0)
        assert not first.done()
        keyed = msgspec.structs.replace(payment(healthy[0], victim, 2_00), idempotency_key="k-outage")
        [refused] = await ledger.client.pay_outcomes([keyed])
        assert refused.refused == "unavailable" and refused.payment is None
        # A client told 202 for it polls its id: it reads final, and nothing moved.
        failed = await ledger.client.get_payment(keyed.payment_id)
        assert failed is not None and (failed.status, failed.reason) == (
            PaymentStatus.SYSTEM_FAILURE,
            JOURNAL_UNAVAILABLE,
        )
        assert failed.idempotency_key is None
        [elsewhere] = await ledger.client.pay_outcomes([payment(healthy[0], healthy[1], 3_00)])
        assert elsewhere.payment is not None and elsewhere.payment.status == PaymentStatus.SUCCESS

        store.fail_writes = False
        [done] = await asyncio.wait_for(first, timeout=30)
        assert done.payment is not None and done.payment.status == PaymentStatus.SUCCESS
        # The key of the refused payment was left free: its retry is a new payment.
        retried = msgspec.structs.replace(payment(healthy[0], victim, 2_00), idempotency_key="k-outage")
        [after] = await ledger.client.pay_outcomes([retried])
        assert after.payment is not None and after.payment.status == PaymentStatus.SUCCESS
        assert after.payment.id == retried.payment_id and not after.replayed
    # The outage and the recovery are logged once each, naming the journal.
    outage = [e for e in events if e["event"].startswith("journal_")]
    assert [(e["event"], e["level"]) for e in outage] == [
        ("journal_unwritable", "ERROR"),
        ("journal_writable_again", "WARNING"),
    ]
    assert outage[0]["journal"] == outage[1]["journal"] and "error" in outage[0]
    audit(await ledger.client.all_balances(), [*deposits, done.payment, elsewhere.payment, failed, after.payment])
    await ledger.stop()


async def test_a_failed_coordinator_recovery_is_tried_again(tmp_path: Path) -> None:
    """A recovery that fails (its journal's history index could not be read, say) must not
    leave the coordinator refusing every call until the process restarts."""
    ledger = await LocalLedger(tmp_path, memory=True).start()
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 10_00)
    assert ledger.stores is not None
    restarted = PaymentCoordinator(ledger.settings, 0, ledger.peer, MemoryJournal(ledger.stores["c-0"].survivor()))
    real_recover, attempts = restarted.recovery.recover, 0

    async def failing_once() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise JournalUnavailable("the history index of c-0 cannot be written")
        await real_recover()

    restarted.recovery.recover = failing_once  # type: ignore[method-assign]
    with pytest.raises(JournalUnavailable):
        await restarted.ready()
    epoch = await restarted.ready()
    assert attempts == 2 and epoch == restarted.book.epoch > 0
    [paid] = await restarted.pay([payment(a, b, 1_00)])  # type: ignore[misc]
    assert paid.payment is not None and paid.payment.status == PaymentStatus.SUCCESS
    await restarted.close()
    await ledger.stop()
