"""Real Ray actors: kill each kind in the middle of concurrent payments and check that no
money is created or lost, every acknowledged payment is present, nothing stays reserved."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import ray

from actors.factory import LayoutMismatch, PartitionCountMismatch, running_actors, stop_ledger
from ledger.records import PaymentRecord
from ledger.results import FINAL_STATUSES, PaymentStatus
from tests.integration.conftest import RayLedger
from tests.support.audit import audit
from tests.support.scenario import open_funded_balances, payment

CONCURRENCY = 40
PAYMENTS = 300


async def _open_holds(ledger: RayLedger) -> int:
    stats = await asyncio.gather(*(ledger.client.shard(k).call("stats") for k in range(ledger.settings.shards)))
    return sum(s["open_reservations"] for s in stats)


@pytest.mark.parametrize("victim", ["shard-0", "shard-1", "coordinator-0", "registry"])
async def test_actor_killed_mid_payments_loses_nothing(ray_ledger: RayLedger, victim: str) -> None:
    client = ray_ledger.client
    _, ids, deposits = await open_funded_balances(client, 8, 50_00)
    rng = random.Random(victim)
    requests = [payment(*rng.sample(ids, 2), rng.randint(1, 20_00)) for _ in range(PAYMENTS)]
    handle = ray.get_actor(victim, namespace=ray_ledger.settings.namespace)
    limiter = asyncio.Semaphore(CONCURRENCY)
    done_before_kill = asyncio.Event()
    finished = 0

    async def pay(request):  # type: ignore[no-untyped-def]
        nonlocal finished
        async with limiter:
            [record] = await client.pay([request])
        finished += 1
        if finished == PAYMENTS // 10:
            done_before_kill.set()
        return record

    async def nemesis() -> None:
        await done_before_kill.wait()
        ray.kill(handle, no_restart=False)  # Ray restarts it; __init__ replays its journal

    results, _ = await asyncio.gather(asyncio.gather(*(pay(r) for r in requests)), nemesis())
    acknowledged: list[PaymentRecord] = [*deposits, *results]

    assert all(r.status in FINAL_STATUSES for r in results)
    assert sum(r.status == PaymentStatus.SUCCESS for r in results[PAYMENTS // 2 :]) > 0, "no progress after the kill"
    audit(await client.all_balances(), acknowledged)
    assert await _open_holds(ray_ledger) == 0
    for r in rng.sample(results, 30):
        stored = await client.get_payment(r.id)
        assert stored is not None and stored.status == r.status


async def test_whole_ledger_restart_recovers_state(ray_ledger: RayLedger) -> None:
    client = ray_ledger.client
    _, ids, deposits = await open_funded_balances(client, 4, 10_00)
    paid = await client.pay([payment(ids[0], ids[1], 3_00), payment(ids[2], ids[3], 20_00)])
    assert [p.status for p in paid] == [PaymentStatus.SUCCESS, PaymentStatus.NOT_ENOUGH_MONEY]
    before = sorted(await client.all_balances(), key=lambda b: b.balance_id)

    ray_ledger.stop()  # every actor gone for good: only the journals remain
    client = ray_ledger.start().client

    after = sorted(await client.all_balances(), key=lambda b: b.balance_id)
    assert after == before
    audit(after, [*deposits, *paid])
    assert (await client.get_payment(paid[1].id)).status == PaymentStatus.NOT_ENOUGH_MONEY


async def test_restart_with_more_shards_moves_partitions(ray_ledger: RayLedger) -> None:
    _, ids, deposits = await open_funded_balances(ray_ledger.client, 6, 7_00)
    before = sorted(await ray_ledger.client.all_balances(), key=lambda b: b.balance_id)
    ray_ledger.stop()

    ray_ledger.reconfigure(shards=3, coordinators=2).start()

    client = ray_ledger.client
    assert sorted(await client.all_balances(), key=lambda b: b.balance_id) == before
    paid = await client.pay([payment(ids[0], ids[5], 7_00), payment(ids[1], ids[4], 1_00)])
    assert [p.status for p in paid] == [PaymentStatus.SUCCESS, PaymentStatus.SUCCESS]
    audit(await client.all_balances(), [*deposits, *paid])


async def test_another_layout_is_refused_while_the_ledger_runs(ray_ledger: RayLedger) -> None:
    """A second `serve` with more shards beside a running ledger would give partitions two
    writers: refused until the running actors are stopped."""
    _, ids, deposits = await open_funded_balances(ray_ledger.client, 4, 5_00)
    second = RayLedger(Path(ray_ledger.settings.data_dir))  # another serve of the same ledger
    second.settings = ray_ledger.settings
    with pytest.raises(LayoutMismatch, match="shard-0, shard-1"):
        second.reconfigure(shards=3).start()
    assert await ray_ledger.client.all_balances()  # the running ledger is untouched

    stopped = stop_ledger(ray_ledger.settings.namespace)
    assert stopped == ["coordinator-0", "registry", "shard-0", "shard-1", "webhooks"]
    assert running_actors(ray_ledger.settings.namespace) == set()
    ray_ledger.handles = None  # already stopped
    client = ray_ledger.reconfigure(shards=3).start().client
    paid = await client.pay([payment(ids[0], ids[3], 5_00)])
    assert paid[0].status == PaymentStatus.SUCCESS
    audit(await client.all_balances(), [*deposits, *paid])


async def test_partition_count_is_fixed_at_creation(ray_ledger: RayLedger) -> None:
    ray_ledger.stop()
    ray_ledger.reconfigure(partitions=8)
    with pytest.raises(PartitionCountMismatch, match="created with 4 partitions"):
        ray_ledger.start()
    # Only the registry was created before the refusal.
    ray.kill(ray.get_actor("registry", namespace=ray_ledger.settings.namespace), no_restart=True)


async def test_concurrent_payments_cannot_overspend(ray_ledger: RayLedger) -> None:
    """The original system's lost-update race: 200 concurrent payments out of a balance
    that can afford 50 of them."""
    client = ray_ledger.client
    issuer, [source, target], _ = await open_funded_balances(client, 2, 0)
    [funding] = await client.pay([payment(issuer, source, 50 * 2_00)])
    results = await asyncio.gather(*(client.pay([payment(source, target, 2_00)]) for _ in range(200)))
    statuses = [r[0].status for r in results]
    assert statuses.count(PaymentStatus.SUCCESS) == 50
    assert statuses.count(PaymentStatus.NOT_ENOUGH_MONEY) == 150
    balances = await client.all_balances()
    audit(balances, [funding, *(r[0] for r in results)])
    by_id = {b.balance_id: b.amount_minor for b in balances}
    assert by_id[source] == 0 and by_id[target] == 100_00
