"""Setting up funded balances, through the engine's client or through the REST API
(benchmarks and tests)."""

from __future__ import annotations

import asyncio
import os
import time

from actors.client import LedgerClient
from actors.clock import now_ms
from actors.registry import Registry
from ledger.ids import make_id
from ledger.messages import PaymentRequest
from ledger.records import PaymentRecord
from ledger.results import PaymentStatus
from rayledger.client import Client


def payment(balance_from: str, balance_to: str, amount_minor: int, currency: str = "USD") -> PaymentRequest:
    return PaymentRequest(
        make_id("pay", now_ms(), os.urandom(10)), balance_from, balance_to, amount_minor, currency, now_ms()
    )


async def open_funded_balances(
    client: LedgerClient, count: int, deposit_minor: int, currency: str = "USD", prefix: str = "user"
) -> tuple[str, list[str], list[PaymentRecord]]:
    """(issuer balance id, balance ids, the deposit payments). Accounts and balances are
    opened concurrently, so their journal records share flushes."""
    registry = client.registry
    accounts = await asyncio.gather(
        *(registry.invoke(Registry.create_account, f"{prefix}{n}@example.com", None) for n in range(count))
    )
    assert all(a is not None for a in accounts)
    opened = await asyncio.gather(*(registry.invoke(Registry.create_balance, a.id, currency, 0) for a in accounts))
    assert all(code == "ok" for code, _ in opened), opened
    ids = [info.id for _, info in opened]
    issuer = (await registry.invoke(Registry.currency, currency, ensure_issuer=True)).issuer_balance_id
    deposits = await client.pay([payment(issuer, b, deposit_minor, currency) for b in ids]) if deposit_minor else []
    assert all(p.status == PaymentStatus.SUCCESS for p in deposits)
    return issuer, ids, deposits


FUNDS = "1000000"  # per balance opened through the API: no run can exhaust it
TOTAL_SETTLE_S = 15


async def open_balances(url: str, token: str, count: int) -> list[str]:
    """`count` USD balances funded with FUNDS each, through the API; their accounts' emails
    are new on every call, so a running server can be used again."""
    limit = asyncio.Semaphore(16)
    stamp = time.time_ns()
    async with Client(url, token) as ledger:

        async def one(n: int) -> str:
            async with limit:
                account = await ledger.accounts.create(email=f"bench-{stamp}-{n}@example.com")
                balance = await ledger.balances.create(account.id, currency="USD")
                await ledger.deposits.create(balance_id=balance.id, amount=FUNDS)
                return balance.id

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def total(url: str, token: str, ids: list[str]) -> int:
    """The balances' amounts together, in minor units (cents), once they have settled.

    A load generator stops with requests still in flight at the server, and a read of one
    balance after another may see a payment posted on one side and not yet on the other:
    summed again each second until two sums agree (as ../shared/bench/loadgen.py does),
    at most TOTAL_SETTLE_S times."""
    async with Client(url, token) as ledger:

        async def once() -> int:
            return sum([int((await ledger.balances.get(b)).amount.replace(".", "")) for b in ids])

        summed = await once()
        for _ in range(TOTAL_SETTLE_S):
            await asyncio.sleep(1.0)
            again = await once()
            if again == summed:
                break
            summed = again
        return summed


def conserved(total_minor: int, ids: list[str]) -> bool:
    """Whether balances opened by `open_balances` still hold what they were funded with."""
    return total_minor == len(ids) * int(FUNDS) * 100
