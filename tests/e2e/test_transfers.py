"""Transfers over HTTP: many at once over overlapping balances, then a kill -9 of the
whole server while they run. Every currency is conserved, every transfer moved all its
legs or none, every acknowledged one comes back as it was answered, and `rayledger
verify` finds the journals clean."""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.server import rayledger_command
from tests.support.api import Api, Reply
from tests.support.server import Server

BALANCES_PER_CURRENCY = 6
FUNDS = Decimal("50.00")


async def _balances(api: Api) -> dict[str, list[str]]:
    """Funded balances in USD and EUR, on accounts of their own (so they spread over shards)."""
    out: dict[str, list[str]] = {}
    for currency in ("USD", "EUR"):
        out[currency] = []
        for n in range(BALANCES_PER_CURRENCY):
            account = await api.account(f"t{n}-{currency.lower()}@example.com")
            balance = await api.balance(account["id"], currency)
            await api.deposit(balance["id"], str(FUNDS))
            out[currency].append(balance["id"])
    return out


def _random_transfer(rng: random.Random, balances: dict[str, list[str]]) -> dict[str, Any]:
    legs = []
    for _ in range(rng.randint(1, 4)):
        currency = rng.choice(["USD", "EUR"])
        src, dst = rng.sample(balances[currency], 2)
        if rng.random() < 0.05:  # now and then a leg across currencies: the whole transfer fails
            dst = rng.choice(balances["EUR" if currency == "USD" else "USD"])
        legs.append({"balance_from": src, "balance_to": dst, "amount": f"{rng.randint(1, 2500) / 100:.2f}"})
    return {"legs": legs}


def _expected(transfers: list[dict[str, Any]], balances: dict[str, list[str]]) -> dict[str, Decimal]:
    amounts = {b: FUNDS for bs in balances.values() for b in bs}
    for t in transfers:
        if t["status"] != "success":
            continue
        for leg in t["legs"]:
            amounts[leg["balance_from"]] -= Decimal(leg["amount"])
            amounts[leg["balance_to"]] += Decimal(leg["amount"])
    return amounts


async def _amounts(api: Api, balances: dict[str, list[str]]) -> dict[str, Decimal]:
    return {b: Decimal((await api.get(f"/v1/balances/{b}")).body["amount"]) for bs in balances.values() for b in bs}


async def _issued(api: Api, currency: str) -> Decimal:
    issuer = (await api.get(f"/v1/currencies/{currency}")).body["issuer_balance_id"]
    return Decimal((await api.get(f"/v1/balances/{issuer}")).body["amount"])


async def _check_legs(api: Api, transfer: dict[str, Any]) -> None:
    """Each leg is a payment with the transfer's status, in both balances' statements."""
    for leg in transfer["legs"]:
        payment = (await api.get(f"/v1/payments/{leg['payment_id']}")).body
        assert (payment["transfer_id"], payment["status"]) == (transfer["id"], transfer["status"])


async def test_concurrent_transfers_conserve_every_currency(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            balances = await _balances(api)
            rng = random.Random(7)
            bodies = [_random_transfer(rng, balances) for _ in range(200)]
            replies = await asyncio.gather(*(api.post("/v1/transfers", b) for b in bodies))
            assert all(r.status == 201 for r in replies), [r for r in replies if r.status != 201][:3]
            transfers = [r.body for r in replies]
            statuses = defaultdict(int)
            for t in transfers:
                statuses[t["status"]] += 1
                assert (t["status"] == "success") == ("failed_leg" not in t)
            # Overlapping balances with 25.00 legs on 50.00 funds: some transfers must fail.
            assert statuses["success"] > 0 and statuses["not_enough_money"] > 0, statuses
            assert statuses["currencies_dont_match"] > 0, statuses
            assert await _amounts(api, balances) == _expected(transfers, balances)
            for currency in ("USD", "EUR"):  # what the issuer issued is all still there
                total = sum((await _amounts(api, {currency: balances[currency]})).values())
                assert total == -(await _issued(api, currency)) == FUNDS * BALANCES_PER_CURRENCY
            for t in rng.sample(transfers, 10):
                await _check_legs(api, t)
                assert (await api.get(f"/v1/transfers/{t['id']}")).body == t
            listed = await api.every_page(f"/v1/transfers?balance={balances['USD'][0]}")
            touching = [
                t["id"]
                for t in transfers
                if any(balances["USD"][0] in (g["balance_from"], g["balance_to"]) for g in t["legs"])
            ]
            assert sorted(t["id"] for t in listed) == sorted(touching)
    finally:
        server.stop()


async def test_kill9_mid_transfers_keeps_each_all_or_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            balances = await _balances(api)
            rng = random.Random(11)
            acknowledged: list[dict[str, Any]] = []
            sent: list[dict[str, Any]] = []

            async def client() -> None:
                while True:
                    body = {**_random_transfer(rng, balances), "metadata": {"n": str(len(sent))}}
                    sent.append(body)
                    try:
                        reply: Reply = await api.post("/v1/transfers", body)
                    except aiohttp.ClientError:
                        return  # the server died under it
                    if reply.status == 201:
                        acknowledged.append(reply.body)

            clients = [asyncio.ensure_future(client()) for _ in range(16)]
            while len(acknowledged) < 150:
                await asyncio.sleep(0.01)
            server.kill9()
            await asyncio.wait_for(asyncio.gather(*clients, return_exceptions=True), 30)

        server.start()
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            for t in acknowledged:
                assert (await api.get(f"/v1/transfers/{t['id']}")).body == t
            for t in rng.sample(acknowledged, 10):
                await _check_legs(api, t)
            # Every transfer there is, acknowledged or not: each moved all of its legs or none.
            found = await api.every_page("/v1/transfers")
            assert {t["id"] for t in acknowledged} <= {t["id"] for t in found}
            assert all(t["status"] != "pending" for t in found)
            assert await _amounts(api, balances) == _expected(found, balances)
        assert server.stop() == 0
        verified = subprocess.run(
            [*rayledger_command(), "verify", "--data-dir", str(server.data_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"transfers {len(found)}," in verified.stdout
    finally:
        server.stop()


async def test_an_account_key_transfers_only_from_its_own_balances(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            admin = Api(session, server.url, server.token)
            ada, bob, cy = [await admin.account(f"{n}@example.com") for n in ("ada", "bob", "cy")]
            a, b, c = [await admin.balance(x["id"], "USD") for x in (ada, bob, cy)]
            for balance in (a, b):
                await admin.deposit(balance["id"], "10")
            token = (await admin.post(f"/v1/accounts/{ada['id']}/keys")).body["token"]
            key = Api(session, server.url, token)
            mine = await key.post(
                "/v1/transfers",
                {
                    "legs": [
                        {"balance_from": a["id"], "balance_to": b["id"], "amount": "1"},
                        {"balance_from": a["id"], "balance_to": c["id"], "amount": "2"},
                    ]
                },
            )
            assert mine.status == 201 and mine.body["status"] == "success", mine
            # A leg paying from bob's balance: exactly what a made-up balance gets.
            theirs = await key.post(
                "/v1/transfers",
                {
                    "legs": [
                        {"balance_from": a["id"], "balance_to": c["id"], "amount": "1"},
                        {"balance_from": b["id"], "balance_to": c["id"], "amount": "1"},
                    ]
                },
            )
            assert (theirs.status, theirs.body["code"], theirs.body["param"]) == (
                404,
                "balance_not_found",
                "legs[1].balance_from",
            )
            between_others = await admin.post(
                "/v1/transfers", {"legs": [{"balance_from": b["id"], "balance_to": c["id"], "amount": "1"}]}
            )
            assert (await key.get(f"/v1/transfers/{between_others.body['id']}")).status == 404
            assert (await key.get(f"/v1/transfers/{mine.body['id']}")).body == mine.body
            listed = (await key.get("/v1/transfers")).body["data"]
            assert [t["id"] for t in listed] == [mine.body["id"]]
            quote = await key.post("/v1/fx/quotes", {"balance_from": b["id"], "balance_to": a["id"], "amount": "1"})
            assert (quote.status, quote.body["code"]) == (404, "balance_not_found")
            assert (await admin.get(f"/v1/balances/{a['id']}")).body["amount"] == "7.00"
    finally:
        server.stop()
