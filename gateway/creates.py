"""Idempotency-Key on the creates (accounts, balances, currencies, API keys), contract 1.1.

Money moves keep their keys with their payments, in the coordinators. Creates keep theirs
in the registry, journaled in the same frame as what they made (`Registry._answer`), so a
retry after any crash replays the first answer instead of making a second object or
answering 409. The registry stores only an HMAC of the caller-scoped key, and an API key's
token only sealed (XOR with an HMAC of the key): both HMACs are under a seal key derived
from the admin token, which is never journaled, so a journal or a backup alone reveals
neither keys nor tokens, however guessable the Idempotency-Keys. (Whoever holds the admin
token can make keys anyway.) If the admin token changes, a replayed key creation answers
its key without the token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec
from aiohttp import web

from actors.registry import Registry
from api import render
from gateway import payments
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY, SEAL_KEY
from ledger.book import BalanceView
from ledger.records import Answered
from ledger.sealing import xor_sealed
from ledger.views import Idem
from rayledger import schemas

_SEAL_CONTEXT = b"rayledger: an API key's token, sealed under the Idempotency-Key that created it"


def idem_of(request: web.Request, body: msgspec.Struct | None) -> tuple[Idem | None, str | None]:
    """The registry's view of this request's key, and the caller-scoped key itself."""
    key = payments.idempotency_key(request)
    if key is None:
        return None, None
    lookup = hmac.new(request.app[SEAL_KEY], b"create\n" + key.encode(), hashlib.sha256).digest()[:16]
    return Idem(lookup, payments.fingerprint(request, body)), key  # type: ignore[arg-type]


def seal(seal_key: bytes, key: str, token: str) -> bytes:
    return xor_sealed(seal_key, _SEAL_CONTEXT, key, token.encode())


def unseal(seal_key: bytes, key: str, sealed: bytes) -> str | None:
    raw = xor_sealed(seal_key, _SEAL_CONTEXT, key, sealed)
    try:
        return raw.decode()
    except UnicodeDecodeError:  # sealed under another admin token: the key replays without it
        return None


async def replay(request: web.Request, idem: Idem, key: str, answered: Answered) -> web.Response:
    """The first answer of the create `answered` records, or 409 if the key was used
    for a different request."""
    if answered.fingerprint != idem.fingerprint:
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
    body: Any
    if answered.kind == "account":
        body = render.account(await request.app[CLIENT].registry.invoke(Registry.first_account, answered.ref), [])
    elif answered.kind == "balance":
        [info] = await request.app[DIRECTORY].balances([answered.ref])
        if info is None:  # made, but its shard has not opened it yet (the registry retries it)
            raise ApiError("unavailable", "the balance is being opened; retry with the same Idempotency-Key")
        limit = answered.amount_minor
        first = BalanceView(info.id, info.currency, 0, 0, limit, limit, active=True, unlimited=False)
        body = render.balance(info, first, await request.app[DIRECTORY].exponent(info.currency))
    elif answered.kind == "currency":
        view = await request.app[DIRECTORY].currency(answered.ref)
        assert view is not None, f"answered currency {answered.ref} exists"
        body = schemas.Currency(view.code, view.exponent, view.name, view.custom, view.issuer_balance_id)
    else:
        assert answered.kind == "key", answered.kind
        token = unseal(request.app[SEAL_KEY], key, answered.sealed) if answered.sealed is not None else None
        body = schemas.ApiKey(answered.ref, request.match_info["id"], token)
    return web.Response(
        body=msgspec.json.encode(body),
        status=201,
        content_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )
