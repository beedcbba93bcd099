"""Phase two after the answer: a payment is answered at its durable decision, its posts
ride the next phase-one call to the same shard (or go on their own after
`phase2_carry_ms`), and reads wait for them. Here the timer is set far beyond the test
(60 s), and `busy` makes the coordinator believe another payment is in progress (alone,
it sends phase two at once), so every post is moved by a carrying call, by
`finish_phase2`, or not at all, and nothing depends on timing."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from pathlib import Path

from actors.partition import Partition
from actors.shard import BalanceShard
from actors.topology import partition_of, shard_name
from ledger.results import PaymentStatus
from tests.support.audit import audit
from tests.support.events import captured_events
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances, payment

NEVER_MS = 60_000


def shard_of(ledger: LocalLedger, balance_id: str) -> BalanceShard:
    return ledger.objects[shard_name(ledger.client.shard_for(balance_id))]  # type: ignore[no-any-return]


def partition(ledger: LocalLedger, balance_id: str) -> Partition:
    return shard_of(ledger, balance_id).partitions[partition_of(balance_id, ledger.settings.partitions)]


def open_legs(ledger: LocalLedger, balance_id: str) -> set[str]:
    return set(partition(ledger, balance_id).book.reservations_on(balance_id))


def busy(ledger: LocalLedger) -> AbstractContextManager[None]:
    """As if another pay call were in progress: phase two waits for a carrier."""
    carrier = ledger.coordinator().phase_two.carrier()
    carrier.__enter__()
    return carrier


def idle(carrier: AbstractContextManager[None]) -> None:
    """That other call is over (`finish_phase2` and a clean stop wait for pay calls)."""
    carrier.__exit__(None, None, None)


async def spin() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


async def test_a_read_after_the_answer_waits_for_the_posts_and_sees_the_money_moved(tmp_path: Path) -> None:
    ledger = await LocalLedger(tmp_path, phase2_carry_ms=NEVER_MS).start()
    _, (a, b), deposits = await open_funded_balances(ledger.client, 2, 10_00)
    await ledger.coordinator().finish_phase2()  # the deposits' posts
    carrier = busy(ledger)
    [paid] = await ledger.client.pay([payment(a, b, 3_00)])
    assert paid.status == PaymentStatus.SUCCESS
    assert paid.id in open_legs(ledger, a) and paid.id in open_legs(ledger, b)  # answered before its posts

    read = asyncio.ensure_future(ledger.client.get_balances([a, b]))
    await spin()
    assert not read.done(), "a read must not overtake the posts of an acknowledged payment"
    idle(carrier)
    assert await ledger.coordinator().finish_phase2() == 0
    view_a, view_b = await read
    assert view_a is not None and view_b is not None
    assert (view_a.amount_minor, view_a.reserved_minor, view_b.amount_minor) == (7_00, 0, 13_00)
    audit(await ledger.client.all_balances(), [*deposits, paid])
    await ledger.stop()


async def test_the_next_phase_one_call_carries_the_posts(tmp_path: Path) -> None:
    ledger = await LocalLedger(tmp_path, phase2_carry_ms=NEVER_MS).start()
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 10_00)
    coordinator = ledger.coordinator()
    carrier = busy(ledger)
    [first] = await ledger.client.pay([payment(a, b, 1_00)])
    assert first.id in coordinator.book.unfinished
    [second] = await ledger.client.pay([payment(b, a, 2_00)])  # same two shards
    # The second payment's phase one took the first's posts along: no timer, no extra call.
    assert first.id not in open_legs(ledger, a) | open_legs(ledger, b)
    assert first.id not in coordinator.book.unfinished  # every shard confirmed: Completed
    assert second.id in open_legs(ledger, a) and second.id in coordinator.book.unfinished
    idle(carrier)
    await ledger.stop()


async def test_a_payment_from_the_balance_just_paid_into_waits_for_the_post_in_flight(tmp_path: Path) -> None:
    """The post of an acknowledged payment goes to its shard on its own (not carried), and
    the next payment, from the balance it credited, overtakes it: that payment must see
    the money (it waits for the credit to settle) instead of being refused."""
    ledger = await LocalLedger(tmp_path, phase2_carry_ms=NEVER_MS).start()
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 10_00)
    coordinator = ledger.coordinator()
    await coordinator.finish_phase2()
    carrier = busy(ledger)
    [paid] = await ledger.client.pay([payment(a, b, 10_00)])
    assert paid.status == PaymentStatus.SUCCESS
    in_flight = coordinator.phase_two.take_owed()  # sent, not yet arrived
    onward = asyncio.ensure_future(ledger.client.pay([payment(b, a, 15_00)]))  # b: 10 + 10 incoming
    await spin()
    assert not onward.done(), "a payment must not be refused for money an acknowledged payment is moving in"
    for shard, owed in in_flight.items():
        await coordinator.phase_two.send(shard, owed)
    [second] = await onward
    assert second.status == PaymentStatus.SUCCESS
    # More than the credits settling would cover is refused at once, without waiting.
    [third] = await ledger.client.pay([payment(a, b, 25_01)])
    assert third.status == PaymentStatus.NOT_ENOUGH_MONEY
    idle(carrier)
    await ledger.stop()


async def test_a_read_waits_only_up_to_its_bound_then_shows_the_hold(tmp_path: Path) -> None:
    """A coordinator that cannot send its phase two (down, recovering) must not hang reads:
    past `read_settle_wait_ms` they answer, showing the payment's amount as reserved."""
    ledger = await LocalLedger(tmp_path, phase2_carry_ms=NEVER_MS, read_settle_wait_ms=200).start()
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 10_00)
    await ledger.coordinator().finish_phase2()
    carrier = busy(ledger)
    await ledger.client.pay([payment(a, b, 4_00)])
    [view_a] = await ledger.client.get_balances([a])
    assert view_a is not None
    assert (view_a.amount_minor, view_a.reserved_minor, view_a.available_minor) == (10_00, 4_00, 6_00)
    # The bound runs from the first read that waited: the next one does not wait again for
    # the same stuck leg (else a stuck coordinator would slow every read of the balance).
    again = asyncio.ensure_future(ledger.client.get_balances([a]))
    await spin()
    assert again.done()
    idle(carrier)
    await ledger.stop()


async def test_a_clean_stop_sends_the_phase_two_it_owes(tmp_path: Path) -> None:
    ledger = await LocalLedger(tmp_path, memory=True, phase2_carry_ms=NEVER_MS).start()
    _, (a, b), deposits = await open_funded_balances(ledger.client, 2, 10_00)
    carrier = busy(ledger)
    [paid] = await ledger.client.pay([payment(a, b, 5_00)])
    assert paid.id in ledger.coordinator().book.unfinished  # its phase two is still owed
    idle(carrier)
    await ledger.stop()
    with captured_events() as events:
        await ledger.start()
    [recovered] = [e for e in events if e["event"] == "recovered" and e["actor"] == "coordinator-0"]
    assert recovered["settled"] == 0, "the stop left phase two for the next start"
    stats = await asyncio.gather(*(ledger.client.shard(k).call("stats") for k in range(2)))
    assert sum(s["open_reservations"] for s in stats) == 0
    audit(await ledger.client.all_balances(), [*deposits, paid])
    await ledger.stop()


async def test_carried_legs_on_an_unwritable_partition_are_sent_again_later(tmp_path: Path) -> None:
    """A carried post whose partition cannot be written does not hold up the payment that
    carries it: the shard reports it, the coordinator sends it again until it is written,
    and only then journals the payment complete."""
    ledger = await LocalLedger(tmp_path, memory=True, phase2_carry_ms=NEVER_MS).start()
    _, ids, deposits = await open_funded_balances(ledger.client, 48, 10_00)  # c exists but 1 time in 10^6
    coordinator = ledger.coordinator()
    await coordinator.finish_phase2()
    carrier = busy(ledger)
    a = ids[0]
    # c: on a's shard, in another partition; b: anywhere but a's partition (it fails below).
    c = next(x for x in ids if shard_of(ledger, x) is shard_of(ledger, a) and partition_of(x, 4) != partition_of(a, 4))
    b = next(x for x in ids if x != c and partition_of(x, 4) != partition_of(a, 4))
    [first] = await ledger.client.pay([payment(a, b, 1_00)])
    assert ledger.stores is not None
    store = ledger.stores[f"p-{partition_of(a, 4)}"]
    store.fail_writes = True
    # Something else's flush fails on a's partition: its journal turns unwritable.
    stuck = asyncio.ensure_future(ledger.client.shard(ledger.client.shard_for(a)).call("change_balance", a, None, 1))
    for _ in range(1000):
        await spin()
        if not partition(ledger, a).journal.writable:
            break
    assert not partition(ledger, a).journal.writable

    [second] = await ledger.client.pay([payment(c, b, 2_00)])  # carries first's post on a's partition
    assert second.status == PaymentStatus.SUCCESS
    assert first.id in open_legs(ledger, a) and first.id in coordinator.book.unfinished

    store.fail_writes = False
    await stuck
    idle(carrier)
    assert await coordinator.finish_phase2() == 0  # the resent post got through
    assert first.id not in open_legs(ledger, a) and first.id not in coordinator.book.unfinished
    audit(await ledger.client.all_balances(), [*deposits, first, second])
    await ledger.stop()


async def test_alone_a_payment_sends_its_phase_two_at_once(tmp_path: Path) -> None:
    """No other payment in progress means no phase-one call will carry it soon: waiting
    for the timer would only delay the client's next read."""
    ledger = await LocalLedger(tmp_path, phase2_carry_ms=NEVER_MS).start()
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 10_00)
    [paid] = await ledger.client.pay([payment(a, b, 1_00)])
    for _ in range(100):
        await spin()
        if paid.id not in ledger.coordinator().book.unfinished:
            break
    assert paid.id not in open_legs(ledger, a) | open_legs(ledger, b)
    assert paid.id not in ledger.coordinator().book.unfinished
    await ledger.stop()
