"""Registry: accounts, the balance directory, custom currencies and issuer balances.

Low write rate, journaled like everything else. It knows which balances exist, who owns
them and their currency — facts that never change, so the gateway caches them. Money
state (amount, holds, status, limits) lives only in the owning shard.

Creating a balance journals `BalanceCreated`, opens it on its shard, then journals
`BalanceReady`; a crash in between is repaired by re-opening (idempotent) on recovery.
Each currency's issuer balance is created with the first balance in that currency.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from actors.events import EventReads
from actors.logs import event
from actors.memory import freeze_long_lived_state
from actors.peers import PeerLookup, ray_lookup
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.telemetry import Telemetry, placement
from actors.topology import REGISTRY_NAME, partition_of, shard_name, shard_of_partition
from journal import Journal, JournalUnavailable, SqliteJournal
from ledger.currencies import CurrencyInfo, iso_currencies
from ledger.fx import convert, pair_rate
from ledger.ids import make_id
from ledger.messages import BalanceSpec
from ledger.money import INT64_MAX
from ledger.records import (
    AccountChanged,
    AccountCreated,
    AccountMetadataSet,
    Answered,
    BalanceChangeAsked,
    BalanceCreated,
    BalanceReady,
    BalanceUpdated,
    CurrencyCreated,
    FxQuote,
    FxQuoted,
    FxQuoteReleased,
    FxQuoteUsed,
    FxRateSet,
    Genesis,
    KeyCreated,
    KeyRevoked,
    Record,
)
from ledger.results import Check
from ledger.views import (
    FX_ACCOUNT_ID,
    SYSTEM_ACCOUNT_ID,
    SYSTEM_ACCOUNTS,
    AccountInfo,
    BalanceInfo,
    CurrencyView,
    Idem,
    KeyView,
)

QUOTES_KEPT_AFTER_EXPIRY_MS = 24 * 3600 * 1000  # then a quote's id is unknown (404), no longer quote_expired

log = logging.getLogger("rayledger.registry")


class _Account:
    __slots__ = ("active", "balance_ids", "created_at_ms", "created_metadata", "email", "metadata")

    def __init__(self, email: str, metadata: dict[str, str] | None, created_at_ms: int) -> None:
        self.email = email
        self.metadata = metadata
        self.created_metadata = metadata  # what its create answered, and a retry of it replays
        self.created_at_ms = created_at_ms
        self.active = True
        self.balance_ids: list[str] = []


def registry_journal_path(settings: Settings) -> str:
    return str(settings.data_path / "registry.sqlite")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_id(prefix: str) -> str:
    return make_id(prefix, _now_ms(), os.urandom(10))


class Registry(EventReads):  # its journal holds API events
    def __init__(self, settings: Settings, peers: PeerLookup | None = None, journal: Journal | None = None) -> None:
        self.settings = settings
        self._peers = peers
        self.journal = journal or SqliteJournal(
            registry_journal_path(settings),
            busy_timeout_ms=settings.journal_busy_timeout_ms,
            commit_on_loop=settings.journal_commit_on_loop,
        )
        self.partitions: int | None = None
        self.accounts: dict[str, _Account] = {}
        self.emails: dict[str, str] = {}
        self.balances: dict[str, BalanceInfo] = {}
        self.by_account_currency: dict[tuple[str, str], str] = {}
        self._initial_limits: dict[str, int] = {}  # overdraft limit of balances not yet ready
        self.not_ready: set[str] = set()
        self.custom: dict[str, CurrencyInfo] = {}
        self.issuers: dict[str, str] = {}
        self.keys: dict[str, tuple[KeyView, bytes]] = {}  # live key id -> (as listed, token hash)
        self.key_by_hash: dict[bytes, str] = {}
        self.rates: dict[tuple[str, str], FxRateSet] = {}
        self.liquidity: dict[str, str] = {}  # currency -> the FX account's balance in it
        self.quotes: dict[str, tuple[FxQuote, str | None]] = {}  # id -> (quote, the payment that used it)
        self.answers: dict[bytes, Answered] = {}  # creates made with an Idempotency-Key, by lookup
        self._status_changed: set[str] = set()  # accounts whose status shards must mirror
        self._lock = asyncio.Lock()  # serialises balance creation (one issuer per currency)
        self._changes_asked: dict[str, BalanceChangeAsked] = {}  # balance -> a change not yet answered
        self._changing = asyncio.Lock()  # one balance change at a time: its ask and answer pair up
        self._recovery: asyncio.Task[None] | None = None
        started = time.perf_counter()
        replayed = 0
        self.journal.event_source = "r00"  # accounts, balances and rates are API events
        for stored in self.journal.load().records:
            self._apply(stored.record)
            replayed += 1
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

    def _apply(self, r: Record) -> None:
        if isinstance(r, FxRateSet):
            self.rates[(r.base, r.quote)] = r
        elif isinstance(r, FxQuoted):
            self._forget_old_quotes(r.quote.created_at_ms)
            self.quotes[r.quote.id] = (r.quote, None)
        elif isinstance(r, FxQuoteUsed):
            if r.quote_id in self.quotes:  # else expired long ago, and forgotten
                self.quotes[r.quote_id] = (self.quotes[r.quote_id][0], r.payment_id)
        elif isinstance(r, FxQuoteReleased):
            if r.quote_id in self.quotes:
                self.quotes[r.quote_id] = (self.quotes[r.quote_id][0], None)
        elif isinstance(r, Answered):
            if r.at_ms >= _now_ms() - self.settings.idempotency_window_s * 1000:
                self.answers[r.lookup] = r
        elif isinstance(r, AccountCreated):
            self.accounts[r.account_id] = _Account(r.email, r.metadata, r.created_at_ms)
            self.emails[r.email.lower()] = r.account_id
        elif isinstance(r, AccountChanged):
            self.accounts[r.account_id].active = r.active
            self._status_changed.add(r.account_id)
        elif isinstance(r, AccountMetadataSet):
            self.accounts[r.account_id].metadata = r.metadata
        elif isinstance(r, BalanceCreated):
            self.balances[r.balance_id] = BalanceInfo(r.balance_id, r.account_id, r.currency, r.created_at_ms)
            self.not_ready.add(r.balance_id)
            if r.overdraft_limit_minor:
                self._initial_limits[r.balance_id] = r.overdraft_limit_minor
            if r.account_id == SYSTEM_ACCOUNT_ID:
                self.issuers[r.currency] = r.balance_id
            elif r.account_id == FX_ACCOUNT_ID:
                self.liquidity[r.currency] = r.balance_id
            else:
                self.accounts[r.account_id].balance_ids.append(r.balance_id)
                self.by_account_currency[(r.account_id, r.currency)] = r.balance_id
        elif isinstance(r, BalanceChangeAsked):
            self._changes_asked[r.balance_id] = r
        elif isinstance(r, BalanceUpdated):
            self._changes_asked.pop(r.balance_id, None)
        elif isinstance(r, BalanceReady):
            self.not_ready.discard(r.balance_id)
            self._initial_limits.pop(r.balance_id, None)
        elif isinstance(r, CurrencyCreated):
            self.custom[r.code] = CurrencyInfo(r.code, r.exponent, r.name, custom=True)
        elif isinstance(r, KeyCreated):
            self.keys[r.key_id] = (KeyView(r.key_id, r.account_id, r.prefix, r.created_at_ms), r.token_hash)
            self.key_by_hash[r.token_hash] = r.key_id
        elif isinstance(r, KeyRevoked):
            _, token_hash = self.keys.pop(r.key_id)
            del self.key_by_hash[token_hash]
        elif isinstance(r, Genesis):
            assert self.partitions is None, "genesis happens once"
            self.partitions = r.partitions
        else:
            raise AssertionError(f"not a registry record: {r!r}")

    def _commit(self, record: Record) -> None:
        self.journal.append(record)
        self._apply(record)

    # -- idempotency of creates ---------------------------------------------------------------
    def _answered(self, idem: Idem | None) -> Answered | None:
        """What `idem` made, if it made something within the idempotency window. Answers
        arrive in time order, so the expired ones are at the front: dropped as they age."""
        if idem is None:
            return None
        window_start_ms = _now_ms() - self.settings.idempotency_window_s * 1000
        while self.answers:
            oldest = next(iter(self.answers.values()))
            if oldest.at_ms >= window_start_ms:
                break
            del self.answers[oldest.lookup]
        return self.answers.get(idem.lookup)

    def _answer(
        self, idem: Idem | None, kind: str, ref: str, amount_minor: int = 0, refusals: bytes | None = None
    ) -> None:
        """Journal what `idem` made in the same frame as the create itself: a crash keeps
        both or neither, so a retry never makes a second one."""
        if idem is not None:
            self._commit(
                Answered(idem.lookup, idem.fingerprint, kind, ref, _now_ms(), amount_minor, idem.sealed, refusals)
            )

    async def claim_batch(self, idem: Idem, refusals: bytes) -> Answered | None:
        """Claim a batch's Idempotency-Key for its whole body, with the answers of the items
        refused before running (`refusals`, encoded by the gateway): None on the first claim
        (journaled before any item runs, so a retry after a crash finds it), else the first
        claim, whose fingerprint tells a replay of the batch from another body (409). The
        items carry keys of their own derived from it, so each runs once either way."""
        self._require_writable()
        if (answered := self._answered(idem)) is not None:
            await self.journal.durable()
            return answered
        self._answer(idem, "batch", "", refusals=refusals)
        await self.journal.durable()
        return None

    def _require_writable(self) -> None:
        if not self.journal.writable:
            raise JournalUnavailable("registry journal is not writable")

    def _peer(self, name: str):  # type: ignore[no-untyped-def]
        if self._peers is None:
            self._peers = ray_lookup(self.settings.namespace)
        return self._peers(name)

    def _shard_index(self, balance_id: str) -> int:
        return shard_of_partition(partition_of(balance_id, self.settings.partitions), self.settings.shards)

    def _shard_peer(self, balance_id: str):  # type: ignore[no-untyped-def]
        return self._peer(shard_name(self._shard_index(balance_id)))

    # -- lifecycle ------------------------------------------------------------------------
    async def genesis(self, partitions: int) -> int:
        """Fix the partition count on first start; return the stored one."""
        if self.partitions is None:
            self._commit(Genesis(partitions, _now_ms()))
            await self.journal.durable()
        assert self.partitions is not None
        return self.partitions

    async def ready(self) -> bool:
        if self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self._recover())
        await asyncio.shield(self._recovery)
        return True

    async def _recover(self) -> None:
        for balance_id in sorted(self.not_ready):
            await self._open_on_shard(self.balances[balance_id])
        # A crash may have come between journaling a status change and telling the shards.
        for account_id in sorted(self._status_changed):
            await self._mirror_status(account_id)
        for asked in sorted(self._changes_asked.values(), key=lambda a: a.at_ms):
            await self._make_change(asked, recovering=True)

    async def _mirror_status(self, account_id: str) -> None:
        account = self.accounts[account_id]
        by_shard: dict[int, list[str]] = {}
        for balance_id in account.balance_ids:
            if balance_id not in self.not_ready:
                by_shard.setdefault(self._shard_index(balance_id), []).append(balance_id)
        await asyncio.gather(
            *(
                self._peer(shard_name(k)).invoke(BalanceShard.set_account_active, ids, account.active)
                for k, ids in by_shard.items()
            )
        )

    async def _open_on_shard(self, info: BalanceInfo) -> None:
        spec = BalanceSpec(
            info.id,
            info.currency,
            self._initial_limits.get(info.id, 0),
            unlimited=info.account_id == SYSTEM_ACCOUNT_ID,
        )
        await self._shard_peer(info.id).invoke(BalanceShard.open_balances, [spec])
        self._commit(BalanceReady(info.id))
        await self.journal.durable()

    # -- currencies -----------------------------------------------------------------------
    def _currency(self, code: str) -> CurrencyInfo | None:
        return self.custom.get(code) or iso_currencies().get(code)

    def _currency_view(self, info: CurrencyInfo) -> CurrencyView:
        return CurrencyView(info.code, info.exponent, info.name, info.custom, self.issuers.get(info.code))

    async def currencies(self) -> list[CurrencyView]:
        await self.journal.durable()
        merged = {**iso_currencies(), **self.custom}
        return [self._currency_view(merged[c]) for c in sorted(merged)]

    async def currency(self, code: str, *, ensure_issuer: bool = False) -> CurrencyView | None:
        await self.ready()
        info = self._currency(code)
        if info is None:
            return None
        if ensure_issuer and code not in self.issuers:
            async with self._lock:
                await self._ensure_issuer(code)
        await self.journal.durable()
        return self._currency_view(info)

    async def create_currency(
        self, code: str, exponent: int, name: str, idem: Idem | None = None
    ) -> CurrencyView | Answered | None:
        """None if the code exists (ISO or custom); what `idem` made before, if it did."""
        self._require_writable()
        if (answered := self._answered(idem)) is not None:
            await self.journal.durable()
            return answered
        if self._currency(code) is not None:
            return None
        self._commit(CurrencyCreated(code, exponent, name))
        self._answer(idem, "currency", code)
        await self.journal.durable()
        return self._currency_view(self.custom[code])

    async def _ensure_issuer(self, currency: str) -> str:
        issuer = self.issuers.get(currency)
        if issuer is None:
            issuer = _new_id("bal")
            self._commit(BalanceCreated(issuer, SYSTEM_ACCOUNT_ID, currency, _now_ms()))
            await self.journal.durable()
        if issuer in self.not_ready:
            await self._open_on_shard(self.balances[issuer])
        return issuer

    # -- currency exchange ----------------------------------------------------------------------
    async def set_rate(self, base: str, quote: str, rate: str) -> FxRateSet | str:
        """Journal a pair's rate (the gateway checked `rate`); "unknown_currency" if either
        currency does not exist. The first rate naming a currency opens its liquidity balance."""
        await self.ready()
        self._require_writable()
        if self._currency(base) is None or self._currency(quote) is None:
            return "unknown_currency"
        async with self._lock:
            record = FxRateSet(base, quote, rate, _now_ms())
            self._commit(record)
            for currency in (base, quote):
                if currency not in self.liquidity:
                    self._commit(BalanceCreated(_new_id("bal"), FX_ACCOUNT_ID, currency, _now_ms()))
            await self.journal.durable()
            for currency in (base, quote):
                if self.liquidity[currency] in self.not_ready:
                    await self._open_on_shard(self.balances[self.liquidity[currency]])
        return record

    def _forget_old_quotes(self, now_ms: int) -> None:
        """Quotes arrive in time order: those expired for a while are at the front."""
        while self.quotes:
            oldest, _ = next(iter(self.quotes.values()))
            if oldest.expires_at_ms + QUOTES_KEPT_AFTER_EXPIRY_MS > now_ms:
                break
            del self.quotes[oldest.id]

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
        self._require_writable()
        source, target = balance_from.currency, balance_to.currency
        rate = pair_rate({pair: r.rate for pair, r in self.rates.items()}, source, target)
        if rate is None:
            return "no_rate"
        e_from, e_to = self._currency(source).exponent, self._currency(target).exponent  # type: ignore[union-attr]
        amount_to = convert(amount_from_minor, rate, e_from, e_to)
        if amount_to == 0:
            return "too_small"
        if amount_to > INT64_MAX:
            return "too_large"
        now_ms = _now_ms()
        quote = FxQuote(
            quote_id,
            balance_from.id,
            balance_to.id,
            source,
            target,
            rate,
            amount_from_minor,
            amount_to,
            self.liquidity[source],
            self.liquidity[target],
            now_ms,
            expires_at_ms,
            e_from,
            e_to,
        )
        self._commit(FxQuoted(quote))
        await self.journal.durable()
        return quote

    async def get_quote(self, quote_id: str) -> FxQuote | None:
        """The quote, for a day after it expires (old ones are dropped only as new ones come)."""
        await self.journal.durable()
        known = self.quotes.get(quote_id)
        if known is None or known[0].expires_at_ms + QUOTES_KEPT_AFTER_EXPIRY_MS <= _now_ms():
            return None
        return known[0]

    async def use_quotes(self, uses: list[tuple[str, str]], now_ms: int) -> list[bool]:
        """For each (quote, payment): whether the payment may use the quote, journaled
        before it answers. A quote is used once, before it expires; asking again for the
        same payment (a retried call) answers the same."""
        await self.ready()
        self._require_writable()  # before any use is journaled: a refusal uses none
        out = []
        for quote_id, payment_id in uses:
            known = self.quotes.get(quote_id)
            if known is None or known[1] not in (None, payment_id):
                out.append(False)
            elif known[1] == payment_id:
                out.append(True)
            elif known[0].expires_at_ms <= now_ms:
                out.append(False)
            else:
                self._commit(FxQuoteUsed(quote_id, payment_id))
                out.append(True)
        await self.journal.durable()
        return out

    async def release_quotes(self, uses: list[tuple[str, str]]) -> None:
        """Give back the quotes these payments used: they were aborted undecided."""
        await self.ready()
        for quote_id, payment_id in uses:
            known = self.quotes.get(quote_id)
            if known is not None and known[1] == payment_id:
                self._commit(FxQuoteReleased(quote_id, payment_id))
        await self.journal.durable()

    async def fx_rates(self) -> list[FxRateSet]:
        """Every pair's current rate, by pair."""
        await self.journal.durable()
        return [self.rates[pair] for pair in sorted(self.rates)]

    async def liquidity_balances(self) -> list[BalanceInfo]:
        """The FX account's balances, by currency (those opened on their shards)."""
        await self.journal.durable()
        ids = (self.liquidity[c] for c in sorted(self.liquidity))
        return [self.balances[b] for b in ids if b not in self.not_ready]

    # -- accounts -------------------------------------------------------------------------
    async def create_account(
        self, email: str, metadata: dict[str, str] | None, idem: Idem | None = None
    ) -> AccountInfo | Answered | None:
        """None if the email is taken (case-insensitively); what `idem` made before, if it did."""
        await self.ready()
        self._require_writable()
        if (answered := self._answered(idem)) is not None:
            await self.journal.durable()
            return answered
        if email.lower() in self.emails:
            await self.journal.durable()
            return None
        account_id = _new_id("acc")
        self._commit(AccountCreated(account_id, email, metadata, _now_ms()))
        self._answer(idem, "account", account_id)
        await self.journal.durable()
        return self._account_info(account_id)

    def _account_info(self, account_id: str) -> AccountInfo:
        a = self.accounts[account_id]
        return AccountInfo(account_id, a.email, a.active, a.created_at_ms, a.metadata, list(a.balance_ids))

    async def change_balance(self, balance_id: str, active: bool | None, overdraft_limit_minor: int | None) -> int:
        """Disable or re-enable a balance, or change its overdraft limit: a Check code
        (NOT_ENOUGH_MONEY: the balance already uses more than the new limit). The change is
        journaled here before the shard makes it, and what the shard did after (the
        `balance.updated` event when something changed)."""
        await self.ready()
        self._require_writable()
        if balance_id not in self.balances:
            return int(Check.BALANCE_NOT_FOUND)
        async with self._changing:
            asked = BalanceChangeAsked(balance_id, active, overdraft_limit_minor, _now_ms())
            self._commit(asked)
            await self.journal.durable()
            return await self._make_change(asked)

    async def _make_change(self, asked: BalanceChangeAsked, *, recovering: bool = False) -> int:
        info = self.balances[asked.balance_id]
        code, active, limit, changed = await self._shard_peer(info.id).invoke(
            BalanceShard.change_balance, info.id, asked.active, asked.overdraft_limit_minor
        )
        if recovering:  # the shard may have made it before the crash: its event was not journaled
            changed = code == Check.OK
        self._commit(BalanceUpdated(info.id, info.account_id, info.currency, changed, active, limit, _now_ms()))
        await self.journal.durable()
        return int(code)

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
        self._require_writable()
        account = self.accounts.get(account_id)
        if account is None or account_id in SYSTEM_ACCOUNTS:
            return None
        if set_metadata and account.metadata != metadata:
            self._commit(AccountMetadataSet(account_id, metadata, _now_ms()))
        if active is not None and account.active != active:
            self._commit(AccountChanged(account_id, active, _now_ms()))
        await self.journal.durable()
        if active is not None:  # again when unchanged: a crash may have come before the shards heard
            await self._mirror_status(account_id)
        return self._account_info(account_id)

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
        await self.journal.durable()
        if email is not None:
            found = self.emails.get(email.lower())
            ids = [found] if found is not None else []
        else:
            ids = sorted(self.accounts, reverse=not ascending)
        out = []
        for account_id in ids:
            if account_id == SYSTEM_ACCOUNT_ID or (before_id is not None and account_id >= before_id):
                continue
            if after_id is not None and account_id <= after_id:
                continue
            if active is None or self.accounts[account_id].active == active:
                out.append(self._account_info(account_id))
                if len(out) == limit:
                    break
        return out

    async def first_account(self, account_id: str) -> AccountInfo:
        """The account as it was created (what its create answered)."""
        a = self.accounts[account_id]
        return AccountInfo(account_id, a.email, True, a.created_at_ms, a.created_metadata, [])

    async def get_account(self, account_id: str) -> AccountInfo | None:
        await self.journal.durable()
        if account_id not in self.accounts:
            return None
        return self._account_info(account_id)

    # -- balances -------------------------------------------------------------------------
    async def create_balance(
        self, account_id: str, currency: str, overdraft_limit_minor: int, idem: Idem | None = None
    ) -> tuple[str, BalanceInfo | Answered | None]:
        """('ok', info) or (error code, None): account_not_found, account_disabled,
        unknown_currency, balance_exists; ('replay', what `idem` made before)."""
        await self.ready()
        self._require_writable()
        async with self._lock:
            if (answered := self._answered(idem)) is not None:
                await self.journal.durable()
                if answered.kind == "balance" and answered.ref in self.not_ready:  # its first open failed
                    await self._open_on_shard(self.balances[answered.ref])
                return "replay", answered
            if account_id not in self.accounts or account_id == SYSTEM_ACCOUNT_ID:
                return "account_not_found", None
            if not self.accounts[account_id].active:
                await self.journal.durable()  # the disabling read is durable before it is told
                return "account_disabled", None
            if self._currency(currency) is None:
                return "unknown_currency", None
            if (account_id, currency) in self.by_account_currency:
                await self.journal.durable()
                return "balance_exists", None
            await self._ensure_issuer(currency)
            balance_id = _new_id("bal")
            self._commit(BalanceCreated(balance_id, account_id, currency, _now_ms(), overdraft_limit_minor))
            self._answer(idem, "balance", balance_id, overdraft_limit_minor)
            await self.journal.durable()
            await self._open_on_shard(self.balances[balance_id])
            return "ok", self.balances[balance_id]

    async def lookup_balances(self, balance_ids: list[str]) -> list[BalanceInfo | None]:
        await self.journal.durable()
        return [self.balances.get(b) if b not in self.not_ready else None for b in balance_ids]

    async def all_balance_ids(self) -> list[str]:
        await self.journal.durable()
        return [b for b in self.balances if b not in self.not_ready]

    # -- API keys ---------------------------------------------------------------------------
    async def create_key(
        self, account_id: str, token_hash: bytes, idem: Idem | None = None, prefix: str | None = None
    ) -> str | Answered | None:
        """Store a key for the account (the gateway made the token); None if no account;
        what `idem` made before, if it did."""
        self._require_writable()
        if (answered := self._answered(idem)) is not None:
            await self.journal.durable()
            return answered
        if account_id not in self.accounts or account_id == SYSTEM_ACCOUNT_ID:
            return None
        key_id = _new_id("key")
        self._commit(KeyCreated(key_id, account_id, token_hash, _now_ms(), prefix))
        self._answer(idem, "key", key_id)
        await self.journal.durable()
        return key_id

    async def revoke_key(self, key_id: str) -> bool:
        self._require_writable()
        if key_id not in self.keys:
            await self.journal.durable()
            return False
        self._commit(KeyRevoked(key_id))
        await self.journal.durable()
        return True

    async def key_view(self, key_id: str) -> KeyView | None:
        await self.journal.durable()
        found = self.keys.get(key_id)
        return found[0] if found is not None else None

    async def list_keys(
        self, account_id: str, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[KeyView] | None:
        """An account's live keys (never their tokens), newest first; None if no account."""
        await self.journal.durable()
        if account_id not in self.accounts or account_id == SYSTEM_ACCOUNT_ID:
            return None
        found = sorted(
            (
                k
                for k, _ in self.keys.values()
                if k.account_id == account_id
                and (before_id is None or k.id < before_id)
                and (after_id is None or k.id > after_id)
            ),
            key=lambda k: k.id,
            reverse=not ascending,
        )
        return found[:limit]

    async def authenticate(self, token_hash: bytes) -> tuple[str, str] | None:
        """(key id, account id) of a live key with this token hash."""
        await self.journal.durable()
        key_id = self.key_by_hash.get(token_hash)
        return (key_id, self.keys[key_id][0].account_id) if key_id is not None else None

    async def close(self) -> None:
        await self.journal.close()
