"""What every handler module uses: a JSON body in and out, who is calling, and whether a
record touches one of the caller's balances (what an account key may see).

Kept below the handler modules so each concern (accounts, payments, holds, ...) has its own
module and none imports another's just for these."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiohttp import web

from gateway.auth import Principal
from gateway.errors import ApiError
from gateway.inputs import decode_body
from gateway.keys import DIRECTORY, PRINCIPAL
from ledger.records import HoldRecord, PaymentRecord, TransferRecord

T = TypeVar("T")


def json_response(
    body: msgspec.Struct | dict[str, object], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json", headers=headers)


async def decode(request: web.Request, type_: type[T]) -> T:
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type", "send the body as application/json")
    return decode_body(await request.read(), type_)


async def decode_optional(request: web.Request, type_: type[T]) -> T:
    """Capture, void and refund may be sent without a body."""
    if not request.can_read_body:
        return msgspec.json.decode(b"{}", type=type_)
    return await decode(request, type_)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def can_read_account(request: web.Request, account_id: str) -> bool:
    p = principal(request)
    return p.admin or p.account_id == account_id


async def touches_own_balance(request: web.Request, record: PaymentRecord | HoldRecord | TransferRecord) -> bool:
    if principal(request).admin:
        return True
    if isinstance(record, TransferRecord):
        sides = [b for leg in record.legs for b in (leg.balance_from, leg.balance_to)]
    else:
        sides = [b for b in (record.balance_from, record.balance_to) if b]
    infos = await request.app[DIRECTORY].balances(list(dict.fromkeys(sides)))
    return any(i is not None and can_read_account(request, i.account_id) for i in infos)
