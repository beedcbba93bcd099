"""The Registry actor: it builds the registry's parts, each given only what it needs,
replays its journal into them, and answers each remote call by handing it to the part that
owns it. Its public methods are its remote API (`actors.factory.ray_shell` forwards them,
and peers name them: `Peer.invoke(Registry.use_quotes, ...)`); helpers live on the parts."""

from __future__ import annotations

import asyncio
import logging
import time

from actors.clock import now_ms
from actors.events import EventReads
from actors.logs import event
from actors.memory import freeze_long_lived_state
from actors.peers import PeerLookup
from actors.registry.accounts import Accounts
from actors.registry.answers import Answers
from actors.registry.balances import Balances
from actors.registry.changes import BalanceChanges
from actors.registry.currencies import CurrencyCatalog
from actors.registry.exchange import Exchange
from actors.registry.keys import ApiKeys
from actors.registry.log import RegistryLog
from actors.registry.shards import ShardPeers
from actors.settings import Settings
from actors.telemetry import Telemetry, placement
from actors.topology import REGISTRY_NAME
from journal import Journal, SqliteJournal
from ledger.records import Answered, FxQuote, FxRateSet, Genesis, Record
from ledger.views import AccountInfo, BalanceInfo, CurrencyView, Idem, KeyView

log = logging.getLogger("rayledger.registry")


def registry_journal_path(settings: Settings) -> str:
    return str(settings.data_path / "registry.sqlite")


class Registry(EventReads):  # its journal holds API events
    def __init__(self, settings: Settings, peers: PeerLookup | None = None, journal: Journal | None = None) -> None:
        self.settings = settings
        self.journal = journal or SqliteJournal(
            registry_journal_path(settings),
            busy_timeout_ms=settings.journal_busy_timeout_ms,
            commit_on_loop=settings.journal_commit_on_loop,
        )
        self.partitions: int | None = None
        self._recovery: asyncio.Task[None] | None = None
        started = time.perf_counter()
        self.journal.event_source = "r00"  # accounts, balances and rates are API events
        # Parts point down: each is handed the parts it reads or tells, never one above it.
        self.records = RegistryLog(self.journal)
        self.shards = ShardPeers(settings, peers)
        self.answers = Answers(self.records, settings.idempotency_window_s)
        self.catalog = CurrencyCatalog(self.records, self.answers)
        self.accounts = Accounts(self.records, self.answers)
        self.balances = Balances(self.records, self.answers, self.shards, self.accounts, self.catalog)
        self.changes = BalanceChanges(self.records, self.shards, self.balances)
        self.exchange = Exchange(self.records, self.catalog, self.balances)
        self.keys = ApiKeys(self.records, self.answers, self.accounts)
        for part in (self.answers, self.catalog, self.accounts, self.balances, self.changes, self.exchange, self.keys):
            self.records.route(part.RECORDS, part.apply)
        self.records.route((Genesis,), self._apply_genesis)
        replayed = self.records.replay()
        self.telemetry = Telemetry(settings.namespace, REGISTRY_NAME)
        self.telemetry.watch(self.journal, "registry")
        freeze_long_lived_state()
        event(
            log,
            "recovered",
            actor=REGISTRY_NAME,
            accounts=len(self.accounts),
            balances=len(self.balances),
            records_replayed=replayed,
            seconds=round(time.perf_counter() - started, 3),
            **placement(),
        )

    def __repr__(self) -> str:  # Ray prefixes forwarded log lines with it (with the class name during __init__)
        return REGISTRY_NAME

    def _apply_genesis(self, r: Record) -> None:
        assert isinstance(r, Genesis)
        assert self.partitions is None, "genesis happens once"
        self.partitions = r.partitions

    # -- lifecycle ------------------------------------------------------------------------
    async def genesis(self, partitions: int) -> int:
        """Fix the partition count on first start; return the stored one."""
        if self.partitions is None:
            self.records.commit(Genesis(partitions, now_ms()))
            await self.records.durable()
        assert self.partitions is not None
        return self.partitions

    async def ready(self) -> bool:
        if self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self._recover())
        await asyncio.shield(self._recovery)
        return True

    async def _recover(self) -> None:
        await self.balances.recover()
        await self.changes.recover()

    async def close(self) -> None:
        await self.journal.close()

    # -- idempotency of creates ---------------------------------------------------------------
    async def claim_batch(self, idem: Idem, refusals: bytes) -> Answered | None:
        """Claim a batch's Idempotency-Key for its whole body, with the answers of the items
        refused before running (`refusals`, encoded by the gateway): None on the first claim
        (journaled before any item runs, so a retry after a crash finds it), else the first
        claim, whose fingerprint tells a replay of the batch from another body (409). The
        items carry keys of their own derived from it, so each runs once either way."""
        return await self.answers.claim_batch(idem, refusals)

    # -- currencies -----------------------------------------------------------------------
    async def currencies(self) -> list[CurrencyView]:
        return await self.catalog.listed()

    async def currency(self, code: str, *, ensure_issuer: bool = False) -> CurrencyView | None:
        await self.ready()
        info = self.catalog.info(code)
        if info is None:
            return None
        if ensure_issuer:
            await self.balances.ensure_issuer(code)
        await self.records.durable()
        return self.catalog.view(info)

    async def create_currency(
        self, code: str, exponent: int, name: str, idem: Idem | None = None
    ) -> CurrencyView | Answered | None:
        """None if the code exists (ISO or custom); what `idem` made before, if it did."""
        return await self.catalog.create(code, exponent, name, idem)

    # -- currency exchange ----------------------------------------------------------------------
    async def set_rate(self, base: str, quote: str, rate: str) -> FxRateSet | str:
        """Journal a pair's rate (the gateway checked `rate`); "unknown_currency" if either
        currency does not exist. The first rate naming a currency opens its liquidity balance."""
        await self.ready()
        return await self.exchange.set_rate(base, quote, rate)

    async def create_quote(
        self,
        quote_id: str,
        balance_from: BalanceInfo,
        balance_to: BalanceInfo,
        amount_from_minor: int,
        expires_at_ms: int,
    ) -> FxQuote | str:
        """Fix an exchange at the current rate (see ledger.fx), or why not: "no_rate",
        "too_small" (converts to nothing), "too_large"."""
        await self.ready()
        return await self.exchange.create_quote(quote_id, balance_from, balance_to, amount_from_minor, expires_at_ms)

    async def get_quote(self, quote_id: str) -> FxQuote | None:
        """The quote, for a day after it expires (old ones are dropped only as new ones come)."""
        return await self.exchange.get_quote(quote_id)

    async def use_quotes(self, uses: list[tuple[str, str]], now_ms: int) -> list[bool]:
        """For each (quote, payment): whether the payment may use the quote, journaled
        before it answers. A quote is used once, before it expires; asking again for the
        same payment (a retried call) answers the same."""
        await self.ready()
        return await self.exchange.use_quotes(uses, now_ms)

    async def release_quotes(self, uses: list[tuple[str, str]]) -> None:
        """Give back the quotes these payments used: they were aborted undecided."""
        await self.ready()
        await self.exchange.release_quotes(uses)

    async def fx_rates(self) -> list[FxRateSet]:
        """Every pair's current rate, by pair."""
        return await self.exchange.rates()

    async def liquidity_balances(self) -> list[BalanceInfo]:
        """The FX account's balances, by currency (those opened on their shards)."""
        return await self.exchange.liquidity_balances()

    # -- accounts -------------------------------------------------------------------------
    async def create_account(
        self, email: str, metadata: dict[str, str] | None, idem: Idem | None = None
    ) -> AccountInfo | Answered | None:
        """None if the email is taken (case-insensitively); what `idem` made before, if it did."""
        await self.ready()
        return await self.accounts.create(email, metadata, idem)

    async def update_account(
        self,
        account_id: str,
        active: bool | None,
        metadata: dict[str, str] | None = None,
        *,
        set_metadata: bool = False,
    ) -> AccountInfo | None:
        """Disable or re-enable an account (None: as it is; its balances refuse payments while
        it is disabled) and, if `set_metadata`, replace its metadata whole; None if there is
        no such account. Each change that changes something is journaled and is an
        `account.updated` event; the email never changes."""
        await self.ready()
        self.records.require_writable()
        if not self.accounts.change(account_id, active, metadata, set_metadata=set_metadata):
            return None
        await self.records.durable()
        if active is not None:  # again when unchanged: a crash may have come before the shards heard
            await self.balances.mirror_status(account_id)
        return self.accounts.info(account_id)

    async def list_accounts(
        self,
        active: bool | None,
        limit: int,
        before_id: str | None,
        after_id: str | None = None,
        ascending: bool = False,
        email: str | None = None,
    ) -> list[AccountInfo]:
        """Ids strictly between the cursors, newest first (oldest first if `ascending`);
        ids are time-ordered. `email` matches exactly (case-insensitively, as sign-up does)."""
        return await self.accounts.listed(active, limit, before_id, after_id, ascending, email)

    async def first_account(self, account_id: str) -> AccountInfo:
        """The account as it was created (what its create answered)."""
        return self.accounts.first(account_id)

    async def get_account(self, account_id: str) -> AccountInfo | None:
        return await self.accounts.find(account_id)

    # -- balances -------------------------------------------------------------------------
    async def create_balance(
        self, account_id: str, currency: str, overdraft_limit_minor: int, idem: Idem | None = None
    ) -> tuple[str, BalanceInfo | Answered | None]:
        """('ok', info) or (error code, None): account_not_found, account_disabled,
        unknown_currency, balance_exists; ('replay', what `idem` made before)."""
        await self.ready()
        return await self.balances.create(account_id, currency, overdraft_limit_minor, idem)

    async def change_balance(self, balance_id: str, active: bool | None, overdraft_limit_minor: int | None) -> int:
        """Disable or re-enable a balance, or change its overdraft limit: a Check code
        (NOT_ENOUGH_MONEY: the balance already uses more than the new limit). The change is
        journaled here before the shard makes it, and what the shard did after (the
        `balance.updated` event when something changed)."""
        await self.ready()
        return await self.changes.change(balance_id, active, overdraft_limit_minor)

    async def lookup_balances(self, balance_ids: list[str]) -> list[BalanceInfo | None]:
        return await self.balances.lookup(balance_ids)

    async def all_balance_ids(self) -> list[str]:
        return await self.balances.ready_ids()

    # -- API keys ---------------------------------------------------------------------------
    async def create_key(
        self, account_id: str, token_hash: bytes, idem: Idem | None = None, prefix: str | None = None
    ) -> str | Answered | None:
        """Store a key for the account (the gateway made the token); None if no account;
        what `idem` made before, if it did."""
        return await self.keys.create(account_id, token_hash, idem, prefix)

    async def revoke_key(self, key_id: str) -> bool:
        return await self.keys.revoke(key_id)

    async def key_view(self, key_id: str) -> KeyView | None:
        return await self.keys.view(key_id)

    async def list_keys(
        self, account_id: str, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[KeyView] | None:
        """An account's live keys (never their tokens), newest first; None if no account."""
        return await self.keys.listed(account_id, limit, before_id, after_id, ascending)

    async def authenticate(self, token_hash: bytes) -> tuple[str, str] | None:
        """(key id, account id) of a live key with this token hash."""
        return await self.keys.authenticate(token_hash)
