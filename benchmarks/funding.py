"""Setting up funded balances through the engine's client (benchmarks and tests)."""

from __future__ import annotations

import asyncio
import os

from actors.client import LedgerClient
from actors.clock import now_ms
from actors.registry import Registry
from ledger.ids import make_id
from ledger.messages import PaymentRequest
from ledger.records import PaymentRecord
from ledger.results import PaymentStatus


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
