"""Transfers: several legs over any shards, all or none, through one two-phase decision.

The ledger runs as plain objects on memory journals (as in the two-phase crash tests); a
`CrashPoint` kills every process around each journal write of a 4-leg transfer across
three shards, and recovery must leave it whole or absent (its legs void).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from actors.topology import partition_of, shard_of_partition
from ledger.ids import make_id
from ledger.messages import PaymentRequest, TransferRequest
from ledger.records import PaymentRecord, TransferRecord
from ledger.results import FINAL_STATUSES, PaymentStatus
from tests.support.audit import audit
from tests.support.local import LocalLedger
from tests.support.scenario import now_ms, open_funded_balances

PARTITIONS, SHARDS = 6, 3


def transfer(legs: list[tuple[str, str, int]], currency: str = "USD") -> TransferRequest:
    at = now_ms()
    return TransferRequest(
        make_id("tr", at, os.urandom(10)),
        [PaymentRequest(make_id("pay", at, os.urandom(10)), a, b, amount, currency, at) for a, b, amount in legs],
        at,
    )


def moved(t: TransferRecord) -> list[PaymentRecord]:
    """The transfer's legs as the payments an audit expects (none if it failed)."""
    return [
        PaymentRecord(
            leg.payment_id, leg.balance_from, leg.balance_to, leg.amount_minor, leg.currency, t.status, None, 0, 0
        )
        for leg in t.legs
    ]


async def _ledger(tmp_path: Path) -> LocalLedger:
    return await LocalLedger(tmp_path, memory=True, partitions=PARTITIONS, shards=SHARDS, phase2_carry_ms=0).start()


async def test_legs_move_together_and_a_balance_in_several_legs_adds_its_debits(tmp_path: Path) -> None:
    ledger = await _ledger(tmp_path)
    _, (a, b, c, d), deposits = await open_funded_balances(ledger.client, 4, 10_00)
    [ok] = await ledger.client.transfer_outcomes([transfer([(a, b, 3_00), (a, c, 4_00), (b, d, 5_00)])])
    assert ok.transfer is not None and ok.transfer.status == PaymentStatus.SUCCESS and ok.transfer.failed_leg is None
    # a has 3.00 left: 2.00 + 2.00 in two legs is more than it has, though each leg alone fits.
    [refused] = await ledger.client.transfer_outcomes([transfer([(c, d, 1_00), (a, b, 2_00), (a, d, 2_00)])])
    t = refused.transfer
    assert t is not None and (t.status, t.failed_leg) == (PaymentStatus.NOT_ENOUGH_MONEY, 2)
    await ledger.coordinator().finish_phase2()
    views = {v.balance_id: v for v in await ledger.client.all_balances()}
    assert [views[x].amount_minor for x in (a, b, c, d)] == [3_00, 8_00, 14_00, 15_00]  # nothing of the second
    legs = [await ledger.client.get_payment(leg.payment_id) for leg in t.legs]
    assert all(p is not None and p.status == PaymentStatus.NOT_ENOUGH_MONEY and p.transfer_id == t.id for p in legs)
    assert await ledger.client.get_transfer(t.id) == t
    audit(await ledger.client.all_balances(), [*deposits, *moved(ok.transfer)])
    await ledger.stop()


async def test_a_retried_transfer_call_answers_its_first_outcome(tmp_path: Path) -> None:
    ledger = await _ledger(tmp_path)
    _, (a, b), deposits = await open_funded_balances(ledger.client, 2, 10_00)
    request = transfer([(a, b, 1_00), (b, a, 50)])
    [first] = await ledger.client.transfer_outcomes([request])
    [again] = await ledger.client.transfer_outcomes([request])  # Ray redelivering the call
    assert first.transfer is not None and again.transfer == first.transfer
    audit(await ledger.client.all_balances(), [*deposits, *moved(first.transfer)])
    await ledger.stop()


KINDS = {"reserve": "rs", "prepare": "pr", "decision": "td", "post": "po", "void": "vo"}


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("write", list(KINDS))
async def test_crash_around_each_write_of_a_four_leg_transfer(tmp_path: Path, write: str, when: str) -> None:
    ledger = await _ledger(tmp_path)
    _, ids, deposits = await open_funded_balances(ledger.client, 40, 10_00)
    by_shard: dict[int, list[str]] = {}
    for b in ids:
        by_shard.setdefault(shard_of_partition(partition_of(b, PARTITIONS), SHARDS), []).append(b)
    assert len(by_shard) == SHARDS, by_shard  # 40 balances over 3 shards: all but never (1e-6) each has some
    (x, *_), (y, *_), (z, *_) = by_shard.values()
    w = next(b for b in ids if b not in (x, y, z))
    # One that succeeds and one that cannot (z pays 6.00 twice): a void as well as posts.
    good = transfer([(x, y, 1_00), (y, z, 2_00), (z, w, 3_00), (w, x, 4_00)])
    bad = transfer([(y, x, 1_00), (z, x, 6_00), (x, w, 1_00), (z, y, 6_00)])
    await ledger.coordinator().finish_phase2()  # the deposits' posts are not the ones crashed on
    tasks = [asyncio.ensure_future(ledger.client.transfer_outcomes([t])) for t in (good, bad)]
    acknowledged: list[TransferRecord] = []

    def on_crash() -> None:
        acknowledged.extend(t.result()[0].transfer for t in tasks if t.done() and not t.exception())

    await ledger.crash_at(tasks, KINDS[write], when, on_crash)

    await ledger.start()
    stats = await asyncio.gather(*(ledger.client.shard(k).call("stats") for k in range(SHARDS)))
    assert sum(s["open_reservations"] for s in stats) == 0, "recovery left money held"
    for ack in acknowledged:
        assert ack.status in FINAL_STATUSES and await ledger.client.get_transfer(ack.id) == ack
    kept: list[PaymentRecord] = []
    decided = []
    for request in (good, bad):
        found = await ledger.client.get_transfer(request.transfer_id)
        decided.append(found)
        legs = [await ledger.client.get_payment(r.payment_id) for r in request.legs]
        if found is None:  # never held anywhere: absent
            assert all(p is None for p in legs)
            continue
        if found.reason == "aborted_in_recovery":  # held, never decided: aborted whole, nothing moved
            assert found.status == PaymentStatus.SYSTEM_FAILURE
            assert {leg.payment_id for leg in found.legs} == {p.id for p in legs if p is not None}
            assert all(p is None or (p.status, p.transfer_id) == (found.status, found.id) for p in legs)
            continue
        assert all(p is not None and p.status == found.status and p.transfer_id == found.id for p in legs)
        kept += moved(found)
    aborted = [t is None or t.reason == "aborted_in_recovery" for t in decided]
    if (write, when) == ("decision", "before"):  # the first decision never reached the disk
        assert any(aborted)
    if (write, when) == ("decision", "after") or write in ("post", "void"):
        # Past the decision of at least the first transfer decided: it is whole, with its status.
        assert not all(aborted)
    assert aborted[1] or decided[1].status == PaymentStatus.NOT_ENOUGH_MONEY  # type: ignore[union-attr]
    assert aborted[0] or decided[0].status == PaymentStatus.SUCCESS  # type: ignore[union-attr]
    # A call Ray redelivers after the restart answers what recovery decided; it never runs again.
    for request, was in zip((good, bad), decided, strict=True):
        [again] = await ledger.client.transfer_outcomes([request])
        if was is not None:
            assert again.transfer == was and again.replayed
        else:  # it never held: it runs now, and moves all or nothing like any other
            assert again.transfer is not None and again.transfer.status in FINAL_STATUSES
            kept += moved(again.transfer)
    audit(await ledger.client.all_balances(), [*deposits, *kept])
    await ledger.stop()
