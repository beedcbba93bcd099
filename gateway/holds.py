"""/v1/holds: reserve an amount now (checked as a payment is), capture all or part of it
later as payments, or void it; kept and decided by the coordinators. `outcome_response`
answers their hold and refund outcomes alike (gateway.refunds uses it too)."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from api import render
from gateway import payments
from gateway.common import can_read_account, decode, decode_optional, json_response
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY
from gateway.lists import id_bounds, listed_balances, merged_page, page_of, query, require_visible_cursor
from gateway.metrics import METRICS
from gateway.operation import HOLD_STATUS_Q, ID_Q, LIST_Q, TIME_RANGE_Q, TWO_SIDES_RULE, Op
from ledger.ids import HOLD_PREFIX
from ledger.messages import HoldRequest
from ledger.outcomes import Outcome
from ledger.records import HoldRecord
from rayledger import schemas


def outcome_response(request: web.Request, outcome: Outcome, exponent: int, status: int) -> web.Response:
    if outcome.conflict:
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
    if outcome.refused == "unavailable":
        raise ApiError("unavailable", "a journal cannot be written now; nothing moved; retry later")
    if outcome.refused == "not_found" or (outcome.hold is None and outcome.payment is None):
        raise ApiError("hold_not_found", "no such hold")
    if outcome.refused == "not_held":
        assert outcome.hold is not None
        raise ApiError("conflict", f"the hold is {outcome.hold.status}, no longer held")
    if outcome.refused == "amount_exceeds_hold":
        raise ApiError("invalid_amount", "a capture cannot exceed the held amount", "amount")
    assert outcome.refused is None, outcome.refused
    if outcome.payment is not None:
        if not outcome.replayed:  # a capture is a payment like any other, in the metrics too
            request.app[METRICS].paid(outcome.payment.status)
        body: msgspec.Struct = render.payment(outcome.payment, exponent, payments.key_scope(request))
    else:
        assert outcome.hold is not None
        body = render.hold(outcome.hold, exponent)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json", headers=headers)


async def create_hold(request: web.Request) -> web.Response:
    body = await decode(request, schemas.HoldCreate)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    single = schemas.PaymentCreate(body.balance_from, body.balance_to, body.amount)
    prepared = await payments.prepare_payment(request, single, key, fp)  # the same checks as a payment
    p = prepared.request
    hold_request = HoldRequest(
        hold_id=payments.payment_id_for(request, key, prefix=HOLD_PREFIX),
        balance_from=p.balance_from,
        balance_to=p.balance_to,
        amount_minor=p.amount_minor,
        currency=p.currency,
        created_at_ms=p.created_at_ms,
        expires_at_ms=p.created_at_ms + body.expires_in_s * 1000,
        idempotency_key=key,
        fingerprint=fp,
        description=body.description,
        metadata=body.metadata,
    )
    outcome = await request.app[CLIENT].place_hold(hold_request)
    return outcome_response(request, outcome, prepared.exponent, 201)


async def _own_hold(request: web.Request, *, paying_side: bool) -> HoldRecord:
    hold = await request.app[CLIENT].get_hold(request.match_info["id"])
    if hold is None:
        raise ApiError("hold_not_found", "no such hold")
    sides = [hold.balance_from] if paying_side else [hold.balance_from, hold.balance_to]
    infos = await request.app[DIRECTORY].balances(sides)
    if not any(i is not None and can_read_account(request, i.account_id) for i in infos):
        raise ApiError("hold_not_found", "no such hold")
    return hold


async def list_holds(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    client = request.app[CLIENT]
    balances = await listed_balances(request)
    await require_visible_cursor(request, page, client.get_hold)
    before, after = id_bounds(request, page, HOLD_PREFIX)
    pages = await asyncio.gather(
        *(client.list_holds(b, q.get("status"), page.limit, before, after, page.ascending) for b in balances)
    )
    shown, has_more = merged_page(pages, page)
    data = [render.hold(h, await request.app[DIRECTORY].exponent(h.currency)) for h in shown]
    return json_response(schemas.HoldList(data=data, has_more=has_more))


async def get_hold(request: web.Request) -> web.Response:
    hold = await _own_hold(request, paying_side=False)
    return json_response(render.hold(hold, await request.app[DIRECTORY].exponent(hold.currency)))


async def capture_hold(request: web.Request) -> web.Response:
    body = await decode_optional(request, schemas.HoldCapture)
    hold = await _own_hold(request, paying_side=True)
    exponent = await request.app[DIRECTORY].exponent(hold.currency)
    amount = payments.parse_money(body.amount, exponent) if body.amount is not None else None
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    payment_id = payments.payment_id_for(request, hold.id)
    outcome = await request.app[CLIENT].capture_hold(
        hold.id, amount, payment_id, payments.now_ms(), key, fp, body.final
    )
    return outcome_response(request, outcome, exponent, 201)


async def void_hold(request: web.Request) -> web.Response:
    body = await decode_optional(request, schemas.HoldVoid)
    hold = await _own_hold(request, paying_side=True)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    outcome = await request.app[CLIENT].void_hold(hold.id, key, fp)
    return outcome_response(request, outcome, await request.app[DIRECTORY].exponent(hold.currency), 200)


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/holds",
        create_hold,
        "Authorize: reserve an amount now, capture later",
        "account",
        body=schemas.HoldCreate,
        response=schemas.Hold,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "same_balance", "invalid_amount", "validation_error"),
        rules=TWO_SIDES_RULE,
    ),
    Op(
        "GET",
        "/v1/holds/{id}",
        get_hold,
        "A hold",
        "account",
        response=schemas.Hold,
        errors=("hold_not_found",),
    ),
    Op(
        "GET",
        "/v1/holds",
        list_holds,
        "List holds, newest first (an account token: those touching its balances)",
        "account",
        response=schemas.HoldList,
        errors=("balance_not_found", "account_not_found"),
        query={**LIST_Q, "balance": ID_Q, "status": HOLD_STATUS_Q, **TIME_RANGE_Q},
    ),
    Op(
        "POST",
        "/v1/holds/{id}/capture",
        capture_hold,
        "Capture all or part of what a hold still holds; repeatable until final",
        "account",
        body=schemas.HoldCapture,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        body_optional=True,
        errors=("hold_not_found", "conflict", "invalid_amount"),
        rules="The amount has at most the currency's decimals and at most what the hold still holds (422"
        " invalid_amount); a hold no longer held is 409. Without final, the rest stays held for the next capture.",
    ),
    Op(
        "POST",
        "/v1/holds/{id}/void",
        void_hold,
        "Release a hold",
        "account",
        body=schemas.HoldVoid,
        response=schemas.Hold,
        idempotent=True,
        body_optional=True,
        errors=("hold_not_found", "conflict"),
    ),
]
