"""Currency exchange: each pair's rate, and the quotes that fix an exchange at it (see
ledger.fx) for a payment to use once, before it expires. The FX account's balance in each
currency (its liquidity) is opened with the first rate naming that currency."""

from __future__ import annotations

from actors.clock import now_ms
from actors.registry.balances import Balances
from actors.registry.currencies import CurrencyCatalog
from actors.registry.log import RegistryLog
from ledger.fx import convert, pair_rate
from ledger.money import INT64_MAX
from ledger.records import FxQuote, FxQuoted, FxQuoteReleased, FxQuoteUsed, FxRateSet, Record
from ledger.views import FX_ACCOUNT_ID, BalanceInfo

QUOTES_KEPT_AFTER_EXPIRY_MS = 24 * 3600 * 1000  # then a quote's id is unknown (404), no longer quote_expired


class Exchange:
    RECORDS = (FxRateSet, FxQuoted, FxQuoteUsed, FxQuoteReleased)

    def __init__(self, log: RegistryLog, catalog: CurrencyCatalog, balances: Balances) -> None:
        self._log = log
        self._catalog = catalog
        self._balances = balances
        self._rates: dict[tuple[str, str], FxRateSet] = {}
        self._quotes: dict[str, tuple[FxQuote, str | None]] = {}  # id -> (quote, the payment that used it)

    def apply(self, r: Record) -> None:
        if isinstance(r, FxRateSet):
            self._rates[(r.base, r.quote)] = r
        elif isinstance(r, FxQuoted):
            self._forget_old_quotes(r.quote.created_at_ms)
            self._quotes[r.quote.id] = (r.quote, None)
        elif isinstance(r, FxQuoteUsed):
            if r.quote_id in self._quotes:  # else expired long ago, and forgotten
                self._quotes[r.quote_id] = (self._quotes[r.quote_id][0], r.payment_id)
        else:
            assert isinstance(r, FxQuoteReleased)
            if r.quote_id in self._quotes:
                self._quotes[r.quote_id] = (self._quotes[r.quote_id][0], None)

    def _forget_old_quotes(self, at_ms: int) -> None:
        """Quotes arrive in time order: those expired for a while are at the front."""
        while self._quotes:
            oldest, _ = next(iter(self._quotes.values()))
            if oldest.expires_at_ms + QUOTES_KEPT_AFTER_EXPIRY_MS > at_ms:
                break
            del self._quotes[oldest.id]

    async def set_rate(self, base: str, quote: str, rate: str) -> FxRateSet | str:
        self._log.require_writable()
        if self._catalog.info(base) is None or self._catalog.info(quote) is None:
            return "unknown_currency"
        liquidity = self._balances.liquidity
        async with self._balances.creating:
            record = FxRateSet(base, quote, rate, now_ms())
            self._log.commit(record)
            for currency in (base, quote):
                if currency not in liquidity:
                    self._balances.journal_new(FX_ACCOUNT_ID, currency)
            await self._log.durable()
            for currency in (base, quote):
                await self._balances.open_if_new(liquidity[currency])
        return record

    async def create_quote(
        self,
        quote_id: str,
        balance_from: BalanceInfo,
        balance_to: BalanceInfo,
        amount_from_minor: int,
        expires_at_ms: int,
    ) -> FxQuote | str:
        self._log.require_writable()
        source, target = balance_from.currency, balance_to.currency
        rate = pair_rate({pair: r.rate for pair, r in self._rates.items()}, source, target)
        if rate is None:
            return "no_rate"
        e_from, e_to = self._catalog.info(source).exponent, self._catalog.info(target).exponent  # type: ignore[union-attr]
        amount_to = convert(amount_from_minor, rate, e_from, e_to)
        if amount_to == 0:
            return "too_small"
        if amount_to > INT64_MAX:
            return "too_large"
        liquidity = self._balances.liquidity
        quote = FxQuote(
            quote_id,
            balance_from.id,
            balance_to.id,
            source,
            target,
            rate,
            amount_from_minor,
            amount_to,
            liquidity[source],
            liquidity[target],
            now_ms(),
            expires_at_ms,
            e_from,
            e_to,
        )
        self._log.commit(FxQuoted(quote))
        await self._log.durable()
        return quote

    async def get_quote(self, quote_id: str) -> FxQuote | None:
        await self._log.durable()
        known = self._quotes.get(quote_id)
        if known is None or known[0].expires_at_ms + QUOTES_KEPT_AFTER_EXPIRY_MS <= now_ms():
            return None
        return known[0]

    async def use_quotes(self, uses: list[tuple[str, str]], at_ms: int) -> list[bool]:
        self._log.require_writable()  # before any use is journaled: a refusal uses none
        out = []
        for quote_id, payment_id in uses:
            known = self._quotes.get(quote_id)
            if known is None or known[1] not in (None, payment_id):
                out.append(False)
            elif known[1] == payment_id:
                out.append(True)
            elif known[0].expires_at_ms <= at_ms:
                out.append(False)
            else:
                self._log.commit(FxQuoteUsed(quote_id, payment_id))
                out.append(True)
        await self._log.durable()
        return out

    async def release_quotes(self, uses: list[tuple[str, str]]) -> None:
        for quote_id, payment_id in uses:
            known = self._quotes.get(quote_id)
            if known is not None and known[1] == payment_id:
                self._log.commit(FxQuoteReleased(quote_id, payment_id))
        await self._log.durable()

    async def rates(self) -> list[FxRateSet]:
        await self._log.durable()
        return [self._rates[pair] for pair in sorted(self._rates)]

    async def liquidity_balances(self) -> list[BalanceInfo]:
        await self._log.durable()
        found = (self._balances.ready_info(self._balances.liquidity[c]) for c in sorted(self._balances.liquidity))
        return [info for info in found if info is not None]
