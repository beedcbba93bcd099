"""Balances: opening one (POST /v1/accounts/{id}/balances), reading and changing one
(/v1/balances/{id}) and its statement (/v1/balances/{id}/entries), read from the shard
that holds it. `render_balances` is how every answer shows balances (accounts and the FX
liquidity list too)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from actors.registry import Registry
from actors.shard import BalanceShard
from actors.topology import partition_of
from api import render
from gateway import creates, payments
from gateway.common import can_read_account, decode, json_response
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY, SETTINGS
from gateway.lists import newest_first, page_of, query, unknown_cursor
from gateway.operation import LIST_Q, TIME_RANGE_Q, Op
from ledger.money import format_amount
from ledger.results import Check
from ledger.views import SYSTEM_ACCOUNT_ID, BalanceInfo
from rayledger import schemas


async def render_balances(request: web.Request, infos: list[BalanceInfo]) -> list[schemas.Balance]:
    views = await request.app[CLIENT].get_balances([i.id for i in infos])
    out = []
    for info, view in zip(infos, views, strict=True):
        assert view is not None, f"balance {info.id} is in the directory but not on its shard"
        out.append(render.balance(info, view, await request.app[DIRECTORY].exponent(info.currency)))
    return out


async def create_balance(request: web.Request) -> web.Response:
    body = await decode(request, schemas.BalanceCreate)
    currency = await request.app[DIRECTORY].currency(body.currency)
    if currency is None:
        raise ApiError("unknown_currency", f"unknown currency {body.currency!r}", "currency")
    limit = payments.parse_money(body.overdraft_limit, currency.exponent, "overdraft_limit", allow_zero=True)
    idem, key = creates.idem_of(request, body)
    code, info = await request.app[CLIENT].registry.invoke(
        Registry.create_balance, request.match_info["id"], body.currency, limit, idem
    )
    if code == "replay":
        return await creates.replay(request, idem, key, info)  # type: ignore[arg-type]
    if code == "account_not_found":
        raise ApiError("account_not_found", "no such account")
    if code == "account_disabled":
        raise ApiError("account_disabled", "the account is disabled: enable it to open balances")
    if code == "balance_exists":
        raise ApiError("balance_exists", f"the account already has a {body.currency} balance", "currency")
    if code == "unknown_currency":
        raise ApiError("unknown_currency", f"unknown currency {body.currency!r}", "currency")
    assert info is not None
    return json_response((await render_balances(request, [info]))[0], 201)


async def get_balance(request: web.Request) -> web.Response:
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None or not can_read_account(request, info.account_id):
        raise ApiError("balance_not_found", "no such balance")
    return json_response((await render_balances(request, [info]))[0])


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
    code = await request.app[CLIENT].registry.invoke(Registry.change_balance, info.id, active, limit)
    if code == Check.NOT_ENOUGH_MONEY:
        raise ApiError("conflict", "the balance already uses more than that overdraft limit", "overdraft_limit")
    assert code == Check.OK, code
    return json_response((await render_balances(request, [info]))[0])


def entry_id(partition: int, seq: int) -> str:
    """A statement line's id: where it is in its partition's journal, which never changes."""
    return f"ent_{partition << 48 | seq:016x}"


def entry_seq(some_id: str, partition: int) -> int | None:
    if not (some_id.startswith("ent_") and len(some_id) == 20):
        return None
    try:
        value = int(some_id[4:], 16)
    except ValueError:
        return None
    return value & (2**48 - 1) if value >> 48 == partition else None


async def list_entries(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None or not can_read_account(request, info.account_id):
        raise ApiError("balance_not_found", "no such balance")
    client = request.app[CLIENT]
    shard = client.shard(client.shard_for(info.id))
    partition = partition_of(info.id, request.app[SETTINGS].partitions)
    before = after = None
    if page.cursor is not None:  # an entry's id, or (as in API 1.0) its payment's id
        paid_by = page.cursor if page.cursor.startswith("pay_") else None
        seq = entry_seq(page.cursor, partition) if paid_by is None else None
        if paid_by is None and seq is None:
            raise unknown_cursor(page)
        seq = await shard.invoke(BalanceShard.entry_seq, info.id, seq, paid_by)
        if seq is None:
            raise unknown_cursor(page)
        before, after = (None, seq) if page.ascending else (seq, None)
    entries = await shard.invoke(
        BalanceShard.entries,
        info.id,
        page.limit + 1,
        before,
        after,
        page.ascending,
        q.get("created_gte"),
        q.get("created_lt"),
    )
    exponent = await request.app[DIRECTORY].exponent(info.currency)
    shown = newest_first(entries[: page.limit], page)
    # The other side and the description are the payment's: joined here, on the read path,
    # rather than carried by every posted leg on the payment path.
    paid = await asyncio.gather(*(client.get_payment(e.payment_id) for e in shown))
    data = []
    for e, p in zip(shown, paid, strict=True):
        other = None if p is None else p.balance_to if p.balance_from == info.id else p.balance_from
        data.append(
            schemas.Entry(
                id=entry_id(partition, e.seq),
                payment_id=e.payment_id,
                amount=format_amount(e.delta_minor, exponent),
                balance_after=format_amount(e.balance_after_minor, exponent),
                created_at=render.timestamp(e.at_ms),
                counterparty_balance_id=other,
                description=None if p is None else p.description,
                transfer_id=None if p is None else p.transfer_id,
            )
        )
    return json_response(schemas.EntryList(data=data, has_more=len(entries) > page.limit))


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/accounts/{id}/balances",
        create_balance,
        "Open a balance in a currency",
        "admin",
        body=schemas.BalanceCreate,
        response=schemas.Balance,
        status=201,
        errors=(
            "account_not_found",
            "account_disabled",
            "balance_exists",
            "unknown_currency",
            "invalid_amount",
            "validation_error",
        ),
        idempotent=True,
        rules="The currency must exist (422 unknown_currency); the overdraft limit has at most its decimals.",
    ),
    Op(
        "GET",
        "/v1/balances/{id}",
        get_balance,
        "A balance",
        "account",
        response=schemas.Balance,
        errors=("balance_not_found",),
    ),
    Op(
        "PATCH",
        "/v1/balances/{id}",
        patch_balance,
        "Disable a balance or change its overdraft limit",
        "admin",
        body=schemas.BalancePatch,
        response=schemas.Balance,
        errors=("balance_not_found", "invalid_amount", "validation_error", "conflict"),
    ),
    Op(
        "GET",
        "/v1/balances/{id}/entries",
        list_entries,
        "Statement lines, newest first",
        "account",
        response=schemas.EntryList,
        errors=("balance_not_found",),
        query={**LIST_Q, **TIME_RANGE_Q},
    ),
]
