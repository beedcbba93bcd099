"""Cache of facts that never change once created: a balance's owner and currency, a
currency's exponent and issuer. Hits cost nothing; misses ask the registry. Nothing
mutable (amounts, statuses) is cached, so there is nothing to invalidate.
"""

from __future__ import annotations

from collections import OrderedDict

from actors.client import LedgerClient
from actors.registry import Registry
from ledger.views import AccountInfo, BalanceInfo, CurrencyView


class Directory:
    def __init__(self, client: LedgerClient, size_max: int) -> None:
        self.client = client
        self.size_max = size_max
        self._balances: OrderedDict[str, BalanceInfo] = OrderedDict()
        self._currencies: dict[str, CurrencyView] = {}

    def known(self, balance_id: str) -> BalanceInfo | None:
        """A balance held here, without asking anyone (a payment's checks, per item)."""
        return self._balances.get(balance_id)

    def known_exponent(self, code: str) -> int | None:
        view = self._known_currency(code)
        return None if view is None else view.exponent

    def _known_currency(self, code: str) -> CurrencyView | None:
        """Held here with its issuer balance (one made before it has none yet)."""
        view = self._currencies.get(code)
        return None if view is None or view.issuer_balance_id is None else view

    async def balances(self, balance_ids: list[str]) -> list[BalanceInfo | None]:
        missing = [b for b in dict.fromkeys(balance_ids) if b not in self._balances]
        if missing:
            for b, info in zip(missing, await self.client.lookup_balances(missing), strict=True):
                if info is not None:
                    self._balances[b] = info
            while len(self._balances) > self.size_max:
                self._balances.popitem(last=False)
        return [self._balances.get(b) for b in balance_ids]

    async def currency(self, code: str) -> CurrencyView | None:
        """With its issuer balance (created on first use)."""
        view = self._known_currency(code)
        if view is None:
            view = await self.client.registry.invoke(Registry.currency, code, ensure_issuer=True)
            if view is not None:
                self._currencies[code] = view
        return view

    async def exponent(self, code: str) -> int:
        view = await self.currency(code)
        assert view is not None, f"a stored currency {code} must exist"
        return view.exponent

    async def account(self, account_id: str) -> AccountInfo | None:
        """Not cached: an account's status and metadata change."""
        return await self.client.registry.invoke(Registry.get_account, account_id)
