"""Refunds (contract 1.1, "Money semantics"): full or partial, never more in total than the
payment, linked both ways, safe to retry and to race."""

from __future__ import annotations

import asyncio
import uuid

from tests.support.api import Api


async def paid(api: Api, amount: str = "10") -> tuple[dict, dict, dict, dict]:
    """A payer, a receiver with an account key, and a successful payment between them."""
    payer = await api.account(f"payer-{uuid.uuid4().hex[:10]}@example.com")
    receiver = await api.account(f"shop-{uuid.uuid4().hex[:10]}@example.com")
    p_bal, r_bal = await api.balance(payer["id"], "USD"), await api.balance(receiver["id"], "USD")
    await api.deposit(p_bal["id"], "100")
    payment = await api.pay(p_bal["id"], r_bal["id"], amount)
    assert payment.body["status"] == "success"
    return p_bal, r_bal, payment.body, receiver


async def test_partial_refunds_add_up_to_the_payment_and_no_more(api: Api) -> None:
    p_bal, r_bal, payment, _ = await paid(api)
    first = await api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": "4"})
    assert first.status == 201 and first.body["status"] == "success" and first.body["refund_of"] == payment["id"]
    assert (first.body["balance_from"], first.body["balance_to"]) == (r_bal["id"], p_bal["id"])
    too_much = await api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": "6.01"})
    assert (too_much.status, too_much.body["code"]) == (409, "refund_exceeds_payment")
    rest = await api.post(f"/v1/payments/{payment['id']}/refunds")  # default: what is left
    assert rest.status == 201 and rest.body["amount"] == "6.00"
    assert (await api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": "0.01"})).status == 409
    original = await api.get(f"/v1/payments/{payment['id']}")
    assert original.body["refunded_amount"] == "10.00"
    listed = await api.get(f"/v1/payments/{payment['id']}/refunds")
    assert [r["id"] for r in listed.body["data"]] == [rest.body["id"], first.body["id"]]
    assert (await api.get(f"/v1/balances/{p_bal['id']}")).body["amount"] == "100.00"
    assert (await api.get(f"/v1/balances/{r_bal['id']}")).body["amount"] == "0.00"
    again = await api.post(f"/v1/payments/{first.body['id']}/refunds")
    assert (again.status, again.body["code"]) == (409, "conflict"), "a refund is not refunded"
    deposit = (await api.get(f"/v1/payments?balance={p_bal['id']}&limit=100")).body["data"][-1]
    assert deposit["description"] == "deposit"
    undone = await api.post(f"/v1/payments/{deposit['id']}/refunds")
    assert (undone.status, undone.body["code"]) == (409, "conflict"), "a deposit is undone by a withdrawal"


async def test_a_receiver_who_spent_the_money_cannot_refund_it(api: Api) -> None:
    _p_bal, r_bal, payment, _ = await paid(api)
    await api.post("/v1/withdrawals", {"balance_id": r_bal["id"], "amount": "8"})
    short = await api.post(f"/v1/payments/{payment['id']}/refunds")
    assert short.status == 201 and short.body["status"] == "not_enough_money"
    partial = await api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": "2"})
    assert partial.body["status"] == "success", "the refused refund counted for nothing"


async def test_concurrent_refunds_never_exceed_the_payment(api: Api) -> None:
    _p_bal, r_bal, payment, _ = await paid(api, "10")
    replies = await asyncio.gather(
        *(api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": "3"}) for _ in range(12))
    )
    succeeded = [r for r in replies if r.status == 201 and r.body["status"] == "success"]
    assert len(succeeded) == 3 and all(r.status in (201, 409) for r in replies)
    assert (await api.get(f"/v1/balances/{r_bal['id']}")).body["amount"] == "1.00"


async def test_a_retried_refund_replays_and_keys_scope_who_refunds(api: Api) -> None:
    _p_bal, _r_bal, payment, _receiver = await paid(api)
    key = {"Idempotency-Key": f"refund-{uuid.uuid4().hex}"}
    first = await api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": "10"}, headers=key)
    again = await api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": "10"}, headers=key)
    assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    p2, _r2, other, receiver2 = await paid(api)
    shop = Api(api.session, api.base_url, (await api.post(f"/v1/accounts/{receiver2['id']}/keys")).body["token"])
    assert (await shop.post(f"/v1/payments/{other['id']}/refunds", {"amount": "1"})).status == 201
    assert (await shop.post(f"/v1/payments/{payment['id']}/refunds")).status == 404, "not its payment"
    payer_account = (await api.get(f"/v1/balances/{p2['id']}")).body["account_id"]
    payer = Api(api.session, api.base_url, (await api.post(f"/v1/accounts/{payer_account}/keys")).body["token"])
    assert (await payer.post(f"/v1/payments/{other['id']}/refunds")).status == 403, "the payer does not refund"
