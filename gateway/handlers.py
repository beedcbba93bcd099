"""Request handlers: decode, check, call the actors, render. A few lines each."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from aiohttp import web

from actors.registry import SYSTEM_ACCOUNT_ID, BalanceInfo
from gateway import payments, render, schemas
from gateway.auth import Principal, new_account_token
from gateway.errors import ApiError
from gateway.keys import AUTH, CLIENT, DIRECTORY, PRINCIPAL
from ledger.records import PaymentRecord

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

READY_TIMEOUT_S = 2.0
_decoders: dict[type, msgspec.json.Decoder] = {}  # built once per type, reused by every request
_PATH_OF_ERROR = re.compile(r"at `\$\.([A-Za-z_]+)")


def json_response(body: msgspec.Struct | dict[str, object], status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


async def decode(request: web.Request, type_: type[T]) -> T:
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type", "send the body as application/json")
    body = await request.read()
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        match = _PATH_OF_ERROR.search(str(exc))
        param = match.group(1) if match else None
        code = "invalid_amount" if param in ("amount", "overdraft_limit") else "validation_error"
        raise ApiError(code, str(exc), param) from None
    except msgspec.DecodeError:
        raise ApiError("validation_error", "the body is not valid JSON") from None


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def can_read_account(request: web.Request, account_id: str) -> bool:
    p = principal(request)
    return p.admin or p.account_id == account_id


# -- operations ---------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return json_response(schemas.Health("ok"))


async def readyz(request: web.Request) -> web.Response:
    try:
        status = await asyncio.wait_for(request.app[CLIENT].status(), READY_TIMEOUT_S)
    except Exception as exc:  # a timeout, a dead actor: not ready either way
        return json_response(schemas.Health("unavailable", f"actors not ready: {type(exc).__name__}"), 503)
    unwritable = [s["shard"] for s in status["shards"] if not s["writable"]]
    if unwritable:
        return json_response(schemas.Health("unavailable", f"journal not writable on shards {unwritable}"), 503)
    return json_response(schemas.Health("ready"))


# -- currencies ---------------------------------------------------------------------------
async def list_currencies(request: web.Request) -> web.Response:
    views = await request.app[CLIENT].registry.call("currencies")
    data = [schemas.Currency(v.code, v.exponent, v.name, v.custom) for v in views]
    return json_response(schemas.CurrencyList(data=data))


async def get_currency(request: web.Request) -> web.Response:
    view = await request.app[DIRECTORY].currency(request.match_info["code"])
    if view is None:
        raise ApiError("not_found", "no such currency")
    return json_response(schemas.Currency(view.code, view.exponent, view.name, view.custom, view.issuer_balance_id))


# -- accounts and balances ----------------------------------------------------------------
async def create_account(request: web.Request) -> web.Response:
    body = await decode(request, schemas.AccountCreate)
    info = await request.app[CLIENT].registry.call("create_account", body.email, body.metadata)
    if info is None:
        raise ApiError("email_taken", "an account with this email exists", "email")
    return json_response(render.account(info, []), 201)


async def _render_balances(request: web.Request, infos: list[BalanceInfo]) -> list[schemas.Balance]:
    views = await request.app[CLIENT].get_balances([i.id for i in infos])
    out = []
    for info, view in zip(infos, views, strict=True):
        assert view is not None, f"balance {info.id} is in the directory but not on its shard"
        out.append(render.balance(info, view, await request.app[DIRECTORY].exponent(info.currency)))
    return out


async def get_account(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    info = await request.app[CLIENT].registry.call("get_account", account_id)
    # Another account's existence is not revealed to an account token: 404, not 403.
    if info is None or account_id == SYSTEM_ACCOUNT_ID or not can_read_account(request, account_id):
        raise ApiError("account_not_found", "no such account")
    infos = [i for i in await request.app[DIRECTORY].balances(info.balance_ids) if i is not None]
    return json_response(render.account(info, await _render_balances(request, infos)))


async def create_balance(request: web.Request) -> web.Response:
    body = await decode(request, schemas.BalanceCreate)
    currency = await request.app[DIRECTORY].currency(body.currency)
    if currency is None:
        raise ApiError("unknown_currency", f"unknown currency {body.currency!r}", "currency")
    limit = payments.parse_money(body.overdraft_limit, currency.exponent, "overdraft_limit", allow_zero=True)
    code, info = await request.app[CLIENT].registry.call(
        "create_balance", request.match_info["id"], body.currency, limit
    )
    if code == "account_not_found":
        raise ApiError("account_not_found", "no such account")
    if code == "balance_exists":
        raise ApiError("balance_exists", f"the account already has a {body.currency} balance", "currency")
    if code == "unknown_currency":
        raise ApiError("unknown_currency", f"unknown currency {body.currency!r}", "currency")
    assert info is not None
    return json_response((await _render_balances(request, [info]))[0], 201)


async def get_balance(request: web.Request) -> web.Response:
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None or not can_read_account(request, info.account_id):
        raise ApiError("balance_not_found", "no such balance")
    return json_response((await _render_balances(request, [info]))[0])


# -- money movement -----------------------------------------------------------------------
async def _single(request: web.Request, body_type: type[T], deposit: bool | None) -> web.Response:
    body = await decode(request, body_type)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None  # type: ignore[arg-type]
    if deposit is None:
        prepared = await payments.prepare_payment(request, body, key, fp)  # type: ignore[arg-type]
    else:
        prepared = await payments.prepare_issuer_move(
            request,
            body.balance_id,
            body.amount,
            deposit=deposit,
            key=key,
            fp=fp,  # type: ignore[attr-defined]
        )
    [result] = await payments.settle(request, [prepared])
    return payments.respond(result)


async def create_deposit(request: web.Request) -> web.Response:
    return await _single(request, schemas.DepositCreate, deposit=True)


async def create_withdrawal(request: web.Request) -> web.Response:
    return await _single(request, schemas.WithdrawalCreate, deposit=False)


async def create_payment(request: web.Request) -> web.Response:
    return await _single(request, schemas.PaymentCreate, deposit=None)


async def get_payment(request: web.Request) -> web.Response:
    record = await request.app[CLIENT].get_payment(request.match_info["id"])
    if record is None or not await _touches_own_balance(request, record):
        raise ApiError("not_found", "no such payment")
    return json_response(render.payment(record, await request.app[DIRECTORY].exponent(record.currency)))


async def _touches_own_balance(request: web.Request, record: PaymentRecord) -> bool:
    if principal(request).admin:
        return True
    infos = await request.app[DIRECTORY].balances([b for b in (record.balance_from, record.balance_to) if b])
    return any(i is not None and can_read_account(request, i.account_id) for i in infos)


# -- API keys -------------------------------------------------------------------------------
async def create_key(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    token, digest = new_account_token()
    key_id = await request.app[CLIENT].registry.call("create_key", account_id, digest)
    if key_id is None:
        raise ApiError("account_not_found", "no such account")
    return json_response(schemas.ApiKey(key_id, account_id, token), 201)


async def revoke_key(request: web.Request) -> web.Response:
    revoked = await request.app[CLIENT].registry.call("revoke_key", request.match_info["id"])
    request.app[AUTH].forget_keys()
    if not revoked:
        raise ApiError("not_found", "no such key")
    return web.Response(status=204)
