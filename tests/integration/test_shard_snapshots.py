"""Shard snapshots bound replay: after a snapshot, a restarted shard loads it plus the
records after it and serves exactly the same balances and holds (real SQLite files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.settings import Settings
from actors.shard import BalanceShard
from actors.topology import partition_of, shard_of_partition
from ledger.messages import BalanceSpec, HoldRef, SideRequest
from ledger.results import Check


async def _views(shard: BalanceShard, ids: list[str]) -> list[object]:
    return await shard.get_balances(ids)


async def test_restart_after_snapshots_reproduces_state(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), partitions=2, shards=1, snapshot_every_records=25)
    shard = BalanceShard(settings, 0)
    ids = [f"bal_{n}" for n in range(10)]
    await shard.open_balances([BalanceSpec("bal_issuer", "USD", 0, unlimited=True)])
    await shard.open_balances([BalanceSpec(b, "USD") for b in ids])
    for n in range(60):  # deposits and payments, posted; some left open as holds
        source, target = ("bal_issuer", ids[n % 10]) if n < 20 else (ids[n % 10], ids[(n + 3) % 10])
        pid = f"pay_{n}"
        assert await shard.reserve(0, 1, [SideRequest(pid, source, 5, "USD")]) == [Check.OK]
        assert await shard.prepare(0, 1, [SideRequest(pid, target, 5, "USD")]) == [Check.OK]
        if n % 7 != 0:
            await shard.post([HoldRef(pid, source), HoldRef(pid, target)])
    before = await _views(shard, ["bal_issuer", *ids])
    holds_before = sorted(
        (h.payment_id, h.balance_id) for p in shard.partitions.values() for h in p.book.open_reservations()
    )
    await shard.close()  # waits for snapshots still being written
    snapshot_seqs = {p.index: p.snapshot_seq for p in shard.partitions.values()}
    assert any(seq > 0 for seq in snapshot_seqs.values()), "no snapshot was taken"

    again = BalanceShard(settings, 0)
    assert {p.index: p.snapshot_seq for p in again.partitions.values()} == snapshot_seqs
    assert await _views(again, ["bal_issuer", *ids]) == before
    holds_after = sorted(
        (h.payment_id, h.balance_id) for p in again.partitions.values() for h in p.book.open_reservations()
    )
    assert holds_after == holds_before and len(holds_after) == 2 * 9
    assert sum(v.amount_minor for v in await _views(again, ["bal_issuer", *ids])) == 0
    await again.close()


async def test_legs_applied_by_a_call_that_fails_are_journaled(tmp_path: Path) -> None:
    """A shard applies a call's legs one by one and journals them together: a call that
    fails midway (here a leg for a balance another shard owns, a coordinator's bug) leaves
    the legs it applied in the journal too, so a restart finds what memory held."""
    settings = Settings(data_dir=str(tmp_path), partitions=4, shards=2)
    ours = [b for b in (f"bal_{n}" for n in range(40)) if shard_of_partition(partition_of(b, 4), 2) == 0]
    theirs = next(b for b in (f"bal_{n}" for n in range(40)) if b not in ours)
    shard = BalanceShard(settings, 0)
    await shard.open_balances([BalanceSpec(b, "USD", 0, unlimited=True) for b in ours[:2]])
    with pytest.raises(AssertionError, match="not owned"):
        await shard.reserve(0, 1, [SideRequest("pay_1", ours[0], 5, "USD"), SideRequest("pay_1", theirs, 5, "USD")])
    held = sorted((h.payment_id, h.balance_id) for p in shard.partitions.values() for h in p.book.open_reservations())
    assert held == [("pay_1", ours[0])]
    await shard.close()
    again = BalanceShard(settings, 0)
    assert (
        sorted((h.payment_id, h.balance_id) for p in again.partitions.values() for h in p.book.open_reservations())
        == held
    )
    await again.close()
