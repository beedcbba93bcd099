"""API state that must survive a crash of the whole server: revoked keys stay revoked,
idempotency keys keep replaying, holds stay held. And the 202 pending fallback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support.api import Api
from tests.support.server import Server


async def test_keys_idempotency_and_holds_survive_kill9(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            alice, bob = await api.account("alice@example.com"), await api.account("bob@example.com")
            a, b = await api.balance(alice["id"], "USD"), await api.balance(bob["id"], "USD")
            await api.deposit(a["id"], "20")
            live = (await api.post(f"/v1/accounts/{alice['id']}/keys")).body
            dead = (await api.post(f"/v1/accounts/{alice['id']}/keys")).body
            assert (await api.request("DELETE", f"/v1/keys/{dead['id']}")).status == 204
            body = {"balance_from": a["id"], "balance_to": b["id"], "amount": "2"}
            first = await api.post("/v1/payments", body, headers={"Idempotency-Key": "k-1"})
            hold = await api.post(
                "/v1/holds", {"balance_from": a["id"], "balance_to": b["id"], "amount": "5", "expires_in_s": 3600}
            )
            assert hold.body["status"] == "held"
            # Every create takes an Idempotency-Key (contract 1.1): the retry of a lost answer.
            creates = [  # (path, body, a different valid body)
                ("/v1/accounts", {"email": "carol@example.com"}, {"email": "dave@example.com"}),
                (
                    f"/v1/accounts/{alice['id']}/balances",
                    {"currency": "EUR", "overdraft_limit": "4"},
                    {"currency": "EUR", "overdraft_limit": "5"},
                ),
                (f"/v1/accounts/{alice['id']}/keys", None, None),
                (
                    "/v1/currencies",
                    {"code": "SHELL", "exponent": 0, "name": "Shell"},
                    {"code": "SHELL", "exponent": 1, "name": "Shell"},
                ),
            ]
            made = []
            for n, (path, create, _) in enumerate(creates):
                reply = await api.post(path, create, headers={"Idempotency-Key": f"create-{n}"})
                assert reply.status == 201 and "Idempotent-Replayed" not in reply.headers, reply
                made.append(reply.body)
            # Money moved on the balance meanwhile: a replay still answers what the create did.
            await api.deposit(made[1]["id"], "1")
            rate = await api.request("PUT", "/v1/fx/rates/USD/EUR", json={"rate": "0.9231"})
            assert rate.status == 200
            refund = await api.post(f"/v1/payments/{first.body['id']}/refunds", {"amount": "0.50"})
            assert refund.body["status"] == "success"
            # Journaled: a metadata change and a quote are there after the crash (a replayed
            # create still answers what it made, the metadata it was made with).
            carol = f"/v1/accounts/{made[0]['id']}"
            assert (await api.request("PATCH", carol, json={"metadata": {"tier": "gold"}})).status == 200
            quote = await api.post(
                "/v1/fx/quotes", {"balance_from": a["id"], "balance_to": made[1]["id"], "amount": "1"}
            )
            assert quote.status == 201, quote

        server.kill9()
        server.start()

        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            assert (await Api(session, server.url, dead["token"]).get(f"/v1/accounts/{alice['id']}")).status == 401
            assert (await Api(session, server.url, live["token"]).get(f"/v1/accounts/{alice['id']}")).status == 200
            again = await api.post("/v1/payments", body, headers={"Idempotency-Key": "k-1"})
            assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
            reused = await api.post("/v1/payments", {**body, "amount": "3"}, headers={"Idempotency-Key": "k-1"})
            assert reused.status == 409
            # The hold was not presumed aborted by recovery: still held, still reserved.
            assert (await api.get(f"/v1/holds/{hold.body['id']}")).body["status"] == "held"
            balance = (await api.get(f"/v1/balances/{a['id']}")).body
            assert (balance["amount"], balance["reserved"], balance["available"]) == ("18.50", "5.00", "13.50")
            captured = await api.post(f"/v1/holds/{hold.body['id']}/capture")
            assert captured.status == 201 and captured.body["amount"] == "5.00"
            assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "6.50"  # 2 - 0.50 refunded + 5
            for n, (path, create, different) in enumerate(creates):
                replayed = await api.post(path, create, headers={"Idempotency-Key": f"create-{n}"})
                assert (replayed.status, replayed.body) == (201, made[n]), (path, replayed)
                assert replayed.headers["Idempotent-Replayed"] == "true"
                if different is not None:
                    other = await api.post(path, different, headers={"Idempotency-Key": f"create-{n}"})
                    assert (other.status, other.body["code"]) == (409, "idempotency_key_reused"), (path, other)
            assert (await api.get(carol)).body["metadata"] == {"tier": "gold"}
            assert (await api.get(f"/v1/fx/quotes/{quote.body['id']}")).body == quote.body
            rates = (await api.get("/v1/fx/rates")).body["data"]
            assert [(r["base"], r["quote"], r["rate"]) for r in rates] == [("USD", "EUR", "0.9231")]
            assert {b["currency"] for b in (await api.get("/v1/fx/liquidity")).body["data"]} == {"USD", "EUR"}
            # Refunds after a crash still add up against what was refunded before it.
            assert (await api.get(f"/v1/payments/{first.body['id']}")).body["refunded_amount"] == "0.50"
            over = await api.post(f"/v1/payments/{first.body['id']}/refunds", {"amount": "1.51"})
            assert (over.status, over.body["code"]) == (409, "refund_exceeds_payment")
            rest = await api.post(f"/v1/payments/{first.body['id']}/refunds")
            assert rest.body["amount"] == "1.50" and rest.body["status"] == "success"
            token_works = Api(session, server.url, made[2]["token"])
            assert (await token_works.get(f"/v1/accounts/{alice['id']}")).status == 200
    finally:
        server.stop()


async def settled(api: Api, payment_id: str) -> dict:
    """Poll as a client would after a 202, until the payment is final (bounded)."""
    for _ in range(200):
        state = (await api.get(f"/v1/payments/{payment_id}")).body
        if state["status"] != "pending":
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{payment_id} still pending")


async def test_payment_not_final_within_the_wait_limit_answers_202(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"RAYLEDGER_PAYMENT_WAIT_MS": "0"}).start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            account = await api.account("carol@example.com")
            other = await api.account("dave@example.com")
            a, b = await api.balance(account["id"], "EUR"), await api.balance(other["id"], "EUR")
            deposit = await api.post("/v1/deposits", {"balance_id": a["id"], "amount": "10"})
            assert deposit.status == 202 and deposit.body["status"] == "pending"
            assert (await settled(api, deposit.body["id"]))["status"] == "success"
            paid = await api.pay(a["id"], b["id"], "4")
            assert paid.status == 202 and paid.body["status"] == "pending" and "settled_at" not in paid.body
            state = await settled(api, paid.body["id"])
            assert state["status"] == "success" and state["settled_at"]
            assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == "4.00"

            # Asked for at once after its 202, a payment is found (pending or final), never
            # 404: the coordinator may not have it yet, but the gateway that answered does.
            async def pay_then_get() -> int:
                paid = await api.pay(a["id"], b["id"], "0.01")
                assert paid.status == 202
                return (await api.get(f"/v1/payments/{paid.body['id']}")).status

            assert await asyncio.gather(*(pay_then_get() for _ in range(40))) == [200] * 40
    finally:
        server.stop()
