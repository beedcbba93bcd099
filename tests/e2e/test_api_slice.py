"""The first slice of the REST contract against one shared real server."""

from __future__ import annotations

import asyncio
import io

import aiohttp

from tests.support.api import Api
from tests.support.server import Server


async def test_health_needs_no_token(server: Server, session: aiohttp.ClientSession) -> None:
    anonymous = Api(session, server.url, None)
    assert (await anonymous.get("/healthz")).status == 200
    ready = await anonymous.get("/readyz")
    assert ready.status == 200 and ready.body["status"] == "ready"


async def test_v1_needs_the_admin_token(server: Server, session: aiohttp.ClientSession) -> None:
    for token in (None, "wrong-token-of-enough-length"):
        reply = await Api(session, server.url, token).get("/v1/currencies")
        assert reply.status == 401 and reply.body["code"] == "unauthorized"
        assert reply.headers["Content-Type"].startswith("application/problem+json")


async def test_currencies_come_from_iso_4217(api: Api) -> None:
    by_code = {c["code"]: c for c in await api.every_page("/v1/currencies", "code")}
    assert by_code["USD"]["exponent"] == 2 and by_code["JPY"]["exponent"] == 0 and by_code["BHD"]["exponent"] == 3
    assert (await api.get("/v1/currencies/XYZ")).status == 404


async def test_accounts_and_balances(api: Api) -> None:
    account = await api.account("carol@example.com")
    assert account["status"] == "active" and account["balances"] == [] and account["id"].startswith("acc_")
    dup = await api.post("/v1/accounts", {"email": "carol@example.com"})
    assert dup.status == 409 and dup.body["code"] == "email_taken"
    bad = await api.post("/v1/accounts", {"email": "not-an-email"})
    assert bad.status == 422 and bad.body["code"] == "validation_error"

    jpy = await api.balance(account["id"], "JPY")
    assert jpy["amount"] == "0" and jpy["available"] == "0" and jpy["status"] == "active"
    again = await api.post(f"/v1/accounts/{account['id']}/balances", {"currency": "JPY"})
    assert again.status == 409 and again.body["code"] == "balance_exists"
    unknown = await api.post(f"/v1/accounts/{account['id']}/balances", {"currency": "ZZZ"})
    assert unknown.status == 422 and unknown.body["code"] == "unknown_currency"
    missing = await api.post("/v1/accounts/acc_missing/balances", {"currency": "USD"})
    assert missing.status == 404 and missing.body["code"] == "account_not_found"

    fetched = await api.get(f"/v1/accounts/{account['id']}")
    assert [b["id"] for b in fetched.body["balances"]] == [jpy["id"]]
    assert (await api.get("/v1/accounts/acc_missing")).status == 404


async def test_amounts_are_validated_exactly(api: Api) -> None:
    dave = await api.account("dave@example.com")
    erin = await api.account("erin@example.com")
    d, e = await api.balance(dave["id"], "USD"), await api.balance(erin["id"], "USD")
    await api.deposit(d["id"], "5")
    for amount in ("10.505", "1e3", "-1", "0", "0.00", 10.5, 10, "", " 1", "9" * 30):
        reply = await api.post("/v1/payments", {"balance_from": d["id"], "balance_to": e["id"], "amount": amount})
        assert reply.status == 422 and reply.body["code"] == "invalid_amount", (amount, reply)
    for amount, shown in (("1", "1.00"), ("1.5", "1.50"), ("1.50", "1.50")):
        reply = await api.pay(d["id"], e["id"], amount)
        assert reply.status == 201 and reply.body["amount"] == shown
    balance = await api.get(f"/v1/balances/{d['id']}")
    assert balance.body["amount"] == "1.00"  # 5 - 1 - 1.5 - 1.5, and nothing from the refusals


async def test_bad_requests_change_nothing(api: Api, session: aiohttp.ClientSession) -> None:
    frank = await api.account("frank@example.com")
    f = await api.balance(frank["id"], "USD")
    await api.deposit(f["id"], "1")
    cases = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, "validation_error"),
        ({"data": b"[]", "headers": {"Content-Type": "application/json"}}, 422, "validation_error"),
        ({"data": b"balance_from=x", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        (
            {"json": {"balance_from": f["id"], "balance_to": "bal_nope", "amount": "1", "extra": 1}},
            422,
            "validation_error",
        ),
        ({"json": {"balance_from": f["id"], "balance_to": "bal_nope", "amount": "1"}}, 404, "balance_not_found"),
        ({"json": {"balance_from": f["id"]}}, 422, "validation_error"),
        ({"json": {"balance_from": f["id"], "balance_to": "x" * 100_000, "amount": "1"}}, 422, "validation_error"),
        (
            {"data": io.BytesIO(b"{" + b" " * (2 * 2**20) + b"}"), "headers": {"Content-Type": "application/json"}},
            413,
            "payload_too_large",
        ),
    ]
    for kwargs, status, code in cases:
        reply = await api.request("POST", "/v1/payments", **kwargs)
        assert (reply.status, reply.body["code"]) == (status, code), (kwargs.get("json"), reply)
        assert "Traceback" not in str(reply.body)
    assert (await api.get(f"/v1/balances/{f['id']}")).body["amount"] == "1.00"


async def test_withdrawal_to_the_issuer(api: Api) -> None:
    gina = await api.account("gina@example.com")
    g = await api.balance(gina["id"], "EUR")
    await api.deposit(g["id"], "10")
    ok = await api.post("/v1/withdrawals", {"balance_id": g["id"], "amount": "4"})
    assert ok.status == 201 and ok.body["status"] == "success"
    too_much = await api.post("/v1/withdrawals", {"balance_id": g["id"], "amount": "7"})
    assert too_much.status == 201 and too_much.body["status"] == "not_enough_money"
    issuer = (await api.get("/v1/currencies/EUR")).body["issuer_balance_id"]
    assert ok.body["balance_to"] == issuer
    assert (await api.get(f"/v1/balances/{g['id']}")).body["amount"] == "6.00"


async def test_two_hundred_concurrent_payments_cannot_overspend(api: Api) -> None:
    """The original system's race: 200 concurrent payments, money for 50."""
    payer, payee = await api.account("hank@example.com"), await api.account("ivy@example.com")
    source, target = await api.balance(payer["id"], "USD"), await api.balance(payee["id"], "USD")
    await api.deposit(source["id"], "100.00")
    replies = await asyncio.gather(*(api.pay(source["id"], target["id"], "2.00") for _ in range(200)))
    statuses = [r.body["status"] for r in replies]
    assert all(r.status == 201 for r in replies)
    assert statuses.count("success") == 50 and statuses.count("not_enough_money") == 150
    assert (await api.get(f"/v1/balances/{source['id']}")).body["amount"] == "0.00"
    assert (await api.get(f"/v1/balances/{target['id']}")).body["amount"] == "100.00"
