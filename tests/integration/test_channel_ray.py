"""Real Ray actors: a coordinator's per-batch shard calls take the direct stream once it is
up, and after the shard is killed and restarted by Ray they take the new incarnation's
stream; no payment is lost or doubled on the way (the calls the broken stream carried went
again through Ray)."""

from __future__ import annotations

import asyncio
import random

import ray

from tests.integration.conftest import RayLedger
from tests.support.audit import audit
from tests.support.scenario import open_funded_balances, payment


async def _streamed(ledger: RayLedger) -> list[int]:
    stats = await asyncio.gather(*(ledger.client.shard(k).call("stats") for k in range(ledger.settings.shards)))
    return [s["streamed_calls"] for s in stats]


async def _pay_rounds(ledger: RayLedger, ids: list[str], rounds: int, rng: random.Random) -> list:  # type: ignore[type-arg]
    records = []
    for _ in range(rounds):
        batch = [payment(*rng.sample(ids, 2), rng.randint(1, 5_00)) for _ in range(20)]
        records += await asyncio.gather(*(ledger.client.pay([r]) for r in batch))
    return [r for [r] in records]


async def test_shard_calls_take_the_stream_and_find_it_again_after_a_restart(ray_ledger: RayLedger) -> None:
    client = ray_ledger.client
    _, ids, deposits = await open_funded_balances(client, 8, 100_00)
    rng = random.Random(7)
    first = await _pay_rounds(ray_ledger, ids, 10, rng)
    assert all(n > 0 for n in await _streamed(ray_ledger)), "no shard call went over a stream"

    ray.kill(ray.get_actor("shard-0", namespace=ray_ledger.settings.namespace), no_restart=False)
    during = await _pay_rounds(ray_ledger, ids, 5, rng)  # through Ray while the stream is down
    for _ in range(50):
        later = await _pay_rounds(ray_ledger, ids, 2, rng)
        during += later
        if (await _streamed(ray_ledger))[0] > 0:  # the new incarnation counts from zero
            break
    else:
        raise AssertionError("the coordinator never streamed to the restarted shard")
    audit(await client.all_balances(), [*deposits, *first, *during])
