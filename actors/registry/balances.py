"""The balance directory: which balances exist, whose they are and their currency (facts
that never change, so the gateway caches them), and opening each on its shard. Money state
(amount, holds, status, limits) lives only in the owning shard.

Creating a balance journals `BalanceCreated`, opens it on its shard, then journals
`BalanceReady`; a crash in between is repaired by re-opening (idempotent) on recovery.
Each currency's issuer balance is created with the first balance in that currency, and
the FX account's balance in a currency (its liquidity) with the first rate naming it."""

from __future__ import annotations

import asyncio

from actors.clock import new_id, now_ms
from actors.registry.accounts import Accounts
from actors.registry.answers import Answers
from actors.registry.currencies import CurrencyCatalog
from actors.registry.log import RegistryLog
from actors.registry.shards import ShardPeers
from actors.shard import BalanceShard
from ledger.messages import BalanceSpec
from ledger.records import Answered, BalanceCreated, BalanceReady, Record
from ledger.views import FX_ACCOUNT_ID, SYSTEM_ACCOUNT_ID, BalanceInfo, Idem


class Balances:
    RECORDS = (BalanceCreated, BalanceReady)

    def __init__(
        self,
        log: RegistryLog,
        answers: Answers,
        shards: ShardPeers,
        accounts: Accounts,
        catalog: CurrencyCatalog,
    ) -> None:
        self._log = log
        self._answers = answers
        self._shards = shards
        self._accounts = accounts
        self._catalog = catalog
        self._infos: dict[str, BalanceInfo] = {}
        self._by_account_currency: dict[tuple[str, str], str] = {}
        self._initial_limits: dict[str, int] = {}  # overdraft limit of balances not yet ready
        self._not_ready: set[str] = set()  # journaled, not yet known open on their shard
        self.liquidity: dict[str, str] = {}  # currency -> the FX account's balance in it
        self.creating = asyncio.Lock()  # serialises balance creation (one issuer per currency)

    def apply(self, r: Record) -> None:
        if isinstance(r, BalanceCreated):
            self._infos[r.balance_id] = BalanceInfo(r.balance_id, r.account_id, r.currency, r.created_at_ms)
            self._not_ready.add(r.balance_id)
            if r.overdraft_limit_minor:
                self._initial_limits[r.balance_id] = r.overdraft_limit_minor
            if r.account_id == SYSTEM_ACCOUNT_ID:
                self._catalog.issued(r.currency, r.balance_id)
            elif r.account_id == FX_ACCOUNT_ID:
                self.liquidity[r.currency] = r.balance_id
            else:
                self._accounts.added_balance(r.account_id, r.balance_id)
                self._by_account_currency[(r.account_id, r.currency)] = r.balance_id
        else:
            assert isinstance(r, BalanceReady)
            self._not_ready.discard(r.balance_id)
            self._initial_limits.pop(r.balance_id, None)

    def __len__(self) -> int:
        return len(self._infos)

    def info(self, balance_id: str) -> BalanceInfo | None:
        """The balance, open on its shard or not yet."""
        return self._infos.get(balance_id)

    def ready_info(self, balance_id: str) -> BalanceInfo | None:
        """The balance if it is open on its shard (the others are not told of yet)."""
        return self._infos.get(balance_id) if balance_id not in self._not_ready else None

    def journal_new(self, account_id: str, currency: str, overdraft_limit_minor: int = 0) -> str:
        """Journal a new balance (not yet durable nor open: `open_if_new` once it is)."""
        balance_id = new_id("bal")
        self._log.commit(BalanceCreated(balance_id, account_id, currency, now_ms(), overdraft_limit_minor))
        return balance_id

    async def open_if_new(self, balance_id: str) -> None:
        """Open a journaled (durable) balance on its shard, unless it is known open."""
        if balance_id not in self._not_ready:
            return
        info = self._infos[balance_id]
        spec = BalanceSpec(
            info.id,
            info.currency,
            self._initial_limits.get(info.id, 0),
            unlimited=info.account_id == SYSTEM_ACCOUNT_ID,
        )
        await self._shards.of(info.id).invoke(BalanceShard.open_balances, [spec])
        self._log.commit(BalanceReady(info.id))
        await self._log.durable()

    async def ensure_issuer(self, currency: str) -> None:
        """The currency's issuer balance, created and opened if it has none."""
        if self._catalog.issuer(currency) is None:
            async with self.creating:
                await self._issuer(currency)

    async def _issuer(self, currency: str) -> str:
        """Under `creating`."""
        issuer = self._catalog.issuer(currency)
        if issuer is None:
            issuer = self.journal_new(SYSTEM_ACCOUNT_ID, currency)
            await self._log.durable()
        await self.open_if_new(issuer)
        return issuer

    async def create(
        self, account_id: str, currency: str, overdraft_limit_minor: int, idem: Idem | None
    ) -> tuple[str, BalanceInfo | Answered | None]:
        self._log.require_writable()
        async with self.creating:
            if (answered := await self._answers.made_before(idem)) is not None:
                if answered.kind == "balance":  # its first open may have failed
                    await self.open_if_new(answered.ref)
                return "replay", answered
            account = self._accounts.of_client(account_id)
            if account is None:
                return "account_not_found", None
            if not account.active:
                await self._log.durable()  # the disabling read is durable before it is told
                return "account_disabled", None
            if self._catalog.info(currency) is None:
                return "unknown_currency", None
            if (account_id, currency) in self._by_account_currency:
                await self._log.durable()
                return "balance_exists", None
            await self._issuer(currency)
            balance_id = self.journal_new(account_id, currency, overdraft_limit_minor)
            self._answers.record(idem, "balance", balance_id, overdraft_limit_minor)
            await self._log.durable()
            await self.open_if_new(balance_id)
            return "ok", self._infos[balance_id]

    async def lookup(self, balance_ids: list[str]) -> list[BalanceInfo | None]:
        await self._log.durable()
        return [self.ready_info(b) for b in balance_ids]

    async def ready_ids(self) -> list[str]:
        await self._log.durable()
        return [b for b in self._infos if b not in self._not_ready]

    async def mirror_status(self, account_id: str) -> None:
        """Tell the shards of the account's open balances whether it is active."""
        account = self._accounts.account(account_id)
        by_shard: dict[int, list[str]] = {}
        for balance_id in account.balance_ids:
            if balance_id not in self._not_ready:
                by_shard.setdefault(self._shards.index_of(balance_id), []).append(balance_id)
        await asyncio.gather(
            *(
                self._shards.at(k).invoke(BalanceShard.set_account_active, ids, account.active)
                for k, ids in by_shard.items()
            )
        )

    async def recover(self) -> None:
        """Open what a crash left unopened; again tell the shards every status changed, as a
        crash may have come between journaling a change and telling them."""
        for balance_id in sorted(self._not_ready):
            await self.open_if_new(balance_id)
        for account_id in self._accounts.status_changed():
            await self.mirror_status(account_id)
