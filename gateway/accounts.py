"""/v1/accounts: account holders, kept by the registry, each shown with its balances. The
admin creates, lists and changes them; an account key reads only its own (another
account reads as a made-up id does)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from actors.registry import Registry
from api import render
from gateway import creates
from gateway.balances import render_balances
from gateway.common import can_read_account, decode, json_response
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY
from gateway.lists import id_bounds, newest_first, page_of, query, unknown_cursor
from gateway.operation import ACCOUNT_STATUS_Q, LIST_Q, Op
from ledger.records import Answered
from ledger.views import SYSTEM_ACCOUNT_ID
from rayledger import schemas


async def create_account(request: web.Request) -> web.Response:
    body = await decode(request, schemas.AccountCreate)
    idem, key = creates.idem_of(request, body)
    info = await request.app[CLIENT].registry.invoke(Registry.create_account, body.email, body.metadata, idem)
    if isinstance(info, Answered):
        return await creates.replay(request, idem, key, info)  # type: ignore[arg-type]
    if info is None:
        raise ApiError("email_taken", "an account with this email exists", "email")
    return json_response(render.account(info, []), 201)


async def get_account(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    info = await request.app[CLIENT].registry.invoke(Registry.get_account, account_id)
    # Another account's existence is not revealed to an account token: 404, not 403.
    if info is None or account_id == SYSTEM_ACCOUNT_ID or not can_read_account(request, account_id):
        raise ApiError("account_not_found", "no such account")
    infos = [i for i in await request.app[DIRECTORY].balances(info.balance_ids) if i is not None]
    return json_response(render.account(info, await render_balances(request, infos)))


async def list_accounts(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    if page.cursor is not None and await request.app[CLIENT].registry.invoke(Registry.get_account, page.cursor) is None:
        raise unknown_cursor(page)
    active = None if "status" not in q else q["status"] == "active"
    before, after = id_bounds(request, page, "acc")
    infos = await request.app[CLIENT].registry.invoke(
        Registry.list_accounts, active, page.limit + 1, before, after, page.ascending, q.get("email")
    )
    shown = newest_first(infos[: page.limit], page)
    balance_infos = [i for i in await request.app[DIRECTORY].balances([b for a in shown for b in a.balance_ids]) if i]
    rendered = {b.id: b for b in await render_balances(request, balance_infos)}
    data = [render.account(a, [rendered[b] for b in a.balance_ids if b in rendered]) for a in shown]
    return json_response(schemas.AccountList(data=data, has_more=len(infos) > page.limit))


async def patch_account(request: web.Request) -> web.Response:
    try:
        body = await decode(request, schemas.AccountPatch)
    except ApiError as refused:
        if refused.param == "email":  # not a field to change: say why rather than "not a field"
            raise ApiError("validation_error", "an account's email is immutable", "email") from None
        raise
    account_id = request.match_info["id"]
    active = None if body.status is None else body.status == "active"
    set_metadata = body.metadata is not msgspec.UNSET
    info = await request.app[CLIENT].registry.invoke(
        Registry.update_account, account_id, active, body.metadata if set_metadata else None, set_metadata=set_metadata
    )
    if info is None:
        raise ApiError("account_not_found", "no such account")
    infos = [i for i in await request.app[DIRECTORY].balances(info.balance_ids) if i is not None]
    return json_response(render.account(info, await render_balances(request, infos)))


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/accounts",
        create_account,
        "Create an account",
        "admin",
        body=schemas.AccountCreate,
        response=schemas.Account,
        status=201,
        errors=("email_taken", "validation_error"),
        idempotent=True,
    ),
    Op(
        "GET",
        "/v1/accounts/{id}",
        get_account,
        "An account with its balances",
        "account",
        response=schemas.Account,
        errors=("account_not_found",),
    ),
    Op(
        "GET",
        "/v1/accounts",
        list_accounts,
        "List accounts, newest first",
        "admin",
        response=schemas.AccountList,
        query={**LIST_Q, "status": ACCOUNT_STATUS_Q, "email": {"type": "string", "maxLength": 254}},
    ),
    Op(
        "PATCH",
        "/v1/accounts/{id}",
        patch_account,
        "Disable or re-enable an account, or replace its metadata",
        "admin",
        body=schemas.AccountPatch,
        response=schemas.Account,
        errors=("account_not_found", "validation_error"),
        rules="Only what is given changes; metadata is replaced whole (null: none). The email is immutable (422"
        " naming it). A change is an account.updated event.",
    ),
]
