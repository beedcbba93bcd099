"""Replayed state is frozen out of the garbage collector's scans (actors.memory): a full
collection never rescans a million balances or the recent-payments cache."""

from __future__ import annotations

import gc
from pathlib import Path

from actors.shard import BalanceShard
from actors.topology import shard_name
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances


async def test_a_restarted_ledger_keeps_its_replayed_state_out_of_collections(tmp_path: Path) -> None:
    ledger = await LocalLedger(tmp_path).start()
    await open_funded_balances(ledger.client, 20, 10_00)
    await ledger.stop()
    await ledger.start()

    scanned = {id(o) for o in gc.get_objects()}  # every generation the collector scans
    shard = ledger.objects[shard_name(0)]
    assert isinstance(shard, BalanceShard)
    balances = [b for part in shard.partitions.values() for b in part.book.balances.values()]
    recent = list(ledger.coordinator().book.recent.values())
    assert balances and recent
    assert all(gc.is_tracked(b) for b in balances)  # tracked objects, yet
    assert not any(id(o) in scanned for o in [*balances, *recent])  # never rescanned
    await ledger.stop()
