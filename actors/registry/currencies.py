"""Currencies: ISO 4217's and the custom ones created here, each with its issuer balance
(the system account's balance in it, created with the first balance in that currency, by
`Balances`, which tells this catalog through `issued`)."""

from __future__ import annotations

from actors.registry.answers import Answers
from actors.registry.log import RegistryLog
from ledger.currencies import CurrencyInfo, iso_currencies
from ledger.records import Answered, CurrencyCreated, Record
from ledger.views import CurrencyView, Idem


class CurrencyCatalog:
    RECORDS = (CurrencyCreated,)

    def __init__(self, log: RegistryLog, answers: Answers) -> None:
        self._log = log
        self._answers = answers
        self._custom: dict[str, CurrencyInfo] = {}
        self._issuers: dict[str, str] = {}  # currency -> its issuer balance

    def apply(self, r: Record) -> None:
        assert isinstance(r, CurrencyCreated)
        self._custom[r.code] = CurrencyInfo(r.code, r.exponent, r.name, custom=True)

    def issued(self, currency: str, balance_id: str) -> None:
        """Applies the creation of the system's balance in `currency`: its issuer."""
        self._issuers[currency] = balance_id

    def info(self, code: str) -> CurrencyInfo | None:
        return self._custom.get(code) or iso_currencies().get(code)

    def issuer(self, code: str) -> str | None:
        return self._issuers.get(code)

    def view(self, info: CurrencyInfo) -> CurrencyView:
        return CurrencyView(info.code, info.exponent, info.name, info.custom, self._issuers.get(info.code))

    async def listed(self) -> list[CurrencyView]:
        await self._log.durable()
        merged = {**iso_currencies(), **self._custom}
        return [self.view(merged[c]) for c in sorted(merged)]

    async def create(self, code: str, exponent: int, name: str, idem: Idem | None) -> CurrencyView | Answered | None:
        self._log.require_writable()
        if (answered := await self._answers.made_before(idem)) is not None:
            return answered
        if self.info(code) is not None:
            return None
        self._log.commit(CurrencyCreated(code, exponent, name))
        self._answers.record(idem, "currency", code)
        await self._log.durable()
        return self.view(self._custom[code])
