"""Currency exchange over HTTP: rates, quotes and exchange payments through the FX
liquidity balances. A round trip loses only rounding, and what it loses the liquidity
provider keeps; every currency sums to zero over all balances; quotes are used once,
expire, and survive a restart like the rates."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.api import Api
from tests.support.server import Server


async def _amount(api: Api, balance_id: str) -> Decimal:
    return Decimal((await api.get(f"/v1/balances/{balance_id}")).body["amount"])


async def _sum_of_currency(api: Api, currency: str) -> Decimal:
    """Every balance in `currency`: the accounts', the FX account's and the issuer's."""
    accounts = await api.every_page("/v1/accounts")
    total = sum(
        (Decimal(b["amount"]) for a in accounts for b in a["balances"] if b["currency"] == currency), Decimal(0)
    )
    liquidity = (await api.get("/v1/fx/liquidity")).body["data"]
    total += sum((Decimal(b["amount"]) for b in liquidity if b["currency"] == currency), Decimal(0))
    issuer = (await api.get(f"/v1/currencies/{currency}")).body["issuer_balance_id"]
    return total + await _amount(api, issuer)


async def _exchange(api: Api, source: str, target: str, amount: str) -> dict[str, Any]:
    quote = await api.post("/v1/fx/quotes", {"balance_from": source, "balance_to": target, "amount": amount})
    assert quote.status == 201, quote
    body = {"balance_from": source, "balance_to": target, "amount": amount, "quote_id": quote.body["id"]}
    paid = await api.post("/v1/payments", body)
    assert paid.status == 201, paid
    assert (paid.body["quote_id"], paid.body["rate"]) == (quote.body["id"], quote.body["rate"])
    assert (paid.body["amount_to"], paid.body["currency_to"]) == (quote.body["amount_to"], quote.body["currency_to"])
    return paid.body


async def test_round_trip_loses_only_rounding_to_the_liquidity_provider(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            ada = await api.account("ada@example.com")
            usd, eur = await api.balance(ada["id"], "USD"), await api.balance(ada["id"], "EUR")
            await api.deposit(usd["id"], "100.00")
            assert (await api.request("PUT", "/v1/fx/rates/EUR/USD", {"rate": "1.25"})).status == 200
            liquidity = {b["currency"]: b["id"] for b in (await api.get("/v1/fx/liquidity")).body["data"]}
            assert sorted(liquidity) == ["EUR", "USD"]

            # Short liquidity: refused as a status, and nothing moves.
            short = await _exchange(api, usd["id"], eur["id"], "10.01")
            assert short["status"] == "not_enough_liquidity"
            assert await _amount(api, usd["id"]) == Decimal("100.00")

            for currency in ("EUR", "USD"):
                await api.deposit(liquidity[currency], "1000.00")
            there = await _exchange(api, usd["id"], eur["id"], "10.01")  # at 1/1.25 = 0.8: 8.008, rounded down
            assert (there["status"], there["rate"], there["amount_to"]) == ("success", "0.8", "8.00")
            back = await _exchange(api, eur["id"], usd["id"], "8.00")
            assert (back["status"], back["rate"], back["amount_to"]) == ("success", "1.25", "10.00")
            assert await _amount(api, usd["id"]) == Decimal("99.99")  # lost one cent: the rounding
            assert await _amount(api, eur["id"]) == Decimal("0.00")
            assert await _amount(api, liquidity["USD"]) == Decimal("1000.01")  # ...which the provider kept
            assert await _amount(api, liquidity["EUR"]) == Decimal("1000.00")
            for currency in ("USD", "EUR"):
                assert await _sum_of_currency(api, currency) == 0

            # The statements show each side in its own currency, with the same payment.
            [eur_line] = [
                e
                for e in (await api.get(f"/v1/balances/{eur['id']}/entries")).body["data"]
                if e["payment_id"] == there["id"]
            ]
            assert eur_line["amount"] == "8.00"

            # A quote is used once; an expired one cannot be used at all.
            quote = await api.post(
                "/v1/fx/quotes", {"balance_from": usd["id"], "balance_to": eur["id"], "amount": "1.00"}
            )
            body = {"balance_from": usd["id"], "balance_to": eur["id"], "amount": "1.00", "quote_id": quote.body["id"]}
            assert (await api.post("/v1/payments", body)).body["status"] == "success"
            assert (await api.post("/v1/payments", body)).body["status"] == "quote_expired"
            brief = await api.post(
                "/v1/fx/quotes",
                {"balance_from": usd["id"], "balance_to": eur["id"], "amount": "1.00", "expires_in_s": 1},
            )
            await asyncio.sleep(1.2)  # past its expiry
            late = {**body, "quote_id": brief.body["id"]}
            assert (await api.post("/v1/payments", late)).body["status"] == "quote_expired"
            mismatch = await api.post("/v1/payments", {**body, "amount": "2.00"})
            assert (mismatch.status, mismatch.body["param"]) == (422, "quote_id")
            # Without a quote, two currencies still do not mix.
            plain = await api.post("/v1/payments", {"balance_from": usd["id"], "balance_to": eur["id"], "amount": "1"})
            assert plain.body["status"] == "currencies_dont_match"
            kept = await api.post(
                "/v1/fx/quotes", {"balance_from": eur["id"], "balance_to": usd["id"], "amount": "0.80"}
            )
            assert kept.status == 201
            before = {b: await _amount(api, b) for b in (usd["id"], eur["id"])}

        assert server.stop() == 0
        server.start()  # rates and quotes are journaled: both survive
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            rates = (await api.get("/v1/fx/rates")).body["data"]
            assert [(r["base"], r["quote"], r["rate"]) for r in rates] == [("EUR", "USD", "1.25")]
            body = {"balance_from": eur["id"], "balance_to": usd["id"], "amount": "0.80", "quote_id": kept.body["id"]}
            after = await api.post("/v1/payments", body)
            assert (after.body["status"], after.body["amount_to"]) == ("success", "1.00")
            assert await _amount(api, usd["id"]) == before[usd["id"]] + 1
            # A transfer leg may exchange too: both legs move, in three currencies' balances.
            quote = await api.post(
                "/v1/fx/quotes", {"balance_from": usd["id"], "balance_to": eur["id"], "amount": "5.00"}
            )
            bob = await api.account("bob@example.com")
            bob_usd = await api.balance(bob["id"], "USD")
            legs = [
                {"balance_from": usd["id"], "balance_to": eur["id"], "amount": "5.00", "quote_id": quote.body["id"]},
                {"balance_from": usd["id"], "balance_to": bob_usd["id"], "amount": "1.00"},
            ]
            transfer = await api.post("/v1/transfers", {"legs": legs})
            assert transfer.body["status"] == "success", transfer
            leg = (await api.get(f"/v1/payments/{transfer.body['legs'][0]['payment_id']}")).body
            assert (leg["amount_to"], leg["transfer_id"]) == ("4.00", transfer.body["id"])
            for currency in ("USD", "EUR"):
                assert await _sum_of_currency(api, currency) == 0
    finally:
        server.stop()
