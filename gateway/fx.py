"""/v1/fx: currency exchange. The admin sets rates (journaled by the registry, which opens
each pair's FX liquidity balances); a quote fixes an exchange between two balances for a
while, and a payment naming it (quote_id, checked in gateway.payments) exchanges at its rate."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from actors.registry import Registry
from api import render
from gateway import payments
from gateway.balances import render_balances
from gateway.common import can_read_account, decode, json_response, principal
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY
from gateway.lists import page_by_key, page_of
from gateway.operation import LIST_Q, TWO_SIDES_RULE, Op
from rayledger import schemas

RATE_SIGNIFICANT_DIGITS_MAX = 12


async def set_fx_rate(request: web.Request) -> web.Response:
    body = await decode(request, schemas.FxRatePut)
    base, quote = request.match_info["base"], request.match_info["quote"]
    if base == quote:
        raise ApiError("validation_error", "a rate is between two different currencies", "quote")
    if len(Decimal(body.rate).normalize().as_tuple().digits) > RATE_SIGNIFICANT_DIGITS_MAX:
        raise ApiError(
            "validation_error", f"rate has more than {RATE_SIGNIFICANT_DIGITS_MAX} significant digits", "rate"
        )
    result = await request.app[CLIENT].registry.invoke(Registry.set_rate, base, quote, body.rate)
    if result == "unknown_currency":
        raise ApiError("unknown_currency", f"no such currency: {base} or {quote}", "base")
    return json_response(render.fx_rate(result))


async def list_fx_rates(request: web.Request) -> web.Response:
    """By pair; the cursor is "BASE/QUOTE"."""
    rates = await request.app[CLIENT].registry.invoke(Registry.fx_rates)
    shown, has_more = page_by_key(rates, [f"{r.base}/{r.quote}" for r in rates], page_of(request))
    return json_response(schemas.FxRateList(data=[render.fx_rate(r) for r in shown], has_more=has_more))


async def create_quote(request: web.Request) -> web.Response:
    body = await decode(request, schemas.FxQuoteCreate)
    move = schemas.PaymentCreate(body.balance_from, body.balance_to, body.amount)
    prepared = await payments.prepare_payment(request, move, None, None)  # a payment's checks
    source, target = await request.app[DIRECTORY].balances([body.balance_from, body.balance_to])
    assert source is not None and target is not None
    if source.currency == target.currency:
        raise ApiError("validation_error", f"both balances hold {source.currency}: no exchange to quote", "balance_to")
    expires_at_ms = payments.now_ms() + body.expires_in_s * 1000
    quote = await request.app[CLIENT].registry.invoke(
        Registry.create_quote, payments.new_id("fxq"), source, target, prepared.request.amount_minor, expires_at_ms
    )
    if quote == "no_rate":
        raise ApiError("conflict", f"no exchange rate between {source.currency} and {target.currency}")
    if quote == "too_small":
        raise ApiError(
            "invalid_amount", f"the amount converts to less than one minor unit of {target.currency}", "amount"
        )
    if quote == "too_large":
        raise ApiError("invalid_amount", "the amount converts to more than a balance can hold", "amount")
    return json_response(render.quote(quote), 201)


async def get_quote(request: web.Request) -> web.Response:
    """A quote, for a day after it expires; an account key sees the quotes from its balances."""
    quote = await request.app[CLIENT].registry.invoke(Registry.get_quote, request.match_info["id"])
    if quote is not None and not principal(request).admin:
        [source] = await request.app[DIRECTORY].balances([quote.balance_from])
        quote = quote if source is not None and can_read_account(request, source.account_id) else None
    if quote is None:  # another account's quote reads as a made-up id does
        raise ApiError("quote_not_found", "no such quote (a quote is forgotten a day after it expires)")
    return json_response(render.quote(quote))


async def list_liquidity(request: web.Request) -> web.Response:
    """The FX account's balances, by currency; the cursor is a balance id."""
    infos = await request.app[CLIENT].registry.invoke(Registry.liquidity_balances)
    shown, has_more = page_by_key(infos, [i.id for i in infos], page_of(request))
    data = await render_balances(request, list(shown))
    return json_response(schemas.BalanceList(data=data, has_more=has_more))


OPS: list[Op] = [
    Op(
        "PUT",
        "/v1/fx/rates/{base}/{quote}",
        set_fx_rate,
        "Set a currency pair's exchange rate (journaled; opens the pair's FX liquidity balances)",
        "admin",
        body=schemas.FxRatePut,
        response=schemas.FxRate,
        errors=("unknown_currency", "validation_error"),
        rules="base and quote are two different, existing currencies (422); the rate has at most 12 significant"
        " digits (422 validation_error).",
    ),
    Op(
        "GET",
        "/v1/fx/rates",
        list_fx_rates,
        "Exchange rates, by pair (the cursor is BASE/QUOTE)",
        "account",
        response=schemas.FxRateList,
        query=LIST_Q,
    ),
    Op(
        "POST",
        "/v1/fx/quotes",
        create_quote,
        "Fix an exchange between two balances' currencies for a while (pay it with quote_id)",
        "account",
        body=schemas.FxQuoteCreate,
        response=schemas.FxQuote,
        status=201,
        errors=("balance_not_found", "same_balance", "invalid_amount", "validation_error", "conflict"),
        rules=TWO_SIDES_RULE + " The balances hold two currencies with a rate between them, either way round"
        " (409 conflict without one); amount_to is amount at the rate, rounded down.",
    ),
    Op(
        "GET",
        "/v1/fx/quotes/{id}",
        get_quote,
        "A quote, for a day after it expires (an account key: quotes from its own balances)",
        "account",
        response=schemas.FxQuote,
        errors=("quote_not_found",),
    ),
    Op(
        "GET",
        "/v1/fx/liquidity",
        list_liquidity,
        "The FX liquidity balances, one per currency with a rate (fund them by deposits)",
        "admin",
        response=schemas.BalanceList,
        query=LIST_Q,
    ),
]
