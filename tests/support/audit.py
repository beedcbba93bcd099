"""The Auditor: invariants checked after every scenario.

Given the balances as the ledger reports them and the payments it acknowledged, it checks
conservation per currency, no balance below its limit, no open holds left behind, and that
every balance equals what the acknowledged successful payments imply.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from ledger.book import BalanceView
from ledger.records import PaymentRecord
from ledger.results import PaymentStatus


def expected_amounts(payments: Iterable[PaymentRecord]) -> dict[str, int]:
    amounts: dict[str, int] = defaultdict(int)
    for p in payments:
        if p.status == PaymentStatus.SUCCESS:
            amounts[p.balance_from] -= p.amount_minor
            amounts[p.balance_to] += p.amount_minor
    return amounts


def audit(balances: list[BalanceView], acknowledged: list[PaymentRecord]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for b in balances:
        totals[b.currency] += b.amount_minor
        assert b.reserved_minor == 0, f"{b.balance_id} still has {b.reserved_minor} reserved"
        if not b.unlimited:
            assert b.amount_minor >= -b.overdraft_limit_minor, f"{b.balance_id} is below its limit"
    assert all(t == 0 for t in totals.values()), f"money created or lost: {dict(totals)}"
    expected = expected_amounts(acknowledged)
    by_id = {b.balance_id: b.amount_minor for b in balances}
    for balance_id, amount in expected.items():
        assert by_id[balance_id] == amount, f"{balance_id}: ledger has {by_id[balance_id]}, acknowledged {amount}"
