"""POST/GET /v1/transfers: legs that move all or none (the coordinator decides them
together, see actors.coordinator). Each leg passes a payment's checks; an account key
may only pay from its own balances, and sees a transfer if a leg touches one of them."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api import render
from gateway.common import decode, json_response, touches_own_balance
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY, SETTINGS, TRANSFERS
from gateway.lists import id_bounds, listed_balances, merged_page, page_of, require_visible_cursor
from gateway.logs import LOGGED_IDS
from gateway.metrics import METRICS
from gateway.operation import ID_Q, LIST_Q, TIME_RANGE_Q, TWO_SIDES_RULE, Op
from gateway.payments import (
    Prepared,
    fingerprint,
    finished_within,
    idempotency_key,
    key_scope,
    now_ms,
    payment_id_for,
    prepare_payment,
)
from ledger.messages import TransferRequest
from ledger.outcomes import pending_transfer
from ledger.records import TransferRecord
from rayledger import schemas

TRANSFER_PREFIX = "tr"


async def _leg(request: web.Request, n: int, leg: schemas.TransferLegCreate, transfer_id: str) -> Prepared:
    try:
        return await prepare_payment(request, leg, None, None, owner_id=transfer_id)
    except ApiError as exc:  # named by its leg, as a client's form would show it
        param = f"legs[{n}].{exc.param}" if exc.param else f"legs[{n}]"
        raise ApiError(exc.code, f"leg {n}: {exc.detail}", param) from None


async def _exponents(request: web.Request, t: TransferRecord) -> dict[str, int]:
    directory = request.app[DIRECTORY]
    return {c: await directory.exponent(c) for c in dict.fromkeys(leg.currency for leg in t.legs)}


def _response(body: schemas.Transfer, status: int, replayed: bool = False) -> web.Response:
    response = json_response(body, status)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def create_transfer(request: web.Request) -> web.Response:
    body = await decode(request, schemas.TransferCreate)
    key = idempotency_key(request)
    fp = fingerprint(request, body) if key is not None else None
    transfer_id = payment_id_for(request, key, prefix=TRANSFER_PREFIX)
    prepared = await asyncio.gather(
        *(_leg(request, n, leg, transfer_id) for n, leg in enumerate(body.legs)), return_exceptions=True
    )
    for p in prepared:  # the first leg in order that is refused names the error
        if isinstance(p, BaseException):
            raise p
    legs = [p.request for p in prepared]  # type: ignore[union-attr]
    t = TransferRequest(transfer_id, legs, now_ms(), body.description, body.metadata, key, fp)
    request[LOGGED_IDS].append(transfer_id)
    answered = request.app[TRANSFERS].submit([t])
    scope = key_scope(request)
    if not await finished_within(answered, request.app[SETTINGS].payment_wait_ms / 1000):
        answered.add_done_callback(lambda f: f.cancelled() or f.exception())  # it settles in the background
        pending = pending_transfer(t)
        return _response(render.transfer(pending, await _exponents(request, pending), scope), 202)
    [outcome] = answered.result()
    if outcome.conflict:
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
    if outcome.refused == "unavailable":
        raise ApiError("unavailable", "a journal cannot be written now; nothing moved; retry later")
    record = outcome.transfer
    assert record is not None
    if not outcome.replayed:
        for _ in record.legs:  # each leg is a payment, in the metrics too
            request.app[METRICS].paid(record.status)
    status = 202 if record.status == "pending" else 201
    return _response(render.transfer(record, await _exponents(request, record), scope), status, outcome.replayed)


async def _visible(request: web.Request, transfer_id: str) -> TransferRecord | None:
    unanswered = request.app[TRANSFERS].unanswered(transfer_id)  # taken first, as for payments
    record = await request.app[CLIENT].get_transfer(transfer_id)
    if record is None and isinstance(unanswered, TransferRequest):
        record = pending_transfer(unanswered)
    if record is None or not await touches_own_balance(request, record):
        return None
    return record


async def get_transfer(request: web.Request) -> web.Response:
    record = await _visible(request, request.match_info["id"])
    if record is None:
        raise ApiError("transfer_not_found", "no such transfer")
    return json_response(render.transfer(record, await _exponents(request, record), key_scope(request)))


async def list_transfers(request: web.Request) -> web.Response:
    page = page_of(request)
    client = request.app[CLIENT]
    balances = await listed_balances(request)
    await require_visible_cursor(request, page, client.get_transfer)
    before, after = id_bounds(request, page, TRANSFER_PREFIX)
    pages = await asyncio.gather(
        *(client.list_transfers(b, page.limit, before, after, page.ascending) for b in balances)
    )
    shown, has_more = merged_page(pages, page)
    scope = key_scope(request)
    data = [render.transfer(t, await _exponents(request, t), scope) for t in shown]
    return json_response(schemas.TransferList(data=data, has_more=has_more))


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/transfers",
        create_transfer,
        "Move money along 1 to 16 legs, all or none",
        "account",
        body=schemas.TransferCreate,
        response=schemas.Transfer,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "quote_not_found", "same_balance", "invalid_amount", "validation_error"),
        rules="Each leg: " + TWO_SIDES_RULE + " A balance may appear in several legs: its debits add up against"
        " what it has. Every leg moves or none does; the status is the first failing leg's (failed_leg).",
    ),
    Op(
        "GET",
        "/v1/transfers/{id}",
        get_transfer,
        "A transfer with its legs",
        "account",
        response=schemas.Transfer,
        errors=("transfer_not_found",),
    ),
    Op(
        "GET",
        "/v1/transfers",
        list_transfers,
        "List transfers, newest first",
        "account",
        response=schemas.TransferList,
        errors=("balance_not_found", "account_not_found"),
        query={**LIST_Q, "balance": ID_Q, "account": ID_Q, **TIME_RANGE_Q},
    ),
]
