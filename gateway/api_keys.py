"""API keys (admin only): an account's tokens, made (/v1/accounts/{id}/keys, the token
shown once), listed by prefix and revoked (/v1/keys/{id}). The registry keeps a token's
hash (gateway.auth), and for a create's Idempotency-Key replay only the token sealed
(gateway.creates).

Named apart from gateway.keys, which holds the app's typed keys."""

from __future__ import annotations

import msgspec
from aiohttp import web

from actors.registry import Registry
from api import render
from gateway import creates
from gateway.auth import new_account_token
from gateway.common import json_response
from gateway.errors import ApiError
from gateway.keys import AUTH, CLIENT, SEAL_KEY
from gateway.lists import id_bounds, newest_first, page_of, unknown_cursor
from gateway.operation import LIST_Q, Op
from ledger.records import Answered
from rayledger import schemas

KEY_PREFIX_LEN = 8  # "rlk_" and four characters: enough to tell keys apart, far too few to use


async def create_key(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    token, digest = new_account_token()
    idem, key = creates.idem_of(request, None)
    if idem is not None and key is not None:
        idem = msgspec.structs.replace(idem, sealed=creates.seal(request.app[SEAL_KEY], key, token))
    key_id = await request.app[CLIENT].registry.invoke(
        Registry.create_key, account_id, digest, idem, token[:KEY_PREFIX_LEN]
    )
    if isinstance(key_id, Answered):
        return await creates.replay(request, idem, key, key_id)  # type: ignore[arg-type]
    if key_id is None:
        raise ApiError("account_not_found", "no such account")
    return json_response(schemas.ApiKey(key_id, account_id, token), 201)


async def list_keys(request: web.Request) -> web.Response:
    page = page_of(request)
    account_id = request.match_info["id"]
    registry = request.app[CLIENT].registry
    before, after = id_bounds(request, page, "key")
    found = await registry.invoke(Registry.list_keys, account_id, page.limit + 1, before, after, page.ascending)
    if found is None:
        raise ApiError("account_not_found", "no such account")
    if page.cursor is not None:
        cursor = await registry.invoke(Registry.key_view, page.cursor)
        if cursor is None or cursor.account_id != account_id:
            raise unknown_cursor(page)
    data = [
        schemas.KeyListed(k.id, k.account_id, k.prefix, render.timestamp(k.created_at_ms))
        for k in newest_first(found[: page.limit], page)
    ]
    return json_response(schemas.KeyList(data=data, has_more=len(found) > page.limit))


async def revoke_key(request: web.Request) -> web.Response:
    revoked = await request.app[CLIENT].registry.invoke(Registry.revoke_key, request.match_info["id"])
    request.app[AUTH].forget_keys()
    if not revoked:
        raise ApiError("key_not_found", "no such key")
    return web.Response(status=204)


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/accounts/{id}/keys",
        create_key,
        "Create an API key for the account",
        "admin",
        response=schemas.ApiKey,
        status=201,
        errors=("account_not_found",),
        idempotent=True,
    ),
    Op(
        "GET",
        "/v1/accounts/{id}/keys",
        list_keys,
        "An account's API keys (never their tokens), newest first",
        "admin",
        response=schemas.KeyList,
        errors=("account_not_found",),
        query=LIST_Q,
    ),
    Op(
        "DELETE",
        "/v1/keys/{id}",
        revoke_key,
        "Revoke an API key",
        "admin",
        status=204,
        errors=("key_not_found",),
    ),
]
