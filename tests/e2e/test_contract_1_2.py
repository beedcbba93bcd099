"""Contract 1.2's codes and account changes, against one real server: a not-found code per
kind of resource (`not_found` only for paths the API does not have), `currency_exists`, a
fully refunded payment said so, refusals naming the nested field with examples valid in
the currency, PATCH of an account's metadata, and quotes and events read back by id."""

from __future__ import annotations

import re
import uuid

from ledger.money import parse_amount
from rayledger.client import Client
from tests.support.api import Api

MADE_UP = "0" * 26


def email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"


async def funded(api: Api, currency: str = "USD", amount: str = "100") -> tuple[dict, dict]:
    account = await api.account(email())
    balance = await api.balance(account["id"], currency)
    await api.deposit(balance["id"], amount)
    return account, balance


def key_api(api: Api, token: str) -> Api:
    return Api(api.session, api.base_url, token)


async def test_each_kind_of_resource_has_its_own_not_found_code(api: Api) -> None:
    for method, path, code in [
        ("GET", f"/v1/accounts/acc_{MADE_UP}", "account_not_found"),
        ("GET", f"/v1/balances/bal_{MADE_UP}", "balance_not_found"),
        ("GET", f"/v1/payments/pay_{MADE_UP}", "payment_not_found"),
        ("GET", f"/v1/payments/pay_{MADE_UP}/refunds", "payment_not_found"),
        ("POST", f"/v1/payments/pay_{MADE_UP}/refunds", "payment_not_found"),
        ("GET", f"/v1/transfers/tr_{MADE_UP}", "transfer_not_found"),
        ("GET", f"/v1/holds/hold_{MADE_UP}", "hold_not_found"),
        ("POST", f"/v1/holds/hold_{MADE_UP}/capture", "hold_not_found"),
        ("POST", f"/v1/holds/hold_{MADE_UP}/void", "hold_not_found"),
        ("GET", "/v1/currencies/NOPE42", "currency_not_found"),
        ("GET", f"/v1/fx/quotes/fxq_{MADE_UP}", "quote_not_found"),
        ("GET", "/v1/events/evt_1764581400000c00000000000042", "event_not_found"),
        ("GET", "/v1/events/evt_nope", "event_not_found"),
        ("GET", f"/v1/webhook_endpoints/we_{MADE_UP}", "webhook_endpoint_not_found"),
        ("GET", f"/v1/webhook_endpoints/we_{MADE_UP}/deliveries", "webhook_endpoint_not_found"),
        ("DELETE", f"/v1/webhook_endpoints/we_{MADE_UP}", "webhook_endpoint_not_found"),
        ("DELETE", f"/v1/keys/key_{MADE_UP}", "key_not_found"),
        ("GET", "/v1/no-such-thing", "not_found"),
    ]:
        reply = await api.request(method, path)
        assert (reply.status, reply.body["code"]) == (404, code), (method, path, reply)

    _, source = await funded(api)
    _, target = await funded(api)
    pay = {"balance_from": source["id"], "balance_to": target["id"], "amount": "1", "quote_id": f"fxq_{MADE_UP}"}
    unknown_quote = await api.post("/v1/payments", pay)
    assert (unknown_quote.status, unknown_quote.body["code"], unknown_quote.body["param"]) == (
        404,
        "quote_not_found",
        "quote_id",
    )
    code = "C" + uuid.uuid4().hex[:8].upper()
    assert (await api.post("/v1/currencies", {"code": code, "exponent": 2, "name": "Once"})).status == 201
    again = await api.post("/v1/currencies", {"code": code, "exponent": 2, "name": "Twice"})
    assert (again.status, again.body["code"], again.body["param"]) == (409, "currency_exists", "code")


async def test_openapi_lists_each_operations_own_codes(api: Api) -> None:
    spec = (await api.get("/openapi.json")).body
    for path, method, title in [
        ("/v1/payments/{id}", "get", "Payment not found"),
        ("/v1/holds/{id}/capture", "post", "Hold not found"),
        ("/v1/fx/quotes/{id}", "get", "Quote not found"),
        ("/v1/events/{id}", "get", "Event not found"),
        ("/v1/keys/{id}", "delete", "API key not found"),
        ("/v1/currencies", "post", "Currency exists"),
    ]:
        responses = spec["paths"][path][method]["responses"]
        assert any(title in r["description"] for r in responses.values()), (path, method, responses)
        assert not any("Not found" in r["description"] for r in responses.values()), (path, method)


async def test_a_fully_refunded_payment_says_so(api: Api) -> None:
    _, payer = await funded(api)
    _, receiver = await funded(api)
    paid = (await api.pay(payer["id"], receiver["id"], "10")).body
    assert (await api.post(f"/v1/payments/{paid['id']}/refunds", {"amount": "4"})).status == 201
    too_much = await api.post(f"/v1/payments/{paid['id']}/refunds", {"amount": "7"})
    assert (too_much.status, too_much.body["code"], too_much.body["param"]) == (409, "refund_exceeds_payment", "amount")
    assert "6.00 is left" in too_much.body["detail"], too_much
    assert (await api.post(f"/v1/payments/{paid['id']}/refunds")).status == 201  # the rest
    done = await api.post(f"/v1/payments/{paid['id']}/refunds")
    assert (done.status, done.body["code"]) == (409, "refund_exceeds_payment")
    assert "fully refunded" in done.body["detail"] and "param" not in done.body, done


def quoted(detail: str) -> list[str]:
    return re.findall(r'"([^"]*)"', detail)


async def test_refusals_name_the_nested_field_and_give_examples_valid_in_the_currency(api: Api) -> None:
    value = await api.post("/v1/accounts", {"email": email(), "metadata": {"ok": "1", "n": 1}})
    assert (value.status, value.body["param"]) == (422, "metadata.n"), value
    repeated = await api.post(
        "/v1/accounts",
        data=f'{{"email":"{email()}","metadata":{{"k":"1","k":"2"}}}}',
        headers={"Content-Type": "application/json"},
    )
    assert (repeated.status, repeated.body["param"]) == (422, "metadata.k"), repeated
    _, usd = await funded(api)
    _, other = await funded(api)
    legs = [{"balance_from": usd["id"], "balance_to": other["id"], "amount": a} for a in ("1", "0")]
    leg = await api.post("/v1/transfers", {"legs": legs})
    assert (leg.status, leg.body["code"], leg.body["param"]) == (422, "invalid_amount", "legs[1].amount"), leg
    events = await api.post("/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/x", "events": ["payment.done"]})
    assert (events.status, events.body["param"]) == (422, "events[0]"), events
    assert "payment.succeeded" in events.body["detail"] and "hold.expired" in events.body["detail"], events

    _, jpy = await funded(api, "JPY", "100")
    for source, exponent, amount in ((usd, 2, "0"), (usd, 2, "10.505"), (usd, 2, "-1"), (jpy, 0, "1.5")):
        reply = await api.pay(source["id"], other["id"] if source is usd else usd["id"], amount)
        assert (reply.status, reply.body["code"], reply.body["param"]) == (422, "invalid_amount", "amount"), reply
        examples = quoted(reply.body["detail"])
        assert examples, reply
        for example in examples:  # each example is an amount the currency takes
            assert parse_amount(example, exponent) > 0, (amount, reply.body["detail"])


async def test_patch_replaces_an_accounts_metadata_but_never_its_email(api: Api) -> None:
    account = (await api.post("/v1/accounts", {"email": email(), "metadata": {"a": "1"}})).body
    path = f"/v1/accounts/{account['id']}"
    changed = await api.request("PATCH", path, json={"metadata": {"b": "2"}})
    assert changed.status == 200 and (changed.body["metadata"], changed.body["status"]) == ({"b": "2"}, "active")
    disabled = await api.request("PATCH", path, json={"status": "disabled"})
    assert (disabled.body["metadata"], disabled.body["status"]) == ({"b": "2"}, "disabled")
    both = await api.request("PATCH", path, json={"status": "active", "metadata": {"c": "3"}})
    assert (both.body["metadata"], both.body["status"]) == ({"c": "3"}, "active")
    assert (await api.get(path)).body["metadata"] == {"c": "3"}
    cleared = await api.request("PATCH", path, json={"metadata": None})
    assert cleared.status == 200 and cleared.body.get("metadata") is None
    empty_key = await api.request("PATCH", path, json={"metadata": {"": "x"}})
    assert (empty_key.status, empty_key.body["param"]) == (422, "metadata."), empty_key
    immutable = await api.request("PATCH", path, json={"email": email()})
    assert (immutable.status, immutable.body["param"]) == (422, "email") and "immutable" in immutable.body["detail"]
    assert (await api.get(path)).body["email"] == account["email"]
    missing = await api.request("PATCH", f"/v1/accounts/acc_{MADE_UP}", json={"metadata": {}})
    assert (missing.status, missing.body["code"]) == (404, "account_not_found")

    updates = await api.every_page("/v1/events?type=account.updated")
    mine = [e for e in updates if e["data"]["id"] == account["id"]]
    # Newest first: cleared, then both of one PATCH (metadata journaled first), disabled, {b}.
    assert [e["data"].get("metadata", e["data"].get("status")) for e in mine] == [
        None,
        "active",
        {"c": "3"},
        "disabled",
        {"b": "2"},
    ], mine
    one = await api.get(f"/v1/events/{mine[-1]['id']}")
    assert one.status == 200 and one.body == mine[-1]
    stranger = (await api.post(f"/v1/accounts/{(await api.account(email()))['id']}/keys")).body["token"]
    hidden = await key_api(api, stranger).get(f"/v1/events/{mine[-1]['id']}")
    assert (hidden.status, hidden.body["code"]) == (404, "event_not_found")
    owner = (await api.post(f"/v1/accounts/{account['id']}/keys")).body["token"]
    assert (await key_api(api, owner).get(f"/v1/events/{mine[-1]['id']}")).body == mine[-1]


async def test_a_quote_is_read_back_by_id_by_its_payer_only(api: Api) -> None:
    assert (await api.request("PUT", "/v1/fx/rates/USD/EUR", json={"rate": "0.9"})).status == 200
    alice, usd = await funded(api)
    eur = await api.balance(alice["id"], "EUR")
    quote = await api.post("/v1/fx/quotes", {"balance_from": usd["id"], "balance_to": eur["id"], "amount": "10"})
    assert quote.status == 201, quote
    read = await api.get(f"/v1/fx/quotes/{quote.body['id']}")
    assert (read.status, read.body) == (200, quote.body)
    alice_key = (await api.post(f"/v1/accounts/{alice['id']}/keys")).body["token"]
    assert (await key_api(api, alice_key).get(f"/v1/fx/quotes/{quote.body['id']}")).body == quote.body
    bob, _ = await funded(api)
    bob_api = key_api(api, (await api.post(f"/v1/accounts/{bob['id']}/keys")).body["token"])
    theirs = await bob_api.get(f"/v1/fx/quotes/{quote.body['id']}")
    made_up = await bob_api.get(f"/v1/fx/quotes/fxq_{MADE_UP}")
    assert (theirs.status, theirs.body["code"]) == (made_up.status, made_up.body["code"]) == (404, "quote_not_found")


async def test_openapi_documents_bodies_streams_statuses_headers_and_tags(api: Api) -> None:
    spec = (await api.get("/openapi.json")).body
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    for path in ("/v1/payments/{id}/refunds", "/v1/holds/{id}/capture", "/v1/holds/{id}/void"):
        assert paths[path]["post"]["requestBody"]["required"] is False, path
    assert paths["/v1/payments"]["post"]["requestBody"]["required"] is True
    _, payer = await funded(api)
    _, receiver = await funded(api)
    paid = (await api.pay(payer["id"], receiver["id"], "1")).body
    assert (await api.post(f"/v1/payments/{paid['id']}/refunds")).status == 201, "no body, as documented"

    stream = paths["/v1/events/stream"]["get"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
    assert "Last-Event-ID" in [p["name"] for p in stream["parameters"] if p["in"] == "header"]

    assert set(schemas["Payment"]["properties"]["status"]["enum"]) >= {"pending", "success", "not_enough_money"}
    assert set(schemas["Hold"]["properties"]["status"]["enum"]) >= {"held", "captured", "voided", "expired"}
    assert "pattern" in schemas["WebhookEndpointCreate"]["properties"]["url"]
    ftp = await api.post("/v1/webhook_endpoints", {"url": "ftp://example.com/hook", "events": ["*"]})
    assert (ftp.status, ftp.body["param"]) == (422, "url") and "http:// or https://" in ftp.body["detail"], ftp

    pay = paths["/v1/payments"]["post"]["responses"]
    assert {"X-Request-Id", "Idempotent-Replayed"} <= set(pay["201"]["headers"])
    assert "Retry-After" in pay["503"]["headers"] and "WWW-Authenticate" in pay["401"]["headers"]
    key = {"Idempotency-Key": f"documented-{uuid.uuid4().hex}"}
    body = {"balance_from": payer["id"], "balance_to": receiver["id"], "amount": "1"}
    first, again = [await api.post("/v1/payments", body, headers=key) for _ in range(2)]
    assert first.headers["X-Request-Id"] and again.headers["Idempotent-Replayed"] == "true"

    declared = [t["name"] for t in spec["tags"]]
    tagged = {(path, method): op["tags"] for path, item in paths.items() for method, op in item.items()}
    assert all(len(tags) == 1 and tags[0] in declared for tags in tagged.values()), tagged
    assert tagged[("/v1/payments/{id}/refunds", "post")] == ["Refunds"]
    assert tagged[("/v1/accounts/{id}/keys", "post")] == ["API keys"]
    assert tagged[("/v1/accounts/{id}/balances", "post")] == ["Balances"]
    assert len({t for tags in tagged.values() for t in tags}) >= 10, "grouped by resource in /docs"


async def test_the_client_updates_metadata_and_reads_quotes_and_events_by_id(api: Api) -> None:
    assert (await api.request("PUT", "/v1/fx/rates/USD/EUR", json={"rate": "0.9"})).status == 200
    async with Client(api.base_url, api.token) as ledger:
        ada = await ledger.accounts.create(email=email(), metadata={"a": "1"})
        changed = await ledger.accounts.update(ada.id, metadata={"b": "2"})
        assert (changed.metadata, changed.status) == ({"b": "2"}, "active")
        assert (await ledger.accounts.update(ada.id, status="disabled")).metadata == {"b": "2"}
        assert (await ledger.accounts.update(ada.id, status="active")).status == "active"
        assert (await ledger.accounts.update(ada.id, metadata=None)).metadata is None
        latest = await anext(aiter(ledger.events.list(type="account.updated", limit=1)))
        assert latest.data == {"id": ada.id, "email": ada.email, "metadata": None}
        assert await ledger.events.get(latest.id) == latest
        usd = await ledger.balances.create(ada.id, currency="USD")
        eur = await ledger.balances.create(ada.id, currency="EUR")
        quote = await ledger.fx.quote(balance_from=usd.id, balance_to=eur.id, amount="10")
        assert await ledger.fx.get_quote(quote.id) == quote
