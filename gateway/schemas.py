"""Request and response bodies: the msgspec types the handlers decode and encode.

Requests forbid unknown fields and carry their bounds as `Meta` constraints, so a bad
request is refused by the decoder before any handler code runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Id = Annotated[str, Meta(min_length=1, max_length=64)]
Email = Annotated[str, Meta(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
AmountText = Annotated[str, Meta(max_length=40, description='Decimal string in major units, e.g. "10.50"')]
Metadata = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=40)], Annotated[str, Meta(max_length=500)]],
    Meta(max_length=20),
]
Description = Annotated[str, Meta(max_length=500)]
CurrencyCode = Annotated[str, Meta(min_length=3, max_length=12)]

_req = {"forbid_unknown_fields": True, "frozen": True}


class AccountCreate(msgspec.Struct, **_req):
    email: Email
    metadata: Metadata | None = None


class BalanceCreate(msgspec.Struct, **_req):
    currency: CurrencyCode
    overdraft_limit: AmountText = "0"


class DepositCreate(msgspec.Struct, **_req):
    balance_id: Id
    amount: AmountText


class WithdrawalCreate(msgspec.Struct, **_req):
    balance_id: Id
    amount: AmountText


class PaymentCreate(msgspec.Struct, **_req):
    balance_from: Id
    balance_to: Id
    amount: AmountText
    description: Description | None = None
    metadata: Metadata | None = None


# -- responses ----------------------------------------------------------------------------
class Balance(msgspec.Struct):
    id: str
    account_id: str
    currency: str
    amount: str
    reserved: str
    available: str
    overdraft_limit: str
    status: Literal["active", "disabled"]
    created_at: str


class Account(msgspec.Struct):
    id: str
    email: str
    status: Literal["active", "disabled"]
    created_at: str
    balances: list[Balance]
    metadata: dict[str, str] | None = None


class Payment(msgspec.Struct, omit_defaults=True):
    id: str
    balance_from: str
    balance_to: str
    amount: str
    currency: str
    status: str
    created_at: str
    settled_at: str | None = None
    reason: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None


class Currency(msgspec.Struct, omit_defaults=True):
    code: str
    exponent: int
    name: str
    custom: bool
    issuer_balance_id: str | None = None


class CurrencyList(msgspec.Struct):
    data: list[Currency]
    has_more: bool = False


class ApiKey(msgspec.Struct, omit_defaults=True):
    id: str
    account_id: str
    token: str | None = None  # shown once, at creation


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    reason: str | None = None


Status = Literal["active", "disabled"]
Limit = Annotated[int, Meta(ge=1, le=100)]


class AccountPatch(msgspec.Struct, **_req):
    status: Status


class BalancePatch(msgspec.Struct, **_req):
    status: Status | None = None
    overdraft_limit: AmountText | None = None


class CurrencyCreate(msgspec.Struct, **_req):
    code: Annotated[str, Meta(pattern=r"^[A-Z0-9]{3,12}$")]
    exponent: Annotated[int, Meta(ge=0, le=8)]
    name: Annotated[str, Meta(min_length=1, max_length=100)]


class BatchItem(PaymentCreate, **_req):
    """A payment request with its own idempotency key (the batch has no header per item)."""

    idempotency_key: Annotated[str, Meta(min_length=1, max_length=255)] | None = None


BATCH_ITEMS_MAX = 1000


class BatchCreate(msgspec.Struct, **_req):
    payments: Annotated[list[BatchItem], Meta(min_length=1, max_length=BATCH_ITEMS_MAX)]


class BatchResult(msgspec.Struct):
    """`results[i]` answers `payments[i]`: a payment, or a problem for that item alone."""

    results: list[dict[str, Any]]


class AccountList(msgspec.Struct):
    data: list[Account]
    has_more: bool


class PaymentList(msgspec.Struct):
    data: list[Payment]
    has_more: bool


class Entry(msgspec.Struct):
    payment_id: str
    amount: str
    balance_after: str
    created_at: str


class EntryList(msgspec.Struct):
    data: list[Entry]
    has_more: bool


class HoldCreate(msgspec.Struct, **_req):
    balance_from: Id
    balance_to: Id
    amount: AmountText
    expires_in_s: Annotated[int, Meta(ge=1, le=7 * 24 * 3600)]


class HoldCapture(msgspec.Struct, **_req):
    amount: AmountText | None = None  # default: all of it; the rest is released


class HoldVoid(msgspec.Struct, **_req):
    pass


class Hold(msgspec.Struct, omit_defaults=True):
    id: str
    balance_from: str
    balance_to: str
    amount: str
    currency: str
    status: str
    created_at: str
    expires_at: str
    reason: str | None = None
    closed_at: str | None = None
    captured_amount: str | None = None
    payment_id: str | None = None
