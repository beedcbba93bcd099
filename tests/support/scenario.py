"""Building blocks for scenarios driven through LedgerClient (integration tests, bench)."""

from __future__ import annotations

import os
import time

from actors.client import LedgerClient
from ledger.ids import make_id
from ledger.messages import PaymentRequest
from ledger.records import PaymentRecord
from ledger.results import PaymentStatus


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def payment(balance_from: str, balance_to: str, amount_minor: int, currency: str = "USD") -> PaymentRequest:
    return PaymentRequest(
        make_id("pay", now_ms(), os.urandom(10)), balance_from, balance_to, amount_minor, currency, now_ms()
    )


async def open_funded_balances(
    client: LedgerClient, count: int, deposit_minor: int, currency: str = "USD", prefix: str = "user"
) -> tuple[str, list[str], list[PaymentRecord]]:
    """(issuer balance id, balance ids, the deposit payments)."""
    ids = []
    for n in range(count):
        account = await client.registry.call("create_account", f"{prefix}{n}@example.com", None)
        assert account is not None
        code, info = await client.registry.call("create_balance", account.id, currency, 0)
        assert code == "ok", code
        ids.append(info.id)
    issuer = (await client.registry.call("currency", currency, ensure_issuer=True)).issuer_balance_id
    deposits = await client.pay([payment(issuer, b, deposit_minor, currency) for b in ids]) if deposit_minor else []
    assert all(p.status == PaymentStatus.SUCCESS for p in deposits)
    return issuer, ids, deposits
