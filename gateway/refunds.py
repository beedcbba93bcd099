"""/v1/payments/{id}/refunds: all or part of a payment given back, as a payment from its
receiver to its payer, decided by the coordinator that decided the original (so the
refunds of a payment never add up to more than it)."""

from __future__ import annotations

from aiohttp import web

from actors.coordinator import REFUNDS_PER_PAYMENT_MAX
from api import render
from gateway import payments
from gateway.common import can_read_account, decode_optional, json_response, touches_own_balance
from gateway.errors import ApiError
from gateway.holds import outcome_response
from gateway.keys import CLIENT, DIRECTORY
from gateway.operation import Op
from ledger.messages import PaymentRequest
from ledger.money import format_amount
from ledger.records import PaymentRecord
from ledger.views import SYSTEM_ACCOUNTS
from rayledger import schemas


async def _visible_payment(request: web.Request) -> PaymentRecord:
    record = await request.app[CLIENT].get_payment(request.match_info["id"])
    if record is None or not await touches_own_balance(request, record):
        raise ApiError("payment_not_found", "no such payment")
    return record


async def create_refund(request: web.Request) -> web.Response:
    body = await decode_optional(request, schemas.RefundCreate)
    original = await _visible_payment(request)
    payer, receiver = await request.app[DIRECTORY].balances([original.balance_from, original.balance_to])
    if payer is None or receiver is None or {payer.account_id, receiver.account_id} & SYSTEM_ACCOUNTS:
        # A refunded deposit would be a withdrawal by another name (and one an account key may not make).
        raise ApiError("conflict", "deposits and withdrawals are undone by their opposite, not refunded")
    if not can_read_account(request, receiver.account_id):
        raise ApiError("forbidden", "an account key refunds only payments its own balances received")
    exponent = await request.app[DIRECTORY].exponent(original.currency)
    amount = payments.parse_money(body.amount, exponent) if body.amount is not None else 0
    key = payments.idempotency_key(request)
    refund = PaymentRequest(
        payment_id=payments.payment_id_for(request, original.id),  # owned where the original was decided
        balance_from=original.balance_to,
        balance_to=original.balance_from,
        amount_minor=amount,
        currency=original.currency,
        created_at_ms=payments.now_ms(),
        description=body.description if body.description is not None else "refund",
        metadata=body.metadata,
        idempotency_key=key,
        fingerprint=payments.fingerprint(request, body) if key is not None else None,
        refund_of=original.id,
    )
    outcome = await request.app[CLIENT].refund(refund)
    if outcome.refused == "not_refundable":
        raise ApiError("conflict", "only a successful payment, not itself a refund nor an exchange, can be refunded")
    if outcome.refused == "refund_exceeds_payment":
        raise await _refund_refusal(request, original, exponent, body.amount is not None)
    return outcome_response(request, outcome, exponent, 201)


async def _refund_refusal(request: web.Request, original: PaymentRecord, exponent: int, amount_given: bool) -> ApiError:
    """refund_exceeds_payment, saying how much is left: a client told "fully refunded"
    stops retrying, one told what is left can ask for that."""
    refunds = await request.app[CLIENT].refunds_of(original.id)
    left = original.amount_minor - sum(r.amount_minor for r in refunds if r.status == "success")
    param = "amount" if amount_given else None
    if left <= 0:
        return ApiError("refund_exceeds_payment", "the payment is fully refunded: nothing is left to refund", param)
    if len(refunds) >= REFUNDS_PER_PAYMENT_MAX:
        return ApiError("refund_exceeds_payment", f"a payment has at most {REFUNDS_PER_PAYMENT_MAX} refunds", param)
    detail = f"the refunds would add up to more than the payment: {format_amount(left, exponent)} is left to refund"
    return ApiError("refund_exceeds_payment", detail, param)


async def list_refunds(request: web.Request) -> web.Response:
    original = await _visible_payment(request)
    exponent = await request.app[DIRECTORY].exponent(original.currency)
    refunds = await request.app[CLIENT].refunds_of(original.id)
    data = [render.payment(r, exponent, payments.key_scope(request)) for r in refunds]
    return json_response(schemas.PaymentList(data=data, has_more=False))


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/payments/{id}/refunds",
        create_refund,
        "Refund all or part of a payment: a payment from its receiver back to its payer",
        "account",
        body=schemas.RefundCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        body_optional=True,
        errors=("payment_not_found", "conflict", "refund_exceeds_payment", "invalid_amount"),
        rules="The refunds of a payment never add up to more than it (409 refund_exceeds_payment, whose detail"
        " says what is left, or that the payment is fully refunded); an account key refunds payments it received.",
    ),
    Op(
        "GET",
        "/v1/payments/{id}/refunds",
        list_refunds,
        "A payment's refunds, newest first",
        "account",
        response=schemas.PaymentList,
        errors=("payment_not_found",),
    ),
]
