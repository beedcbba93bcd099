"""A balance change (status, overdraft limit) is journaled by the registry before its shard
makes it, and what the shard did after: a crash at either point still ends with the change
made and exactly one `balance.updated` event; a refused or idle change is no event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from journal.memory import MemoryJournal
from ledger.records import BalanceUpdated
from ledger.results import Check
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances, payment


def updates(ledger: LocalLedger) -> list[BalanceUpdated]:
    """The registry journal's balance.updated events (BalanceUpdated records that changed)."""
    assert ledger.stores is not None
    records = [s.record for s in MemoryJournal(ledger.stores["registry"].survivor()).load().records]
    return [r for r in records if isinstance(r, BalanceUpdated) and r.changed]


async def limit_of(ledger: LocalLedger, balance_id: str) -> int:
    [view] = await ledger.client.get_balances([balance_id])
    assert view is not None
    return view.overdraft_limit_minor


async def test_changes_are_events_but_refused_and_idle_ones_are_not(tmp_path: Path) -> None:
    ledger = await LocalLedger(tmp_path, memory=True).start()
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 10_00)
    registry = ledger.client.registry
    assert await registry.call("change_balance", a, None, 5_00) == Check.OK
    assert await registry.call("change_balance", a, None, 5_00) == Check.OK  # already so: no event
    [paid] = await ledger.client.pay([payment(a, b, 14_00)])  # a: -4.00, within its limit
    assert paid.status == "success"
    await ledger.coordinator().finish_phase2()
    assert await registry.call("change_balance", a, None, 0) == Check.NOT_ENOUGH_MONEY  # would not cover it
    assert await registry.call("change_balance", a, False, None) == Check.OK
    assert await registry.call("change_balance", "bal_unknown", False, None) == Check.BALANCE_NOT_FOUND
    await ledger.stop()
    assert [(u.balance_id, u.active, u.overdraft_limit_minor) for u in updates(ledger)] == [
        (a, True, 5_00),
        (a, False, 5_00),
    ]


@pytest.mark.parametrize(
    ("tag", "when"),
    [
        ("bq", "after"),  # the change is journaled, its shard never heard of it
        ("bu", "before"),  # the shard made it, what it did was not journaled
    ],
)
async def test_a_change_cut_by_a_crash_is_made_and_announced_once_at_recovery(
    tmp_path: Path, tag: str, when: str
) -> None:
    ledger = await LocalLedger(tmp_path, memory=True).start()
    _, (a,), _ = await open_funded_balances(ledger.client, 1, 10_00)
    await ledger.coordinator().finish_phase2()
    change = asyncio.ensure_future(ledger.client.registry.call("change_balance", a, None, 7_00))
    await ledger.crash_at([change], tag, when, lambda: None)
    assert updates(ledger) == []
    await ledger.start()
    assert await limit_of(ledger, a) == 7_00
    [update] = updates(ledger)
    assert (update.balance_id, update.active, update.overdraft_limit_minor) == (a, True, 7_00)
    await ledger.stop()
    await ledger.start()  # answered now: a later start asks nothing again
    assert len(updates(ledger)) == 1
    await ledger.stop()
