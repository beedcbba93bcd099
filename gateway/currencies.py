"""/v1/currencies: the ISO 4217 currencies and the custom ones the admin creates, each with
its issuer balance (which deposits and withdrawals pay from and to), kept by the registry."""

from __future__ import annotations

from aiohttp import web

from actors.registry import Registry
from gateway import creates
from gateway.common import decode, json_response
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY
from gateway.lists import page_by_key, page_of
from gateway.operation import LIST_Q, Op
from ledger.records import Answered
from rayledger import schemas


async def list_currencies(request: web.Request) -> web.Response:
    """By code (a currency has no creation order worth paging by); the cursor is a code."""
    views = await request.app[CLIENT].registry.invoke(Registry.currencies)
    shown, has_more = page_by_key(views, [v.code for v in views], page_of(request))
    data = [schemas.Currency(v.code, v.exponent, v.name, v.custom) for v in shown]
    return json_response(schemas.CurrencyList(data=data, has_more=has_more))


async def get_currency(request: web.Request) -> web.Response:
    view = await request.app[DIRECTORY].currency(request.match_info["code"])
    if view is None:
        raise ApiError("currency_not_found", "no such currency")
    return json_response(schemas.Currency(view.code, view.exponent, view.name, view.custom, view.issuer_balance_id))


async def create_currency(request: web.Request) -> web.Response:
    body = await decode(request, schemas.CurrencyCreate)
    idem, key = creates.idem_of(request, body)
    view = await request.app[CLIENT].registry.invoke(
        Registry.create_currency, body.code, body.exponent, body.name, idem
    )
    if isinstance(view, Answered):
        return await creates.replay(request, idem, key, view)  # type: ignore[arg-type]
    if view is None:
        raise ApiError("currency_exists", f"currency {body.code} exists", "code")
    view = await request.app[DIRECTORY].currency(body.code)  # creates its issuer balance
    assert view is not None
    return json_response(
        schemas.Currency(view.code, view.exponent, view.name, view.custom, view.issuer_balance_id), 201
    )


OPS: list[Op] = [
    Op(
        "GET",
        "/v1/currencies",
        list_currencies,
        "List currencies, by code",
        "account",
        response=schemas.CurrencyList,
        query=LIST_Q,
    ),
    Op(
        "GET",
        "/v1/currencies/{code}",
        get_currency,
        "A currency with its issuer balance",
        "account",
        response=schemas.Currency,
        errors=("currency_not_found",),
    ),
    Op(
        "POST",
        "/v1/currencies",
        create_currency,
        "Create a custom currency",
        "admin",
        body=schemas.CurrencyCreate,
        response=schemas.Currency,
        status=201,
        errors=("currency_exists",),
        idempotent=True,
    ),
]
