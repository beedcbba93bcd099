"""Contract 1.1, "Strictness and lists": what a careful client developer expects of a
payments API, checked against the real server (each numbered item of the trial that
found them has a test here)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from tests.support.api import Api
from tests.support.server import Server


def email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"


async def funded_pair(api: Api, amount: str = "100") -> tuple[dict, dict, dict]:
    a = await api.account(email())
    a_bal = await api.balance(a["id"], "USD")
    b = await api.account(email())
    b_bal = await api.balance(b["id"], "USD")
    await api.deposit(a_bal["id"], amount)
    return a, a_bal, b_bal


async def test_a_repeated_body_key_is_refused_not_last_wins(api: Api) -> None:
    _, a_bal, b_bal = await funded_pair(api)
    body = f'{{"balance_from":"{a_bal["id"]}","balance_to":"{b_bal["id"]}","amount":"1","amount":"2"}}'
    reply = await api.post("/v1/payments", data=body, headers={"Content-Type": "application/json"})
    assert reply.status == 422 and reply.body["code"] == "validation_error" and reply.body["param"] == "amount"
    nested = f'{{"email":"{email()}","metadata":{{"k":"1","k":"2"}}}}'
    reply = await api.post("/v1/accounts", data=nested, headers={"Content-Type": "application/json"})
    assert reply.status == 422 and reply.body["param"] == "metadata.k", reply
    balance = await api.get(f"/v1/balances/{a_bal['id']}")
    assert balance.body["amount"] == "100.00", "nothing moved"


async def test_unknown_query_parameters_are_refused(api: Api) -> None:
    for path in ("/v1/payments?acount=x", "/v1/accounts?emali=x", "/v1/currencies?lmit=2", "/v1/balances/x?y=1"):
        reply = await api.get(path)
        assert reply.status == 422 and reply.body["code"] == "validation_error", (path, reply)
        assert reply.body["param"] == path.split("?")[1].split("=")[0]
    twice = await api.get("/v1/payments?limit=1&limit=2")
    assert twice.status == 422 and twice.body["param"] == "limit"


async def test_payment_filters(api: Api) -> None:
    a, a_bal, b_bal = await funded_pair(api)
    key = f"filters-{uuid.uuid4().hex}"
    keyed = await api.post(
        "/v1/payments",
        {"balance_from": a_bal["id"], "balance_to": b_bal["id"], "amount": "1.25"},
        headers={"Idempotency-Key": key},
    )
    assert keyed.status == 201 and keyed.body["idempotency_key"] == key, "a payment echoes its key"
    plain = await api.pay(a_bal["id"], b_bal["id"], "2")
    by_key = await api.get(f"/v1/payments?idempotency_key={key}")
    assert [p["id"] for p in by_key.body["data"]] == [keyed.body["id"]]
    by_account = await api.every_page(f"/v1/payments?account={a['id']}")
    assert [p["id"] for p in by_account][:2] == [plain.body["id"], keyed.body["id"]]
    assert all(a_bal["id"] in (p["balance_from"], p["balance_to"]) for p in by_account)
    created = datetime.fromisoformat(keyed.body["created_at"].replace("Z", "+00:00"))
    since = (created - timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    until = (created + timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ranged = await api.get(f"/v1/payments?account={a['id']}&created_gte={since}&created_lt={until}")
    assert keyed.body["id"] in [p["id"] for p in ranged.body["data"]]
    later = await api.get(f"/v1/payments?account={a['id']}&created_gte={until}")
    assert keyed.body["id"] not in [p["id"] for p in later.body["data"]]
    bad_time = await api.get("/v1/payments?created_gte=yesterday")
    assert bad_time.status == 422 and bad_time.body["param"] == "created_gte"
    assert (await api.get("/v1/payments?account=acc_nope")).status == 404


async def test_ending_before_pages_towards_newer(api: Api) -> None:
    _, a_bal, b_bal = await funded_pair(api)
    ids = [(await api.pay(a_bal["id"], b_bal["id"], f"{n}")).body["id"] for n in range(1, 6)]
    oldest_first = ids  # ids are time-ordered
    newer = await api.get(f"/v1/payments?balance={a_bal['id']}&limit=2&ending_before={oldest_first[1]}")
    assert [p["id"] for p in newer.body["data"]] == [oldest_first[3], oldest_first[2]], "newest first, just newer"
    assert newer.body["has_more"] is True
    lines = await api.get(f"/v1/balances/{a_bal['id']}/entries?limit=2")
    back = await api.get(f"/v1/balances/{a_bal['id']}/entries?ending_before={lines.body['data'][-1]['id']}")
    assert [e["id"] for e in back.body["data"]] == [lines.body["data"][0]["id"]]
    both = await api.get(f"/v1/payments?starting_after={ids[0]}&ending_before={ids[1]}")
    assert both.status == 422


async def test_pending_is_a_status_like_any_other(api: Api) -> None:
    reply = await api.get("/v1/payments?status=pending")
    assert reply.status == 200 and all(p["status"] == "pending" for p in reply.body["data"])
    refused = await api.get("/v1/payments?status=nope")
    assert refused.status == 422 and refused.body["param"] == "status"
    detail = refused.body["detail"]
    assert "pending," in detail and "success," in detail and "<" not in detail, refused.body


async def test_every_list_pages_and_refuses_an_unknown_cursor(api: Api) -> None:
    first = await api.get("/v1/currencies?limit=2")
    assert len(first.body["data"]) == 2 and first.body["has_more"] is True
    second = await api.get(f"/v1/currencies?limit=2&starting_after={first.body['data'][-1]['code']}")
    assert second.body["data"][0]["code"] > first.body["data"][-1]["code"]
    _, a_bal, _ = await funded_pair(api)
    for path in (
        "/v1/currencies?starting_after=NOPE1",
        "/v1/accounts?starting_after=acc_nope",
        "/v1/payments?starting_after=pay_nope",
        f"/v1/balances/{a_bal['id']}/entries?starting_after=ent_nope",
        f"/v1/balances/{a_bal['id']}/entries?ending_before=pay_nope",
    ):
        reply = await api.get(path)
        assert reply.status == 422 and reply.body["code"] == "validation_error", (path, reply)
        assert reply.body["param"] in ("starting_after", "ending_before")


async def test_accounts_by_exact_email(api: Api) -> None:
    address = email()
    made = await api.account(address)
    found = await api.get(f"/v1/accounts?email={address.upper()}")
    assert [x["id"] for x in found.body["data"]] == [made["id"]]
    assert (await api.get(f"/v1/accounts?email=x{address}")).body["data"] == []


async def test_errors_speak_the_apis_words(api: Api) -> None:
    missing = await api.post("/v1/accounts", {})
    assert missing.status == 422 and missing.body["param"] == "email" and "required" in missing.body["detail"]
    unknown = await api.post("/v1/accounts", {"email": email(), "nickname": "x"})
    assert unknown.status == 422 and unknown.body["param"] == "nickname"
    pattern = await api.post("/v1/accounts", {"email": "not-an-email"})
    assert pattern.body["param"] == "email" and "regex" not in pattern.body["detail"]
    assert "`" not in pattern.body["detail"] and "email address" in pattern.body["detail"]
    number = await api.post("/v1/payments", {"balance_from": "a", "balance_to": "b", "amount": 10.5})
    assert number.body["code"] == "invalid_amount" and '"10"' in number.body["detail"]


async def test_an_integral_number_is_an_integer(api: Api) -> None:
    code = "I" + uuid.uuid4().hex[:8].upper()
    reply = await api.post("/v1/currencies", {"code": code, "exponent": 2.0, "name": "Integral"})
    assert reply.status == 201 and reply.body["exponent"] == 2, reply
    fraction = await api.post("/v1/currencies", {"code": code + "X", "exponent": 2.5, "name": "x"})
    assert fraction.status == 422 and fraction.body["param"] == "exponent"


async def test_refusals_name_the_bearer_scheme_and_allowed_methods(api: Api) -> None:
    anonymous = Api(api.session, api.base_url, None)
    reply = await anonymous.get("/v1/payments")
    assert reply.status == 401 and reply.headers["WWW-Authenticate"].startswith("Bearer")
    a = await api.account(email())
    wrong = await api.request("DELETE", f"/v1/accounts/{a['id']}")
    assert wrong.status == 405 and set(wrong.headers["Allow"].split(",")) == {"GET", "PATCH"}


async def test_a_refused_payment_was_decided_not_settled(api: Api) -> None:
    _, a_bal, b_bal = await funded_pair(api, "1")
    refused = await api.pay(a_bal["id"], b_bal["id"], "5")
    assert refused.body["status"] == "not_enough_money"
    assert "settled_at" not in refused.body and refused.body["decided_at"]
    paid = await api.pay(a_bal["id"], b_bal["id"], "0.5")
    assert paid.body["settled_at"] and paid.body["decided_at"]


async def test_an_account_key_cannot_tell_anothers_things_from_made_up_ones(api: Api) -> None:
    alice, a_bal, _ = await funded_pair(api)
    bob, b_bal, carol_bal = await funded_pair(api)  # bob's dealings with carol are none of alice's business
    bob_hold = await api.post(
        "/v1/holds", {"balance_from": b_bal["id"], "balance_to": carol_bal["id"], "amount": "1", "expires_in_s": 60}
    )
    bob_paid = await api.pay(b_bal["id"], carol_bal["id"], "1")
    key = await api.post(f"/v1/accounts/{alice['id']}/keys")
    alice_api = Api(api.session, api.base_url, key.body["token"])

    def shape(reply: object) -> tuple:
        body = reply.body  # type: ignore[attr-defined]
        return reply.status, body["code"], body.get("param")  # type: ignore[attr-defined]

    async def same(method: str, real: str, made_up: str, body_of=None) -> None:  # type: ignore[no-untyped-def]
        got = [
            await alice_api.request(method, p, json=body_of(i) if body_of else None)
            for i, p in enumerate((real, made_up))
        ]
        assert shape(got[0]) == shape(got[1]) and got[0].status == 404, (real, got)

    fake_bal, fake_acc, fake_pay, fake_hold = (
        "bal_" + "0" * 26,
        "acc_" + "0" * 26,
        "pay_" + "0" * 26,
        "hold_" + "0" * 26,
    )
    await same("GET", f"/v1/balances/{b_bal['id']}", f"/v1/balances/{fake_bal}")
    await same("GET", f"/v1/balances/{b_bal['id']}/entries", f"/v1/balances/{fake_bal}/entries")
    await same("GET", f"/v1/accounts/{bob['id']}", f"/v1/accounts/{fake_acc}")
    await same("GET", f"/v1/payments?balance={b_bal['id']}", f"/v1/payments?balance={fake_bal}")
    await same("GET", f"/v1/payments?account={bob['id']}", f"/v1/payments?account={fake_acc}")
    await same("GET", f"/v1/payments/{bob_paid.body['id']}", f"/v1/payments/{fake_pay}")
    await same("GET", f"/v1/holds/{bob_hold.body['id']}", f"/v1/holds/{fake_hold}")
    await same("POST", f"/v1/holds/{bob_hold.body['id']}/void", f"/v1/holds/{fake_hold}/void")
    sources = (b_bal["id"], fake_bal)
    await same(
        "POST",
        "/v1/payments",
        "/v1/payments",
        lambda i: {"balance_from": sources[i], "balance_to": a_bal["id"], "amount": "1"},
    )
    await same(
        "POST",
        "/v1/holds",
        "/v1/holds",
        lambda i: {"balance_from": sources[i], "balance_to": a_bal["id"], "amount": "1", "expires_in_s": 60},
    )


async def test_a_disabled_accounts_balances_read_disabled_and_none_can_be_opened(api: Api) -> None:
    owner, a_bal, b_bal = await funded_pair(api)
    await api.request("PATCH", f"/v1/balances/{a_bal['id']}", json={"overdraft_limit": "5"})
    key = await api.post(f"/v1/accounts/{owner['id']}/keys")
    off = await api.request("PATCH", f"/v1/accounts/{owner['id']}", json={"status": "disabled"})
    assert off.status == 200 and [b["status"] for b in off.body["balances"]] == ["disabled"]
    assert (await api.get(f"/v1/balances/{a_bal['id']}")).body["status"] == "disabled"
    opened = await api.post(f"/v1/accounts/{owner['id']}/balances", {"currency": "EUR"})
    assert (opened.status, opened.body["code"]) == (409, "account_disabled")
    owner_api = Api(api.session, api.base_url, key.body["token"])
    assert (await owner_api.get(f"/v1/balances/{a_bal['id']}")).status == 200, "its keys may still read"
    moved = await api.pay(b_bal["id"], a_bal["id"], "1")
    assert moved.body["status"] == "balance_disabled"
    on = await api.request("PATCH", f"/v1/accounts/{owner['id']}", json={"status": "active"})
    assert [b["status"] for b in on.body["balances"]] == ["active"]
    # A balance disabled on its own stays disabled when its account comes back.
    await api.request("PATCH", f"/v1/balances/{a_bal['id']}", json={"status": "disabled"})
    await api.request("PATCH", f"/v1/accounts/{owner['id']}", json={"status": "disabled"})
    back = await api.request("PATCH", f"/v1/accounts/{owner['id']}", json={"status": "active"})
    assert [b["status"] for b in back.body["balances"]] == ["disabled"]
    assert (await api.get(f"/v1/balances/{a_bal['id']}")).body["overdraft_limit"] == "5.00"


async def test_an_issuer_balance_has_no_limit_rather_than_a_word_for_one(api: Api) -> None:
    usd = await api.get("/v1/currencies/USD")
    issuer = await api.get(f"/v1/balances/{usd.body['issuer_balance_id']}")
    assert issuer.status == 200 and issuer.body["available"] is None and issuer.body["overdraft_limit"] is None
    assert issuer.body["amount"].lstrip("-").replace(".", "").isdigit()


async def test_entries_name_the_other_side_and_moves_take_descriptions(api: Api) -> None:
    a = await api.account(email())
    a_bal = await api.balance(a["id"], "USD")
    b_bal = await api.balance((await api.account(email()))["id"], "USD")
    deposit = await api.post(
        "/v1/deposits", {"balance_id": a_bal["id"], "amount": "10", "description": "top-up", "metadata": {"ref": "7"}}
    )
    assert deposit.body["description"] == "top-up" and deposit.body["metadata"] == {"ref": "7"}
    paid = await api.post(
        "/v1/payments", {"balance_from": a_bal["id"], "balance_to": b_bal["id"], "amount": "4", "description": "rent"}
    )
    withdrawn = await api.post("/v1/withdrawals", {"balance_id": b_bal["id"], "amount": "1"})
    assert withdrawn.body["description"] == "withdrawal", "the default when none is given"
    line = (await api.get(f"/v1/balances/{b_bal['id']}/entries")).body["data"][-1]  # the oldest: the payment
    assert line["payment_id"] == paid.body["id"] and line["counterparty_balance_id"] == a_bal["id"]
    assert line["description"] == "rent" and line["id"].startswith("ent_")


async def test_holds_and_keys_are_listed(api: Api) -> None:
    a, a_bal, b_bal = await funded_pair(api)
    held = [
        await api.post(
            "/v1/holds",
            {
                "balance_from": a_bal["id"],
                "balance_to": b_bal["id"],
                "amount": f"{n}",
                "expires_in_s": 600,
                "description": f"hold {n}",
            },
        )
        for n in (1, 2, 3)
    ]
    await api.post(f"/v1/holds/{held[0].body['id']}/void")
    listed = await api.get(f"/v1/holds?balance={a_bal['id']}")
    assert [h["id"] for h in listed.body["data"]] == [h.body["id"] for h in reversed(held)]
    assert [h["description"] for h in listed.body["data"]] == ["hold 3", "hold 2", "hold 1"]
    still = await api.get(f"/v1/holds?balance={b_bal['id']}&status=held&limit=1")
    assert [h["id"] for h in still.body["data"]] == [held[2].body["id"]] and still.body["has_more"] is True
    rest = await api.get(f"/v1/holds?balance={b_bal['id']}&status=held&starting_after={held[2].body['id']}")
    assert [h["id"] for h in rest.body["data"]] == [held[1].body["id"]]
    assert (await api.get("/v1/holds?starting_after=hold_nope")).status == 422

    made = [(await api.post(f"/v1/accounts/{a['id']}/keys")).body for _ in range(2)]
    keys = await api.get(f"/v1/accounts/{a['id']}/keys")
    assert [k["id"] for k in keys.body["data"]] == [made[1]["id"], made[0]["id"]]
    assert all(
        "token" not in k and made[n]["token"].startswith(k["prefix"]) for n, k in enumerate(keys.body["data"][::-1])
    )
    assert (await api.get("/v1/accounts/acc_nope/keys")).status == 404


async def test_bodies_python_would_take_but_json_does_not_are_422(api: Api) -> None:
    for body in ('{"email": NaN}', '{"email": Infinity}', "[" * 5000, '{"email": "\\ud800@x.io"}'):
        reply = await api.post("/v1/accounts", data=body, headers={"Content-Type": "application/json"})
        assert (reply.status, reply.body["code"]) == (422, "validation_error"), (body[:20], reply)


async def test_a_key_is_shown_only_to_who_sent_it(api: Api) -> None:
    _, a_bal, b_bal = await funded_pair(api)
    bob_account = (await api.get(f"/v1/balances/{b_bal['id']}")).body["account_id"]
    bob_key = (await api.post(f"/v1/accounts/{bob_account}/keys")).body["token"]
    paid = await api.post(
        "/v1/payments",
        {"balance_from": a_bal["id"], "balance_to": b_bal["id"], "amount": "1"},
        headers={"Idempotency-Key": "admins-own-naming-1"},
    )
    assert paid.body["idempotency_key"] == "admins-own-naming-1"
    bob = Api(api.session, api.base_url, bob_key)
    seen = await bob.get(f"/v1/payments/{paid.body['id']}")
    assert seen.status == 200 and "idempotency_key" not in seen.body, "the payee does not see the payer's key"
    assert all("idempotency_key" not in p for p in (await bob.get("/v1/payments")).body["data"])


async def test_a_time_before_1970_bounds_nothing_out(api: Api) -> None:
    _, a_bal, _ = await funded_pair(api)
    everything = await api.get(f"/v1/payments?balance={a_bal['id']}&created_gte=1969-12-31T23:59:59Z")
    assert len(everything.body["data"]) == 1, "the deposit"
    nothing = await api.get(f"/v1/payments?balance={a_bal['id']}&created_lt=1969-12-31T23:59:59Z")
    assert nothing.body["data"] == []


async def test_files_hold_neither_a_replayable_token_nor_its_idempotency_key(api: Api, server: Server) -> None:
    account = await api.account(email())
    key = f"guessable-{uuid.uuid4().hex[:6]}"
    made = await api.post(f"/v1/accounts/{account['id']}/keys", headers={"Idempotency-Key": key})
    again = await api.post(f"/v1/accounts/{account['id']}/keys", headers={"Idempotency-Key": key})
    assert again.body == made.body and again.headers["Idempotent-Replayed"] == "true"
    stored = b"".join(p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file())
    assert made.body["token"].encode() not in stored and key.encode() not in stored


async def test_entries_by_time_range(api: Api) -> None:
    _, a_bal, b_bal = await funded_pair(api)
    await asyncio.sleep(0.01)  # two lines a few ms apart, so a bound can fall between them
    await api.pay(a_bal["id"], b_bal["id"], "2")
    older, newer = (await api.get(f"/v1/balances/{a_bal['id']}/entries")).body["data"][::-1]
    assert older["created_at"] < newer["created_at"]
    path = f"/v1/balances/{a_bal['id']}/entries"
    since = await api.get(f"{path}?created_gte={newer['created_at']}")
    assert [e["id"] for e in since.body["data"]] == [newer["id"]], "gte includes its bound"
    until = await api.get(f"{path}?created_lt={newer['created_at']}")
    assert [e["id"] for e in until.body["data"]] == [older["id"]], "lt excludes it"
    oldest_first = await api.get(f"{path}?created_lt={newer['created_at']}&ending_before={older['id']}")
    assert oldest_first.body["data"] == []


async def test_fx_rates_are_journaled_and_open_liquidity_balances(api: Api) -> None:
    code = "F" + uuid.uuid4().hex[:6].upper()
    assert (await api.post("/v1/currencies", {"code": code, "exponent": 2, "name": "Fx test"})).status == 201
    set_rate = await api.request("PUT", f"/v1/fx/rates/USD/{code}", json={"rate": "0.9231"})
    assert set_rate.status == 200 and set_rate.body["rate"] == "0.9231", set_rate
    again = await api.request("PUT", f"/v1/fx/rates/USD/{code}", json={"rate": "0.93"})
    assert again.body["rate"] == "0.93"
    rates = (await api.get("/v1/fx/rates?limit=100")).body["data"]
    assert {"base": "USD", "quote": code, "rate": "0.93"} in [
        {k: r[k] for k in ("base", "quote", "rate")} for r in rates
    ]
    liquidity = await api.every_page("/v1/fx/liquidity")
    assert {b["currency"] for b in liquidity} >= {"USD", code}
    mine = next(b for b in liquidity if b["currency"] == code)
    assert mine["amount"] == "0.00" and mine["available"] == "0.00", "liquidity is funded, not unlimited"
    funded = await api.post("/v1/deposits", {"balance_id": mine["id"], "amount": "50"})
    assert funded.body["status"] == "success"
    for bad, param in (({"rate": "0"}, "rate"), ({"rate": "1.0000000000001"}, "rate"), ({"rate": 1.5}, "rate")):
        reply = await api.request("PUT", f"/v1/fx/rates/USD/{code}", json=bad)
        assert (reply.status, reply.body["param"]) == (422, param), (bad, reply)
    same = await api.request("PUT", "/v1/fx/rates/USD/USD", json={"rate": "1"})
    assert same.status == 422
    unknown = await api.request("PUT", "/v1/fx/rates/USD/NOPE9", json={"rate": "1"})
    assert (unknown.status, unknown.body["code"]) == (422, "unknown_currency")
    someone = await api.account(email())
    account_api = Api(api.session, api.base_url, (await api.post(f"/v1/accounts/{someone['id']}/keys")).body["token"])
    assert (await account_api.request("PUT", f"/v1/fx/rates/USD/{code}", json={"rate": "2"})).status == 403
    assert (await account_api.get("/v1/fx/rates")).status == 200
    assert (await account_api.get("/v1/fx/liquidity")).status == 403
