"""Request and response bodies: the msgspec types the server's handlers decode and encode,
and the client decodes (the API's wire types, in the client's distribution so that it
installs without the server).

Requests forbid unknown fields and carry their bounds as `Meta` constraints, so a bad
request is refused by the decoder before any handler code runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from rayledger.patterns import describe_pattern

Id = Annotated[str, Meta(min_length=1, max_length=64)]
# Spelled-out character classes, not \s: Python's and JSON Schema's (ECMA-262) \s differ.
EMAIL_PATTERN = describe_pattern(
    r"^[^@ \t\r\n]+@[^@ \t\r\n]+\.[^@ \t\r\n]+$", "an email address such as ada@example.com"
)
# Positive: a non-zero whole part, or 0 and a fraction that is not all zeros. Its example
# is whole: the currency is not known yet, and "10" is valid in every currency.
AMOUNT_PATTERN = describe_pattern(
    r"^(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)$",
    'a positive decimal string such as "10", with at most the currency\'s decimals',
)
LIMIT_PATTERN = describe_pattern(
    r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$", 'a decimal string such as "0" or "100", with at most the currency\'s decimals'
)
CURRENCY_PATTERN = describe_pattern(r"^[A-Z0-9]{3,12}$", "3 to 12 capital letters or digits, such as EUR")
_AMOUNT_RULES = (
    "At most as many decimals as the currency has (2 for USD), and at most 9,223,372,036,854,775,807"
    " in minor units: rules that depend on the balance's currency."
)
Email = Annotated[str, Meta(max_length=254, pattern=EMAIL_PATTERN)]
AmountText = Annotated[
    str,
    Meta(
        max_length=40,
        pattern=AMOUNT_PATTERN,
        description=f'Decimal string in major units, e.g. "10.50". {_AMOUNT_RULES}',
    ),
]
LimitText = Annotated[
    str,
    Meta(
        max_length=40, pattern=LIMIT_PATTERN, description=f'Decimal string in major units, "0" allowed. {_AMOUNT_RULES}'
    ),
]
Metadata = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=40)], Annotated[str, Meta(max_length=500)]],
    Meta(max_length=20),
]
Description = Annotated[str, Meta(max_length=500)]
CurrencyCode = Annotated[str, Meta(pattern=CURRENCY_PATTERN)]

_req = {"forbid_unknown_fields": True, "frozen": True}

# Statuses as enums in the schema: a client can switch over them exhaustively.
# The server's own lists (ledger.results.PaymentStatus, ledger.records.EVENT_TYPES), spelled
# out so that the client needs none of the server: tests/unit/test_wire_types.py pins them.
PAYMENT_STATUSES = (
    "pending",
    "success",
    "not_enough_money",
    "currencies_dont_match",
    "balance_disabled",
    "system_failure",
    "quote_expired",
    "not_enough_liquidity",
)
EVENT_TYPES = (
    "account.created",
    "account.updated",
    "balance.created",
    "balance.updated",
    "payment.succeeded",
    "payment.failed",
    "transfer.succeeded",
    "transfer.failed",
    "refund.succeeded",
    "refund.failed",
    "hold.created",
    "hold.captured",
    "hold.voided",
    "hold.expired",
    "fx_rate.updated",
)
PaymentStatusText = Literal[PAYMENT_STATUSES]  # type: ignore[valid-type]
# A hold placed is held, then captured, voided or expired; one refused shows why, as a payment would.
HOLD_STATUSES = ("held", "captured", "voided", "expired", *sorted(set(PAYMENT_STATUSES) - {"pending", "success"}))
HoldStatusText = Literal[HOLD_STATUSES]  # type: ignore[valid-type]


class AccountCreate(msgspec.Struct, **_req):
    email: Email
    metadata: Metadata | None = None


class BalanceCreate(msgspec.Struct, **_req):
    currency: CurrencyCode
    overdraft_limit: LimitText = "0"


class DepositCreate(msgspec.Struct, **_req):
    balance_id: Id
    amount: AmountText
    description: Description | None = None  # default "deposit"
    metadata: Metadata | None = None


class WithdrawalCreate(msgspec.Struct, **_req):
    balance_id: Id
    amount: AmountText
    description: Description | None = None  # default "withdrawal"
    metadata: Metadata | None = None


class PaymentCreate(msgspec.Struct, **_req):
    balance_from: Id
    balance_to: Id
    amount: AmountText
    description: Description | None = None
    metadata: Metadata | None = None
    quote_id: Id | None = None  # an exchange payment: the quote's balances and amount, at its rate


# -- responses ----------------------------------------------------------------------------
class Balance(msgspec.Struct):
    id: str
    account_id: str
    currency: str
    amount: str
    reserved: str
    available: str | None  # null on a currency's issuer balance, which has no limit
    overdraft_limit: str | None  # likewise
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
    status: PaymentStatusText
    created_at: str
    settled_at: str | None = None  # when the money moved: success only
    decided_at: str | None = None  # when the status became final, whichever it is
    reason: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None  # the caller's key, when the payment was made with one
    refund_of: str | None = None  # on a refund: the payment it gives back
    refunded_amount: str | None = None  # GET /v1/payments/{id} of a refunded payment: its successful refunds
    transfer_id: str | None = None  # on a transfer's leg
    quote_id: str | None = None  # on an exchange payment: the quote it used, and so
    rate: str | None = None
    amount_to: str | None = None  # what the payee received
    currency_to: str | None = None


class RefundCreate(msgspec.Struct, **_req):
    amount: AmountText | None = None  # default: what is left to refund
    description: Description | None = None
    metadata: Metadata | None = None


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


class KeyListed(msgspec.Struct):
    id: str
    account_id: str
    prefix: str | None  # the token's first characters (keys made before 1.1 have none)
    created_at: str


class KeyList(msgspec.Struct):
    data: list[KeyListed]
    has_more: bool


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    reason: str | None = None


Status = Literal["active", "disabled"]
Limit = Annotated[int, Meta(ge=1, le=100)]


class AccountPatch(msgspec.Struct, **_req):
    """What is given changes: `metadata` replaces the account's whole (null: none). The
    email is immutable (422 naming it)."""

    status: Status | None = None
    metadata: Metadata | msgspec.UnsetType | None = msgspec.UNSET


class BalancePatch(msgspec.Struct, **_req):
    status: Status | None = None
    overdraft_limit: LimitText | None = None


class CurrencyCreate(msgspec.Struct, **_req):
    code: Annotated[str, Meta(pattern=CURRENCY_PATTERN)]
    exponent: Annotated[int, Meta(ge=0, le=8)]
    name: Annotated[str, Meta(min_length=1, max_length=100)]


class BatchItem(PaymentCreate, **_req):
    """A payment request with its own idempotency key; without one, and with an
    Idempotency-Key header on the batch, it is keyed `<header key>:<index>`."""

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


class Entry(msgspec.Struct, omit_defaults=True):
    id: str
    payment_id: str
    amount: str
    balance_after: str
    created_at: str
    counterparty_balance_id: str | None = None  # the other side of the payment
    description: str | None = None
    transfer_id: str | None = None  # the transfer this line is a leg of


class EntryList(msgspec.Struct):
    data: list[Entry]
    has_more: bool


class HoldCreate(msgspec.Struct, **_req):
    balance_from: Id
    balance_to: Id
    amount: AmountText
    expires_in_s: Annotated[int, Meta(ge=1, le=7 * 24 * 3600)]
    description: Description | None = None
    metadata: Metadata | None = None


# The language of AMOUNT_PATTERN written the other way round, so that a rate keeps its own example.
RATE_PATTERN = describe_pattern(
    r"^(?:0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(?:\.[0-9]+)?)$", 'a positive decimal string such as "0.9231"'
)


class FxRatePut(msgspec.Struct, **_req):
    rate: Annotated[
        str,
        Meta(
            max_length=40,
            pattern=RATE_PATTERN,
            description="How much of the quote currency 1 of the base currency buys; at most 12 significant digits.",
        ),
    ]


class FxRate(msgspec.Struct):
    base: str
    quote: str
    rate: str
    updated_at: str


class FxRateList(msgspec.Struct):
    data: list[FxRate]
    has_more: bool


class BalanceList(msgspec.Struct):
    data: list[Balance]
    has_more: bool


class HoldList(msgspec.Struct):
    data: list[Hold]
    has_more: bool


class HoldCapture(msgspec.Struct, **_req):
    amount: AmountText | None = None  # default: all that is left
    final: bool = False  # release what is left after this capture (capturing all of it does too)


class HoldVoid(msgspec.Struct, **_req):
    pass


class Hold(msgspec.Struct, omit_defaults=True):
    id: str
    balance_from: str
    balance_to: str
    amount: str
    currency: str
    status: HoldStatusText
    created_at: str
    expires_at: str
    reason: str | None = None
    closed_at: str | None = None
    captured_amount: str | None = None
    payment_id: str | None = None  # the latest capture
    captures: list[str] | None = None  # every capture's payment, oldest first
    description: str | None = None
    metadata: dict[str, str] | None = None


TRANSFER_LEGS_MAX = 16


class TransferLegCreate(msgspec.Struct, **_req):
    balance_from: Id
    balance_to: Id
    amount: AmountText  # in the paying balance's currency
    quote_id: Id | None = None  # an exchange leg, as for a payment


class TransferCreate(msgspec.Struct, **_req):
    legs: Annotated[list[TransferLegCreate], Meta(min_length=1, max_length=TRANSFER_LEGS_MAX)]
    description: Description | None = None
    metadata: Metadata | None = None


class TransferLeg(msgspec.Struct):
    payment_id: str  # the leg's payment: statements show it with the transfer's id
    balance_from: str
    balance_to: str
    amount: str
    currency: str


class Transfer(msgspec.Struct, omit_defaults=True):
    id: str
    status: PaymentStatusText  # success, pending, or the first failing leg's status (then every leg's)
    legs: list[TransferLeg]
    created_at: str
    failed_leg: int | None = None  # the 0-based index of the first failing leg
    reason: str | None = None
    settled_at: str | None = None  # when the money moved: success only
    decided_at: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None  # shown to the caller who sent it


class TransferList(msgspec.Struct):
    data: list[Transfer]
    has_more: bool


class FxQuoteCreate(msgspec.Struct, **_req):
    balance_from: Id
    balance_to: Id
    amount: AmountText  # in the paying balance's currency
    expires_in_s: Annotated[int, Meta(ge=1, le=3600)] = 60


class FxQuote(msgspec.Struct):
    id: str
    balance_from: str
    balance_to: str
    rate: str
    amount_from: str
    currency_from: str
    amount_to: str  # amount_from at the rate, rounded down to currency_to's minor unit
    currency_to: str
    created_at: str
    expires_at: str


class Event(msgspec.Struct):
    id: str
    type: str
    created_at: str
    data: dict[str, Any]


class EventList(msgspec.Struct):
    data: list[Event]
    has_more: bool


# -- webhooks ---------------------------------------------------------------------------------
EventSelector = Annotated[
    Literal[(*EVENT_TYPES, "*")],  # type: ignore[valid-type]
    Meta(description='An event type, or "*" for every type'),
]


# What the webhooks actor can parse as an http(s) URL with a host (no credentials): a host
# name or an IP address (IPv6 in brackets), a port up to 65535, then printable ASCII. Where
# the host resolves to is checked at creation (the address rules in the description).
_H16 = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    (
        f"(?:{_H16}:){{7}}{_H16}",
        f"(?:{_H16}:){{1,7}}:",
        f"(?:{_H16}:){{1,6}}:{_H16}",
        f"(?:{_H16}:){{1,5}}(?::{_H16}){{1,2}}",
        f"(?:{_H16}:){{1,4}}(?::{_H16}){{1,3}}",
        f"(?:{_H16}:){{1,3}}(?::{_H16}){{1,4}}",
        f"(?:{_H16}:){{1,2}}(?::{_H16}){{1,5}}",
        f"{_H16}:(?::{_H16}){{1,6}}",
        f":(?:(?::{_H16}){{1,7}}|:)",
    )
)
_PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
WEBHOOK_URL_PATTERN = describe_pattern(
    rf"^https?://(?:{_HOST}|\[(?:{_IPV6})\])(?::{_PORT})?(?:[/?#][!-~]*)?$",
    "an http:// or https:// URL with a host name or IP address, such as https://example.com/hooks",
)


class WebhookEndpointCreate(msgspec.Struct, **_req):
    url: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=2048,
            pattern=WEBHOOK_URL_PATTERN,
            description="http or https, with a host; where it resolves to must pass the address rules",
        ),
    ]
    events: Annotated[list[EventSelector], Meta(min_length=1, max_length=len(EVENT_TYPES) + 1)]
    description: Description | None = None


class WebhookEndpoint(msgspec.Struct, omit_defaults=True):
    id: str
    url: str
    events: list[str]
    created_at: str
    retrying: int  # events whose delivery failed and waits for its next try
    description: str | None = None
    secret: str | None = None  # shown once, at creation: it checks the Rayledger-Signature of deliveries


class WebhookEndpointList(msgspec.Struct):
    data: list[WebhookEndpoint]
    has_more: bool


class WebhookDelivery(msgspec.Struct):
    """One attempt to deliver an event."""

    id: str
    event_id: str
    event_type: str
    attempt: int
    created_at: str
    status_code: int | None  # None: no HTTP answer (see error)
    error: str | None
    duration_ms: int
    delivered: bool
    next_attempt_at: str | None  # None: no more tries (delivered, or given up 24 h after the first)


class WebhookDeliveryList(msgspec.Struct):
    data: list[WebhookDelivery]
    has_more: bool
