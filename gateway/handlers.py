"""Request handlers: decode, check, call the actors, render. A few lines each."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from aiohttp import web

from actors.coordinator import Outcome, pending_record
from actors.registry import SYSTEM_ACCOUNT_ID, BalanceInfo
from gateway import payments, render, schemas
from gateway.auth import Principal, new_account_token
from gateway.errors import ApiError
from gateway.keys import AUTH, BATCHER, CLIENT, DIRECTORY, PRINCIPAL
from ledger.ids import HOLD_PREFIX
from ledger.messages import HoldRequest
from ledger.money import format_amount
from ledger.records import HoldRecord, PaymentRecord
from ledger.results import FINAL_STATUSES, Check

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
    # Taken before asking the coordinator: the payment's answer may come back (and leave
    # the batcher) while the coordinator is still looking for it, which would be a 404.
    unsettled = request.app[BATCHER].unsettled(request.match_info["id"])
    record = await request.app[CLIENT].get_payment(request.match_info["id"])
    if record is None and unsettled is not None:
        record = pending_record(unsettled)  # answered 202 here; the coordinator has not seen it yet
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


# -- lists ----------------------------------------------------------------------------------
def list_params(request: web.Request) -> tuple[int, str | None]:
    raw = request.query.get("limit", "20")
    if not (raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= 100):
        raise ApiError("validation_error", "limit must be an integer from 1 to 100", "limit")
    starting_after = request.query.get("starting_after")
    if starting_after is not None and not 1 <= len(starting_after) <= 64:
        raise ApiError("validation_error", "starting_after must be an id", "starting_after")
    return int(raw), starting_after


def _status_filter(request: web.Request, allowed: frozenset[str]) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in allowed:
        raise ApiError("validation_error", f"status must be one of {sorted(allowed)}", "status")
    return status


async def list_accounts(request: web.Request) -> web.Response:
    limit, starting_after = list_params(request)
    status = _status_filter(request, frozenset({"active", "disabled"}))
    active = None if status is None else status == "active"
    infos = await request.app[CLIENT].registry.call("list_accounts", active, limit + 1, starting_after)
    page = infos[:limit]
    balance_infos = [i for i in await request.app[DIRECTORY].balances([b for a in page for b in a.balance_ids]) if i]
    rendered = {b.id: b for b in await _render_balances(request, balance_infos)}
    data = [render.account(a, [rendered[b] for b in a.balance_ids if b in rendered]) for a in page]
    return json_response(schemas.AccountList(data=data, has_more=len(infos) > limit))


async def patch_account(request: web.Request) -> web.Response:
    body = await decode(request, schemas.AccountPatch)
    account_id = request.match_info["id"]
    info = await request.app[CLIENT].registry.call("set_account_status", account_id, body.status == "active")
    if info is None:
        raise ApiError("account_not_found", "no such account")
    infos = [i for i in await request.app[DIRECTORY].balances(info.balance_ids) if i is not None]
    return json_response(render.account(info, await _render_balances(request, infos)))


async def patch_balance(request: web.Request) -> web.Response:
    body = await decode(request, schemas.BalancePatch)
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None:
        raise ApiError("balance_not_found", "no such balance")
    if info.account_id == SYSTEM_ACCOUNT_ID:
        raise ApiError("validation_error", "issuer balances cannot be changed")
    exponent = await request.app[DIRECTORY].exponent(info.currency)
    limit = None
    if body.overdraft_limit is not None:
        limit = payments.parse_money(body.overdraft_limit, exponent, "overdraft_limit", allow_zero=True)
    active = None if body.status is None else body.status == "active"
    client = request.app[CLIENT]
    code = await client.shard(client.shard_for(info.id)).call("change_balance", info.id, active, limit)
    if code == Check.NOT_ENOUGH_MONEY:
        raise ApiError("conflict", "the balance already uses more than that overdraft limit", "overdraft_limit")
    assert code == Check.OK, code
    return json_response((await _render_balances(request, [info]))[0])


async def list_entries(request: web.Request) -> web.Response:
    limit, starting_after = list_params(request)
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None or not can_read_account(request, info.account_id):
        raise ApiError("balance_not_found", "no such balance")
    client = request.app[CLIENT]
    entries = await client.shard(client.shard_for(info.id)).call("entries", info.id, limit + 1, starting_after)
    exponent = await request.app[DIRECTORY].exponent(info.currency)
    data = [
        schemas.Entry(
            payment_id=e.payment_id,
            amount=format_amount(e.delta_minor, exponent),
            balance_after=format_amount(e.balance_after_minor, exponent),
            created_at=render.timestamp(e.at_ms),
        )
        for e in entries[:limit]
    ]
    return json_response(schemas.EntryList(data=data, has_more=len(entries) > limit))


async def list_payments(request: web.Request) -> web.Response:
    limit, starting_after = list_params(request)
    status = _status_filter(request, FINAL_STATUSES)
    balance_id = request.query.get("balance")
    client, who = request.app[CLIENT], principal(request)
    if balance_id is not None:
        [info] = await request.app[DIRECTORY].balances([balance_id])
        if info is None or not can_read_account(request, info.account_id):
            raise ApiError("balance_not_found", "no such balance", "balance")
        balances: list[str | None] = [balance_id]
    elif who.admin:
        balances = [None]
    else:  # an account sees the payments touching any of its balances
        account = await client.registry.call("get_account", who.account_id)
        balances = list(account.balance_ids) if account else []
    pages = await asyncio.gather(*(client.list_payments(b, status, limit, starting_after) for b in balances))
    merged = {p.id: p for page, _ in pages for p in page}
    ordered = sorted(merged.values(), key=lambda p: p.id, reverse=True)
    has_more = len(ordered) > limit or any(more for _, more in pages)
    data = [render.payment(p, await request.app[DIRECTORY].exponent(p.currency)) for p in ordered[:limit]]
    return json_response(schemas.PaymentList(data=data, has_more=has_more))


# -- currencies (admin) ---------------------------------------------------------------------
async def create_currency(request: web.Request) -> web.Response:
    body = await decode(request, schemas.CurrencyCreate)
    view = await request.app[CLIENT].registry.call("create_currency", body.code, body.exponent, body.name)
    if view is None:
        raise ApiError("conflict", f"currency {body.code} exists", "code")
    view = await request.app[DIRECTORY].currency(body.code)  # creates its issuer balance
    assert view is not None
    return json_response(
        schemas.Currency(view.code, view.exponent, view.name, view.custom, view.issuer_balance_id), 201
    )


# -- batches --------------------------------------------------------------------------------
async def create_batch(request: web.Request) -> web.Response:
    """Each item succeeds or fails alone; results come back in input order."""
    body = await decode(request, schemas.BatchCreate)
    results: list[dict[str, object] | None] = [None] * len(body.payments)
    prepared: list[payments.Prepared] = []
    slots: list[int] = []
    for n, item in enumerate(body.payments):
        try:
            key = payments.idempotency_key(request, item.idempotency_key)
            fp = payments.fingerprint(request, item) if key is not None else None
            prepared.append(await payments.prepare_payment(request, item, key, fp))
            slots.append(n)
        except ApiError as error:
            results[n] = msgspec.to_builtins(error.problem())
    for n, settled in zip(slots, await payments.settle(request, prepared) if prepared else [], strict=True):
        results[n] = msgspec.to_builtins(settled.body)
    return json_response(schemas.BatchResult(results=results))  # type: ignore[arg-type]


# -- holds ----------------------------------------------------------------------------------
async def _decode_optional(request: web.Request, type_: type[T]) -> T:
    """Capture and void may be sent without a body."""
    if not request.can_read_body:
        return msgspec.json.decode(b"{}", type=type_)
    return await decode(request, type_)


def _hold_response(request: web.Request, outcome: Outcome, exponent: int, status: int) -> web.Response:
    if outcome.conflict:
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
    if outcome.refused == "unavailable":
        raise ApiError("unavailable", "a journal cannot be written now; nothing moved; retry later")
    if outcome.refused == "not_found" or (outcome.hold is None and outcome.payment is None):
        raise ApiError("not_found", "no such hold")
    if outcome.refused == "not_held":
        assert outcome.hold is not None
        raise ApiError("conflict", f"the hold is {outcome.hold.status}, no longer held")
    if outcome.refused == "amount_exceeds_hold":
        raise ApiError("invalid_amount", "a capture cannot exceed the held amount", "amount")
    assert outcome.refused is None, outcome.refused
    if outcome.payment is not None:
        body: msgspec.Struct = render.payment(outcome.payment, exponent)
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
    )
    outcome = await request.app[CLIENT].place_hold(hold_request)
    return _hold_response(request, outcome, prepared.exponent, 201)


async def _own_hold(request: web.Request, *, paying_side: bool) -> HoldRecord:
    hold = await request.app[CLIENT].get_hold(request.match_info["id"])
    if hold is None:
        raise ApiError("not_found", "no such hold")
    sides = [hold.balance_from] if paying_side else [hold.balance_from, hold.balance_to]
    infos = await request.app[DIRECTORY].balances(sides)
    if not any(i is not None and can_read_account(request, i.account_id) for i in infos):
        raise ApiError("not_found", "no such hold")
    return hold


async def get_hold(request: web.Request) -> web.Response:
    hold = await _own_hold(request, paying_side=False)
    return json_response(render.hold(hold, await request.app[DIRECTORY].exponent(hold.currency)))


async def capture_hold(request: web.Request) -> web.Response:
    body = await _decode_optional(request, schemas.HoldCapture)
    hold = await _own_hold(request, paying_side=True)
    exponent = await request.app[DIRECTORY].exponent(hold.currency)
    amount = payments.parse_money(body.amount, exponent) if body.amount is not None else None
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    payment_id = payments.payment_id_for(request, hold.id)
    outcome = await request.app[CLIENT].capture_hold(hold.id, amount, payment_id, payments.now_ms(), key, fp)
    return _hold_response(request, outcome, exponent, 201)


async def void_hold(request: web.Request) -> web.Response:
    body = await _decode_optional(request, schemas.HoldVoid)
    hold = await _own_hold(request, paying_side=True)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    outcome = await request.app[CLIENT].void_hold(hold.id, key, fp)
    return _hold_response(request, outcome, await request.app[DIRECTORY].exponent(hold.currency), 200)
