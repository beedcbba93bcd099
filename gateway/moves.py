"""POST /v1/payments, /v1/deposits and /v1/withdrawals, and GET /v1/payments[/{id}]: money
moved between two balances, or in and out through a currency's issuer, one payment a
request. Checking a request and answering its outcome is gateway.payments' work, shared
with the batch endpoint (gateway.batches), holds, quotes and transfers."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec
from aiohttp import web

from api import render
from gateway import payments
from gateway.common import decode, json_response, touches_own_balance
from gateway.errors import ApiError
from gateway.keys import BATCHER, CLIENT, DIRECTORY
from gateway.lists import id_bounds, listed_balances, merged_page, page_of, query, require_visible_cursor
from gateway.operation import ID_Q, LIST_Q, PAYMENT_STATUS_Q, TIME_RANGE_Q, TWO_SIDES_RULE, Op
from ledger.messages import PaymentQuery
from ledger.money import format_amount
from ledger.outcomes import pending_record
from rayledger import schemas

T = TypeVar("T")


async def _single(request: web.Request, body_type: type[T], deposit: bool | None) -> web.Response:
    body = await decode(request, body_type)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None  # type: ignore[arg-type]
    if deposit is None:
        prepared = await payments.prepare_payment(request, body, key, fp)  # type: ignore[arg-type]
    else:
        prepared = await payments.prepare_issuer_move(request, body, deposit=deposit, key=key, fp=fp)  # type: ignore[arg-type]
    [result] = await payments.answer(request, [prepared])
    return payments.respond(result)


async def create_deposit(request: web.Request) -> web.Response:
    return await _single(request, schemas.DepositCreate, deposit=True)


async def create_withdrawal(request: web.Request) -> web.Response:
    return await _single(request, schemas.WithdrawalCreate, deposit=False)


async def create_payment(request: web.Request) -> web.Response:
    return await _single(request, schemas.PaymentCreate, deposit=None)


async def get_payment(request: web.Request) -> web.Response:
    # Taken before asking the coordinator: the payment's answer may come back (and leave
    # the batcher) while the coordinator is still looking for it, which would be a 404.
    unanswered = request.app[BATCHER].unanswered(request.match_info["id"])
    record = await request.app[CLIENT].get_payment(request.match_info["id"])
    if record is None and unanswered is not None:
        record = pending_record(unanswered)  # answered 202 here; the coordinator has not seen it yet
    if record is None or not await touches_own_balance(request, record):
        raise ApiError("payment_not_found", "no such payment")
    exponent = await request.app[DIRECTORY].exponent(record.currency)
    body = render.payment(record, exponent, payments.key_scope(request))
    if record.status == "success" and record.refund_of is None:
        refunds = await request.app[CLIENT].refunds_of(record.id)
        refunded = sum(r.amount_minor for r in refunds if r.status == "success")
        if refunded:  # a payment never refunded reads as it was answered
            body = msgspec.structs.replace(body, refunded_amount=format_amount(refunded, exponent))
    return json_response(body)


async def list_payments(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    client = request.app[CLIENT]
    balances = await listed_balances(request)
    await require_visible_cursor(request, page, client.get_payment)
    key = payments.idempotency_key(request, q["idempotency_key"]) if "idempotency_key" in q else None
    before, after = id_bounds(request, page, "pay")
    base = PaymentQuery(page.limit, None, q.get("status"), key, before, after, page.ascending)
    pages = await asyncio.gather(*(client.list_payments(msgspec.structs.replace(base, balance_id=b)) for b in balances))
    shown, has_more = merged_page(pages, page)
    scope = payments.key_scope(request)
    data = [render.payment(p, await request.app[DIRECTORY].exponent(p.currency), scope) for p in shown]
    return json_response(schemas.PaymentList(data=data, has_more=has_more))


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/deposits",
        create_deposit,
        "Deposit: a payment from the currency's issuer",
        "admin",
        body=schemas.DepositCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "invalid_amount", "validation_error"),
        rules="The amount has at most the currency's decimals (422 invalid_amount).",
    ),
    Op(
        "POST",
        "/v1/withdrawals",
        create_withdrawal,
        "Withdrawal: a payment to the issuer",
        "admin",
        body=schemas.WithdrawalCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "invalid_amount", "validation_error"),
        rules="The amount has at most the currency's decimals (422 invalid_amount).",
    ),
    Op(
        "POST",
        "/v1/payments",
        create_payment,
        "Move money between two balances",
        "account",
        body=schemas.PaymentCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "quote_not_found", "same_balance", "invalid_amount", "validation_error"),
        rules=TWO_SIDES_RULE + " With quote_id: the quote's balances and amount (422), a known quote (404).",
    ),
    Op(
        "GET",
        "/v1/payments/{id}",
        get_payment,
        "A payment",
        "account",
        response=schemas.Payment,
        errors=("payment_not_found",),
    ),
    Op(
        "GET",
        "/v1/payments",
        list_payments,
        "List payments, newest first",
        "account",
        response=schemas.PaymentList,
        errors=("balance_not_found", "account_not_found"),
        query={
            **LIST_Q,
            "balance": ID_Q,
            "account": ID_Q,
            "status": PAYMENT_STATUS_Q,
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255},
            **TIME_RANGE_Q,
        },
    ),
]
