"""Changes of a balance's status or overdraft limit. Each is journaled as asked before its
shard makes it, then as what the shard did (`BalanceUpdated`, the `balance.updated` event
when something changed); one asked and not answered before a crash is made on recovery.
One change at a time, so that each ask pairs up with its answer."""

from __future__ import annotations

import asyncio

from actors.clock import now_ms
from actors.registry.balances import Balances
from actors.registry.log import RegistryLog
from actors.registry.shards import ShardPeers
from actors.shard import BalanceShard
from ledger.records import BalanceChangeAsked, BalanceUpdated, Record
from ledger.results import Check


class BalanceChanges:
    RECORDS = (BalanceChangeAsked, BalanceUpdated)

    def __init__(self, log: RegistryLog, shards: ShardPeers, balances: Balances) -> None:
        self._log = log
        self._shards = shards
        self._balances = balances
        self._asked: dict[str, BalanceChangeAsked] = {}  # balance -> a change not yet answered
        self._changing = asyncio.Lock()

    def apply(self, r: Record) -> None:
        if isinstance(r, BalanceChangeAsked):
            self._asked[r.balance_id] = r
        else:
            assert isinstance(r, BalanceUpdated)
            self._asked.pop(r.balance_id, None)

    async def change(self, balance_id: str, active: bool | None, overdraft_limit_minor: int | None) -> int:
        self._log.require_writable()
        if self._balances.info(balance_id) is None:
            return int(Check.BALANCE_NOT_FOUND)
        async with self._changing:
            asked = BalanceChangeAsked(balance_id, active, overdraft_limit_minor, now_ms())
            self._log.commit(asked)
            await self._log.durable()
            return await self._make(asked)

    async def recover(self) -> None:
        for asked in sorted(self._asked.values(), key=lambda a: a.at_ms):
            await self._make(asked, recovering=True)

    async def _make(self, asked: BalanceChangeAsked, *, recovering: bool = False) -> int:
        info = self._balances.info(asked.balance_id)
        assert info is not None, f"a change asked of unknown balance {asked.balance_id}"
        code, active, limit, changed = await self._shards.of(info.id).invoke(
            BalanceShard.change_balance, info.id, asked.active, asked.overdraft_limit_minor
        )
        if recovering:  # the shard may have made it before the crash: its event was not journaled
            changed = code == Check.OK
        self._log.commit(BalanceUpdated(info.id, info.account_id, info.currency, changed, active, limit, now_ms()))
        await self._log.durable()
        return int(code)
