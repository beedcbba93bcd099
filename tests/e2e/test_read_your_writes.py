"""Read-your-writes under load (docs/design.md §5): a read of either balance right after an
acknowledged payment reflects it, even though the payment's phase two may still be on its
way to the shards. Many clients at once, so that reads race phase two for real."""

from __future__ import annotations

import asyncio
import uuid

from tests.support.api import Api

CLIENTS = 24
PAYMENTS_EACH = 15


async def test_reads_right_after_an_acknowledged_payment_reflect_it(api: Api) -> None:
    async def pair() -> tuple[str, str]:
        ids = []
        for _ in range(2):
            account = await api.account(f"ryw-{uuid.uuid4().hex[:12]}@example.com")
            ids.append((await api.balance(account["id"], "USD"))["id"])
        await api.deposit(ids[0], "1000")
        return ids[0], ids[1]

    pairs = await asyncio.gather(*(pair() for _ in range(CLIENTS)))
    stale: list[str] = []

    async def client(source: str, target: str) -> int:
        paid_minor = 0  # only this client touches its pair, so both amounts are known
        for n in range(PAYMENTS_EACH):
            reply = await api.pay(source, target, f"{n + 1}.01")
            assert reply.status == 201 and reply.body["status"] == "success", reply
            paid_minor += (n + 1) * 100 + 1
            src, dst = await asyncio.gather(api.get(f"/v1/balances/{source}"), api.get(f"/v1/balances/{target}"))
            if int(src.body["amount"].replace(".", "")) != 100_000 - paid_minor:
                stale.append(f"{source} after {reply.body['id']}: {src.body['amount']}")
            if int(dst.body["amount"].replace(".", "")) != paid_minor:
                stale.append(f"{target} after {reply.body['id']}: {dst.body['amount']}")
        return PAYMENTS_EACH

    done = await asyncio.gather(*(client(s, t) for s, t in pairs))
    assert sum(done) == CLIENTS * PAYMENTS_EACH
    assert stale == [], f"{len(stale)} stale reads of {2 * sum(done)}: {stale[:5]}"
