"""One journal file per shard, and partitions handed over between files when the shard
count changes (real SQLite files, shards as plain objects): the state survives 2 -> 4 -> 1
shards, each partition ends up in exactly one file, and a hand-off interrupted between its
copy and its delete is finished by the next start (and reported by the audit meanwhile)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

import journal.handoff
from actors.audit import verify
from actors.settings import Settings
from actors.shard import BalanceShard, shard_journal_path
from actors.topology import partition_of, shard_of_partition
from journal import JournalCorrupt, adopt_partitions
from ledger.messages import BalanceSpec, HoldRef, SideRequest
from ledger.results import Check

PARTITIONS = 8
IDS = [f"bal_{n}" for n in range(24)]


def settings(tmp_path: Path, shards: int) -> Settings:
    return Settings(data_dir=str(tmp_path), partitions=PARTITIONS, shards=shards)


async def start(tmp_path: Path, shards: int) -> list[BalanceShard]:
    return [BalanceShard(settings(tmp_path, shards), k) for k in range(shards)]


def owner(shards: list[BalanceShard], balance_id: str) -> BalanceShard:
    return shards[shard_of_partition(partition_of(balance_id, PARTITIONS), len(shards))]


async def pay(shards: list[BalanceShard], pid: str, source: str, target: str, amount: int) -> None:
    assert await owner(shards, source).reserve(0, 1, [SideRequest(pid, source, amount, "USD")]) == [Check.OK]
    assert await owner(shards, target).prepare(0, 1, [SideRequest(pid, target, amount, "USD")]) == [Check.OK]
    await owner(shards, source).post([HoldRef(pid, source)])
    await owner(shards, target).post([HoldRef(pid, target)])


async def amounts(shards: list[BalanceShard]) -> dict[str, int]:
    found = {}
    for b in ["bal_issuer", *IDS]:
        [view] = await owner(shards, b).get_balances([b])
        assert view is not None, b
        found[b] = view.amount_minor
    return found


async def stop(shards: list[BalanceShard]) -> None:
    for shard in shards:
        await shard.close()


def parts_in(path: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {p for (p,) in db.execute("SELECT DISTINCT part FROM frames")}


async def test_state_follows_its_partitions_through_every_layout(tmp_path: Path) -> None:
    shards = await start(tmp_path, 2)
    for b in ["bal_issuer", *IDS]:
        await owner(shards, b).open_balances([BalanceSpec(b, "USD", unlimited=b == "bal_issuer")])
    for n, b in enumerate(IDS):
        await pay(shards, f"dep_{n}", "bal_issuer", b, 100 + n)
    for n in range(40):
        await pay(shards, f"pay_{n}", IDS[n % 24], IDS[(n * 7 + 3) % 24], 1 + n % 5)
    before = await amounts(shards)
    await stop(shards)

    for layout in (4, 1, 3):
        shards = await start(tmp_path, layout)
        assert await amounts(shards) == before, f"{layout} shards"
        await pay(shards, f"more_{layout}", IDS[0], IDS[1], 1)  # and they keep writing
        before = await amounts(shards)
        await stop(shards)
        files = sorted((tmp_path / "shards").glob("s-*.sqlite"))
        held = [parts_in(f) for f in files]
        assert sorted(p for parts in held for p in parts) == list(range(PARTITIONS)), "each partition in one file"
        for k in range(layout):
            wanted = {p for p in range(PARTITIONS) if shard_of_partition(p, layout) == k}
            assert parts_in(shard_journal_path(settings(tmp_path, layout), k)) == wanted
        report = verify(tmp_path)
        assert report.violations == [] and report.balances == 25 and report.totals == {"USD": 0}


async def test_a_handoff_cut_between_copy_and_delete_is_finished_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = await start(tmp_path, 1)
    for b in ["bal_issuer", *IDS]:
        await shards[0].open_balances([BalanceSpec(b, "USD", unlimited=b == "bal_issuer")])
    for n, b in enumerate(IDS):
        await pay(shards, f"dep_{n}", "bal_issuer", b, 10)
    before = await amounts(shards)
    await stop(shards)

    def crash(*_: object) -> None:
        raise RuntimeError("the process died after copying")

    monkeypatch.setattr(journal.handoff, "_drop", crash)
    with pytest.raises(RuntimeError, match="died after copying"):
        BalanceShard(settings(tmp_path, 2), 1)
    monkeypatch.undo()
    copied = parts_in(shard_journal_path(settings(tmp_path, 2), 1))
    assert copied and copied <= parts_in(shard_journal_path(settings(tmp_path, 1), 0))  # two copies now
    assert any("start the ledger once to finish its hand-off" in v for v in verify(tmp_path).violations)

    shards = await start(tmp_path, 2)
    assert await amounts(shards) == before
    await stop(shards)
    assert parts_in(shard_journal_path(settings(tmp_path, 2), 0)).isdisjoint(copied)
    assert verify(tmp_path).violations == []


async def test_two_different_chains_of_one_partition_are_refused(tmp_path: Path) -> None:
    """Files from two different ledgers in one data directory: never merged."""
    for ledger in ("a", "b"):
        shard = BalanceShard(settings(tmp_path / ledger, 1), 0)
        await shard.open_balances([BalanceSpec(f"bal_{ledger}{n}", "USD") for n in range(8)])
        await shard.close()
    mine = tmp_path / "a" / "shards" / "s-000.sqlite"
    theirs = tmp_path / "b" / "shards" / "s-000.sqlite"
    shared = sorted(parts_in(mine) & parts_in(theirs))
    assert shared
    with pytest.raises(JournalCorrupt, match="not a prefix"):
        adopt_partitions(mine, [mine, theirs], shared)
