"""An event as the API shows it (`GET /v1/events`, the stream, webhook deliveries): the
record it is rendered into the resource it is about, as a viewer ("admin" or an account)
sees it. What it needs to know beyond the record (a currency's exponent, an account's
email) it asks `Lookups`, which the gateway's and the webhooks actor's directories are."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from api import render
from ledger.money import format_amount
from ledger.records import (
    AccountChanged,
    AccountCreated,
    AccountMetadataSet,
    BalanceCreated,
    BalanceUpdated,
    Decided,
    FxRateSet,
    HoldClosed,
    HoldPlaced,
    Record,
    TransferDecided,
    event_of,
)
from ledger.views import AccountInfo
from rayledger import schemas
from rayledger.schemas import Event


class Lookups(Protocol):
    async def exponent(self, code: str) -> int: ...

    async def account(self, account_id: str) -> AccountInfo | None: ...


async def event_of_record(lookups: Lookups, some_id: str, record: Record, viewer: str) -> Event:
    """The event `record` is, as `viewer` ("admin" or an account) sees it: the stream, the
    list and webhook deliveries (as the admin) all send this."""
    event = event_of(record)
    assert event is not None, f"not an event: {record!r}"
    kind, at_ms = event
    data: msgspec.Struct | dict[str, Any]
    if isinstance(record, Decided):
        data = render.payment(record.payment, await lookups.exponent(record.payment.currency), viewer)
    elif isinstance(record, TransferDecided):
        t = record.transfer
        data = render.transfer(t, {c: await lookups.exponent(c) for c in {leg.currency for leg in t.legs}}, viewer)
    elif isinstance(record, HoldPlaced | HoldClosed):
        data = render.hold(record.hold, await lookups.exponent(record.hold.currency))
    elif isinstance(record, AccountCreated):
        data = schemas.Account(
            record.account_id, record.email, "active", render.timestamp(record.created_at_ms), [], record.metadata
        )
    elif isinstance(record, AccountChanged):
        info = await lookups.account(record.account_id)
        data = {"id": record.account_id, "status": "active" if record.active else "disabled"}
        if info is not None:
            data["email"] = info.email
    elif isinstance(record, AccountMetadataSet):  # the metadata as this change left it
        info = await lookups.account(record.account_id)
        data = {"id": record.account_id, "metadata": record.metadata}
        if info is not None:
            data["email"] = info.email
    elif isinstance(record, BalanceCreated):
        data = {
            "id": record.balance_id,
            "account_id": record.account_id,
            "currency": record.currency,
            "created_at": render.timestamp(record.created_at_ms),
        }
    elif isinstance(record, BalanceUpdated):
        data = {
            "id": record.balance_id,
            "account_id": record.account_id,
            "currency": record.currency,
            "status": "active" if record.active else "disabled",
            "overdraft_limit": format_amount(record.overdraft_limit_minor, await lookups.exponent(record.currency)),
        }
    elif isinstance(record, FxRateSet):
        data = render.fx_rate(record)
    else:
        raise AssertionError(f"an event without a rendering: {kind}")
    body = data if isinstance(data, dict) else msgspec.to_builtins(data)
    return Event(some_id, kind, render.timestamp(at_ms), body)
