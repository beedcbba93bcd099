"""The REST contract beyond the first slice, against one shared real server: keys and
permissions, idempotency, lists and statements, disabling, custom currencies, batches,
holds, OpenAPI and docs."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp

from tests.support.api import Api
from tests.support.server import Server

_emails = itertools.count()


async def funded(api: Api, currency: str = "USD", amount: str = "100") -> tuple[dict, dict]:
    account = await api.account(f"user{next(_emails)}@example.com")
    balance = await api.balance(account["id"], currency)
    if amount != "0":
        await api.deposit(balance["id"], amount)
    return account, balance


def as_account(api: Api, token: str) -> Api:
    return Api(api.session, api.base_url, token)


async def test_account_keys_scope_what_a_token_can_do(api: Api) -> None:
    alice, a_bal = await funded(api)
    bob, b_bal = await funded(api)
    key = await api.post(f"/v1/accounts/{alice['id']}/keys")
    assert key.status == 201 and key.body["token"].startswith("rlk_") and key.body["id"].startswith("key_")
    alice_api = as_account(api, key.body["token"])

    assert (await alice_api.get(f"/v1/accounts/{alice['id']}")).status == 200
    assert (await alice_api.get(f"/v1/balances/{a_bal['id']}")).status == 200
    # Another account's things do not exist for this token; admin-only things are forbidden.
    assert (await alice_api.get(f"/v1/accounts/{bob['id']}")).status == 404
    assert (await alice_api.get(f"/v1/balances/{b_bal['id']}")).status == 404
    assert (await alice_api.get(f"/v1/balances/{b_bal['id']}/entries")).status == 404
    for method, path, body in [
        ("POST", "/v1/accounts", {"email": "x@example.com"}),
        ("GET", "/v1/accounts", None),
        ("POST", "/v1/deposits", {"balance_id": a_bal["id"], "amount": "1"}),
        ("POST", f"/v1/accounts/{alice['id']}/keys", None),
        ("PATCH", f"/v1/balances/{a_bal['id']}", {"status": "disabled"}),
    ]:
        reply = await alice_api.request(method, path, json=body)
        assert (reply.status, reply.body["code"]) == (403, "forbidden"), (method, path, reply)

    stolen = await alice_api.pay(b_bal["id"], a_bal["id"], "1")
    assert (stolen.status, stolen.body["code"]) == (404, "balance_not_found"), "as if it did not exist"
    paid = await alice_api.pay(a_bal["id"], b_bal["id"], "1")
    assert paid.status == 201 and paid.body["status"] == "success"
    assert (await alice_api.get(f"/v1/payments/{paid.body['id']}")).status == 200
    bob_only = await api.pay(b_bal["id"], a_bal["id"], "2")
    bob_key = await api.post(f"/v1/accounts/{bob['id']}/keys")
    _, c_bal = await funded(api)
    carol_only = await api.pay(c_bal["id"], b_bal["id"], "1")
    # Alice sees payments touching her balances only.
    assert (await alice_api.get(f"/v1/payments/{bob_only.body['id']}")).status == 200
    assert (await alice_api.get(f"/v1/payments/{carol_only.body['id']}")).status == 404
    listed = await alice_api.get("/v1/payments")
    assert {p["id"] for p in listed.body["data"]} >= {paid.body["id"], bob_only.body["id"]}
    assert carol_only.body["id"] not in {p["id"] for p in listed.body["data"]}
    assert (await as_account(api, bob_key.body["token"]).get(f"/v1/payments/{carol_only.body['id']}")).status == 200

    # Revocation works at once.
    assert (await api.request("DELETE", f"/v1/keys/{key.body['id']}")).status == 204
    revoked = await alice_api.get(f"/v1/accounts/{alice['id']}")
    assert (revoked.status, revoked.body["code"]) == (401, "unauthorized")
    assert (await api.request("DELETE", f"/v1/keys/{key.body['id']}")).status == 404


async def test_idempotency_key_replays_and_refuses_reuse(api: Api) -> None:
    _, a = await funded(api)
    _, b = await funded(api, amount="0")
    body = {"balance_from": a["id"], "balance_to": b["id"], "amount": "3.00"}
    first = await api.post("/v1/payments", body, headers={"Idempotency-Key": "order-1"})
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    again = await api.post("/v1/payments", body, headers={"Idempotency-Key": "order-1"})
    assert again.status == 201 and again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    other = await api.post("/v1/payments", {**body, "amount": "4"}, headers={"Idempotency-Key": "order-1"})
    assert (other.status, other.body["code"]) == (409, "idempotency_key_reused")
    too_long = await api.post("/v1/payments", body, headers={"Idempotency-Key": "k" * 256})
    assert too_long.status == 422
    assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "3.00"

    # Concurrent duplicates with one key make one payment.
    replies = await asyncio.gather(
        *(api.post("/v1/payments", body, headers={"Idempotency-Key": "order-2"}) for _ in range(20))
    )
    assert {r.status for r in replies} == {201}
    assert len({r.body["id"] for r in replies}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in replies) == 19
    assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "6.00"

    deposit = {"balance_id": b["id"], "amount": "1"}
    d1 = await api.post("/v1/deposits", deposit, headers={"Idempotency-Key": "dep-1"})
    d2 = await api.post("/v1/deposits", deposit, headers={"Idempotency-Key": "dep-1"})
    assert d1.body == d2.body and (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "7.00"


async def test_lists_paginate_newest_first(api: Api) -> None:
    _, a = await funded(api)
    _, b = await funded(api, amount="0")
    ids = [(await api.pay(a["id"], b["id"], f"{n}")).body["id"] for n in range(1, 6)]
    page1 = await api.get(f"/v1/payments?balance={b['id']}&limit=2")
    assert [p["id"] for p in page1.body["data"]] == ids[::-1][:2] and page1.body["has_more"] is True
    page2 = await api.get(f"/v1/payments?balance={b['id']}&limit=2&starting_after={ids[3]}")
    assert [p["id"] for p in page2.body["data"]] == [ids[2], ids[1]]
    last = await api.get(f"/v1/payments?balance={b['id']}&limit=10&starting_after={ids[1]}")
    assert [p["id"] for p in last.body["data"]] == [ids[0]] and last.body["has_more"] is False
    refused = await api.pay(a["id"], b["id"], "1000")
    only_refused = await api.get(f"/v1/payments?balance={a['id']}&status=not_enough_money")
    assert [p["id"] for p in only_refused.body["data"]] == [refused.body["id"]]
    for bad in ("limit=0", "limit=101", "limit=x", "status=nope"):
        assert (await api.get(f"/v1/payments?{bad}")).status == 422

    entries = await api.get(f"/v1/balances/{a['id']}/entries?limit=3")
    assert [(e["amount"], e["balance_after"]) for e in entries.body["data"]] == [
        ("-5.00", "85.00"),
        ("-4.00", "90.00"),
        ("-3.00", "94.00"),
    ]
    older = await api.get(f"/v1/balances/{a['id']}/entries?starting_after={entries.body['data'][-1]['payment_id']}")
    assert [e["amount"] for e in older.body["data"]] == ["-2.00", "-1.00", "100.00"]

    accounts = await api.get("/v1/accounts?limit=2")
    assert len(accounts.body["data"]) == 2 and accounts.body["has_more"] is True
    ids_desc = [x["id"] for x in accounts.body["data"]]
    assert ids_desc == sorted(ids_desc, reverse=True)


async def test_disabled_accounts_and_balances_refuse_payments(api: Api) -> None:
    owner, a = await funded(api)
    _, b = await funded(api, amount="0")
    off = await api.request("PATCH", f"/v1/balances/{a['id']}", json={"status": "disabled"})
    assert off.status == 200 and off.body["status"] == "disabled"
    refused = await api.pay(a["id"], b["id"], "1")
    assert refused.status == 201 and refused.body["status"] == "balance_disabled"
    received = await api.pay(b["id"], a["id"], "1")
    assert received.status == 201 and received.body["status"] == "balance_disabled"  # nor receives
    assert (await api.get(f"/v1/balances/{a['id']}")).body["amount"] == "100.00"
    await api.request("PATCH", f"/v1/balances/{a['id']}", json={"status": "active"})
    assert (await api.pay(a["id"], b["id"], "1")).body["status"] == "success"

    account_off = await api.request("PATCH", f"/v1/accounts/{owner['id']}", json={"status": "disabled"})
    assert account_off.status == 200 and account_off.body["status"] == "disabled"
    assert (await api.pay(a["id"], b["id"], "1")).body["status"] == "balance_disabled"
    assert (await api.pay(b["id"], a["id"], "0.5")).body["status"] == "balance_disabled"
    listed = await api.get("/v1/accounts?status=disabled")
    assert owner["id"] in {x["id"] for x in listed.body["data"]}
    await api.request("PATCH", f"/v1/accounts/{owner['id']}", json={"status": "active"})
    assert (await api.pay(a["id"], b["id"], "1")).body["status"] == "success"
    assert (await api.get(f"/v1/balances/{a['id']}")).body["amount"] == "98.00"

    limit = await api.request("PATCH", f"/v1/balances/{a['id']}", json={"overdraft_limit": "10"})
    assert limit.body["overdraft_limit"] == "10.00" and limit.body["available"] == "108.00"
    assert (await api.pay(a["id"], b["id"], "105")).body["status"] == "success"
    lower = await api.request("PATCH", f"/v1/balances/{a['id']}", json={"overdraft_limit": "0"})
    assert (lower.status, lower.body["code"]) == (409, "conflict")


async def test_custom_currencies(api: Api) -> None:
    created = await api.post("/v1/currencies", {"code": "GOLDCOIN", "exponent": 4, "name": "Gold coin"})
    assert created.status == 201 and created.body["custom"] is True and created.body["issuer_balance_id"]
    assert (await api.post("/v1/currencies", {"code": "GOLDCOIN", "exponent": 2, "name": "x"})).status == 409
    assert (await api.post("/v1/currencies", {"code": "USD", "exponent": 2, "name": "x"})).status == 409
    for bad in ({"code": "ab", "exponent": 2, "name": "x"}, {"code": "ABC", "exponent": 9, "name": "x"}):
        assert (await api.post("/v1/currencies", bad)).status == 422
    _, a = await funded(api, "GOLDCOIN", "1.2345")
    _, b = await funded(api, "GOLDCOIN", "0")
    assert (await api.pay(a["id"], b["id"], "0.0001")).body["amount"] == "0.0001"
    assert (await api.pay(a["id"], b["id"], "0.00001")).status == 422
    listed = await api.every_page("/v1/currencies", "code")
    assert {"code": "GOLDCOIN", "exponent": 4, "name": "Gold coin", "custom": True} in listed
    assert [c["code"] for c in listed] == sorted({c["code"] for c in listed}), "each once, by code"


async def test_batch_items_succeed_or_fail_alone(api: Api) -> None:
    _, a = await funded(api, amount="10")
    _, b = await funded(api, amount="0")
    items = [
        {"balance_from": a["id"], "balance_to": b["id"], "amount": "4"},
        {"balance_from": a["id"], "balance_to": a["id"], "amount": "1"},
        {"balance_from": a["id"], "balance_to": "bal_missing", "amount": "1"},
        {"balance_from": a["id"], "balance_to": b["id"], "amount": "1.001"},
        {"balance_from": a["id"], "balance_to": b["id"], "amount": "100"},
        {"balance_from": a["id"], "balance_to": b["id"], "amount": "6", "idempotency_key": "batch-k"},
    ]
    reply = await api.post("/v1/payments/batch", {"payments": items})
    assert reply.status == 200
    r = reply.body["results"]
    assert [x.get("status") for x in r] == ["success", 422, 404, 422, "not_enough_money", "success"]
    assert [x.get("code") for x in r[1:4]] == ["same_balance", "balance_not_found", "invalid_amount"]
    again = await api.post("/v1/payments/batch", {"payments": items[-1:]})
    assert again.body["results"][0] == r[-1]
    assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "10.00"
    too_many = await api.post("/v1/payments/batch", {"payments": items[:1] * 1001})
    assert too_many.status == 422


async def test_a_batch_header_key_makes_the_batch_one_replayable_unit(api: Api) -> None:
    _, a = await funded(api, amount="10")
    _, b = await funded(api, amount="0")
    one = {"balance_from": a["id"], "balance_to": b["id"], "amount": "1"}
    missing = {**one, "balance_to": "bal_missing"}
    header = {"Idempotency-Key": f"batch-header-{next(_emails)}"}
    first = await api.post("/v1/payments/batch", {"payments": [one, one, missing]}, headers=header)
    assert first.status == 200 and "Idempotent-Replayed" not in first.headers, first
    r = first.body["results"]
    assert [x["status"] for x in r] == ["success", "success", 404] and r[0]["id"] != r[1]["id"], r
    assert [x["idempotency_key"] for x in r[:2]] == [f"{header['Idempotency-Key']}:{n}" for n in range(2)]
    assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "2.00"  # two payments, two moves

    again = await api.post("/v1/payments/batch", {"payments": [one, one, missing]}, headers=header)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.body["results"] == r
    # Another body under the header is refused whole, before anything moves, a longer one too.
    for other in ([one, one], [one, one, missing, one], [one, {**one, "amount": "2"}, missing]):
        refused = await api.post("/v1/payments/batch", {"payments": other}, headers=header)
        assert refused.status == 409 and refused.body["code"] == "idempotency_key_reused", refused
    assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "2.00"

    # No two items share a key, whether derived from the header or their own.
    clash = [one, {**one, "idempotency_key": f"{header['Idempotency-Key']}-x:0"}]
    shared = await api.post(
        "/v1/payments/batch", {"payments": clash}, headers={"Idempotency-Key": f"{header['Idempotency-Key']}-x"}
    )
    assert shared.status == 422 and shared.body["param"] == "payments[1].idempotency_key", shared
    twice = [{**one, "idempotency_key": "same"}, {**one, "idempotency_key": "same"}]
    shared = await api.post("/v1/payments/batch", {"payments": twice})
    assert shared.status == 422 and shared.body["param"] == "payments[1].idempotency_key", shared
    # Items are keyed <header>:<index> within the 255 characters of a key.
    too_long = await api.post("/v1/payments/batch", {"payments": [one]}, headers={"Idempotency-Key": "k" * 252})
    assert too_long.status == 422 and too_long.body["param"] == "Idempotency-Key", too_long
    longest = await api.post("/v1/payments/batch", {"payments": [one]}, headers={"Idempotency-Key": "k" * 251})
    assert longest.status == 200 and longest.body["results"][0]["idempotency_key"] == "k" * 251 + ":0", longest
    assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "3.00"


async def test_holds_capture_void_and_expire(api: Api) -> None:
    _, a = await funded(api, amount="50")
    _, b = await funded(api, amount="0")
    hold = await api.post(
        "/v1/holds", {"balance_from": a["id"], "balance_to": b["id"], "amount": "30", "expires_in_s": 60}
    )
    assert hold.status == 201 and hold.body["status"] == "held" and hold.body["id"].startswith("hold_")
    balance = (await api.get(f"/v1/balances/{a['id']}")).body
    assert (balance["amount"], balance["reserved"], balance["available"]) == ("50.00", "30.00", "20.00")
    assert (await api.pay(a["id"], b["id"], "25")).body["status"] == "not_enough_money"

    too_much = await api.post(f"/v1/holds/{hold.body['id']}/capture", {"amount": "31"})
    assert too_much.status == 422
    captured = await api.post(
        f"/v1/holds/{hold.body['id']}/capture", {"amount": "12.50"}, headers={"Idempotency-Key": "cap-1"}
    )
    assert captured.status == 201 and captured.body["status"] == "success" and captured.body["amount"] == "12.50"
    replay = await api.post(
        f"/v1/holds/{hold.body['id']}/capture", {"amount": "12.50"}, headers={"Idempotency-Key": "cap-1"}
    )
    assert replay.body == captured.body and replay.headers["Idempotent-Replayed"] == "true"
    # Not final: the rest stays held for another capture.
    state = (await api.get(f"/v1/holds/{hold.body['id']}")).body
    assert (state["status"], state["captured_amount"], state["captures"]) == ("held", "12.50", [captured.body["id"]])
    balance = (await api.get(f"/v1/balances/{a['id']}")).body
    assert (balance["amount"], balance["reserved"]) == ("37.50", "17.50")
    beyond = await api.post(f"/v1/holds/{hold.body['id']}/capture", {"amount": "17.51"})
    assert (beyond.status, beyond.body["code"]) == (422, "invalid_amount")
    last = await api.post(f"/v1/holds/{hold.body['id']}/capture", {"amount": "5", "final": True})
    assert last.status == 201 and last.body["amount"] == "5.00"
    twice = await api.post(f"/v1/holds/{hold.body['id']}/capture", {})
    assert (twice.status, twice.body["code"]) == (409, "conflict")
    state = (await api.get(f"/v1/holds/{hold.body['id']}")).body
    assert (state["status"], state["captured_amount"]) == ("captured", "17.50")
    assert state["captures"] == [captured.body["id"], last.body["id"]] and state["payment_id"] == last.body["id"]
    balance = (await api.get(f"/v1/balances/{a['id']}")).body  # the last 12.50 was released
    assert (balance["amount"], balance["reserved"]) == ("32.50", "0.00")
    assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "17.50"

    second = await api.post(
        "/v1/holds", {"balance_from": a["id"], "balance_to": b["id"], "amount": "7", "expires_in_s": 60}
    )
    voided = await api.post(f"/v1/holds/{second.body['id']}/void")
    assert voided.status == 200 and voided.body["status"] == "voided"
    assert (await api.post(f"/v1/holds/{second.body['id']}/void")).status == 409
    assert (await api.get(f"/v1/balances/{a['id']}")).body["available"] == "32.50"

    refused = await api.post(
        "/v1/holds", {"balance_from": a["id"], "balance_to": b["id"], "amount": "99", "expires_in_s": 5}
    )
    assert refused.status == 201 and refused.body["status"] == "not_enough_money"

    short = await api.post(
        "/v1/holds", {"balance_from": a["id"], "balance_to": b["id"], "amount": "5", "expires_in_s": 1}
    )
    assert (await api.get(f"/v1/balances/{a['id']}")).body["available"] == "27.50"
    for _ in range(100):  # the sweeper releases it within a second of expiry
        state = (await api.get(f"/v1/holds/{short.body['id']}")).body
        if state["status"] != "held":
            break
        await asyncio.sleep(0.1)
    assert state["status"] == "expired"
    assert (await api.get(f"/v1/balances/{a['id']}")).body["available"] == "32.50"
    assert (await api.post(f"/v1/holds/{short.body['id']}/capture", {})).status == 409
    assert (await api.get("/v1/holds/hold_missing")).status == 404


async def test_openapi_and_offline_docs(server: Server, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{server.url}/openapi.json") as response:
        spec = await response.json()
    assert spec["openapi"].startswith("3.1")
    for path in ("/v1/payments", "/v1/payments/batch", "/v1/holds/{id}/capture", "/v1/balances/{id}/entries"):
        assert path in spec["paths"]
    assert spec["components"]["schemas"]["PaymentCreate"]["additionalProperties"] is False
    async with session.get(f"{server.url}/docs") as response:
        html = await response.text()
    assert response.status == 200 and "/openapi.json" in html and "https://" not in html
    async with session.get(f"{server.url}/docs/static/swagger-ui-bundle.js") as response:
        assert response.status == 200 and len(await response.read()) > 100_000
