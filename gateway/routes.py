"""The route table: one entry per operation, read by the router, by the auth middleware
(who may call it) and by the OpenAPI generator (what it takes and returns)."""

from __future__ import annotations

from typing import Any, NamedTuple

from gateway import events, handlers, transfers, webhooks
from gateway.auth import Access
from ledger.records import EVENT_ID_PATTERN, EVENT_TYPES
from rayledger import schemas
from rayledger.patterns import describe_pattern

TWO_SIDES_RULE = (
    "balance_from and balance_to must be two different balances (422 same_balance), neither of them an issuer or"
    " FX liquidity balance (422 validation_error naming it: those move money by deposits and withdrawals); the"
    " amount has at most the currency's decimals (422 invalid_amount)."
)
CURSOR_RULE = "A cursor must be an item of this list, and only one of the two may be given (422)."

# Query parameters as their OpenAPI schemas: the server checks each against its schema
# (gateway.inputs.parse_query) and refuses any parameter an operation does not declare.
ID_Q = {"type": "string", "minLength": 1, "maxLength": 64}
TIME_Q = {
    "type": "string",
    "format": "date-time",
    "maxLength": 40,
    "description": "RFC 3339, e.g. 2026-12-01T09:30:00Z",
}
LIST_Q: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    "starting_after": {**ID_Q, "description": "An id from the previous page: the page after it (older)"},
    "ending_before": {**ID_Q, "description": "An id from the previous page: the page before it (newer)"},
}
TIME_RANGE_Q = {"created_gte": TIME_Q, "created_lt": TIME_Q}
ACCOUNT_STATUS_Q = {"type": "string", "enum": ["active", "disabled"]}
PAYMENT_STATUS_Q = {"type": "string", "enum": sorted(schemas.PAYMENT_STATUSES)}
EVENT_TYPE_Q = {"type": "string", "enum": list(EVENT_TYPES)}
HOLD_STATUS_Q = {"type": "string", "enum": list(schemas.HOLD_STATUSES)}


class Op(NamedTuple):
    method: str
    path: str
    handler: handlers.Handler
    summary: str
    access: Access
    body: type | None = None
    response: Any = None
    status: int = 200
    errors: tuple[str, ...] = ()
    idempotent: bool = False  # accepts Idempotency-Key
    idempotency_key_len_max: int = 255  # a batch's is shorter: its items are keyed <key>:<index>
    query: dict[str, dict[str, Any]] = {}  # noqa: RUF012 (never mutated)
    rules: str = ""  # what the schema cannot say: rules between fields or on the ledger's state
    body_optional: bool = False  # the body may be left out (every field has a default)
    media: str = "application/json"  # of the answer
    headers: dict[str, dict[str, Any]] = {}  # noqa: RUF012 (never mutated) request headers read, as schemas
    also: dict[int, str] = {}  # noqa: RUF012 (never mutated) other statuses answering `response`, described


# Operations by resource, for /docs, in this order: (tag, what it is about, path prefixes);
# an operation goes under the longest prefix its path has.
TAGS: list[tuple[str, str, tuple[str, ...]]] = [
    ("Accounts", "Account holders (admin; an account key reads its own)", ("/v1/accounts",)),
    (
        "Balances",
        "An account's money in one currency, and its statement",
        ("/v1/accounts/{id}/balances", "/v1/balances"),
    ),
    ("API keys", "Account tokens, shown once (admin)", ("/v1/accounts/{id}/keys", "/v1/keys")),
    ("Currencies", "ISO 4217 and custom currencies, each with its issuer balance", ("/v1/currencies",)),
    (
        "Deposits and withdrawals",
        "Money in and out, through the currency's issuer (admin)",
        ("/v1/deposits", "/v1/withdrawals"),
    ),
    ("Refunds", "All or part of a payment given back", ("/v1/payments/{id}/refunds",)),
    ("Payments", "Money moved between two balances", ("/v1/payments",)),
    ("Transfers", "Up to 16 payments, all or none", ("/v1/transfers",)),
    ("Holds", "Reserve now, capture later", ("/v1/holds",)),
    ("Currency exchange", "Rates, quotes and the FX liquidity balances", ("/v1/fx",)),
    ("Events", "Every state change, listed and streamed", ("/v1/events",)),
    ("Webhooks", "Events delivered to your endpoints, signed", ("/v1/webhook_endpoints",)),
    ("Operations", "Liveness and readiness (no token)", ("/healthz", "/readyz")),
]


def tag_of(path: str) -> str:
    found = [(len(p), tag) for tag, _, prefixes in TAGS for p in prefixes if path == p or path.startswith(p + "/")]
    return max(found)[1]


OPS: list[Op] = [
    Op("GET", "/healthz", handlers.healthz, "Liveness: 200 while the process runs", "public", response=schemas.Health),
    Op(
        "GET",
        "/readyz",
        handlers.readyz,
        "Readiness: every partition recovered and writable",
        "public",
        response=schemas.Health,
        also={503: "Not ready: status unavailable, and the reason"},
    ),
    Op(
        "GET",
        "/v1/currencies",
        handlers.list_currencies,
        "List currencies, by code",
        "account",
        response=schemas.CurrencyList,
        query=LIST_Q,
    ),
    Op(
        "GET",
        "/v1/currencies/{code}",
        handlers.get_currency,
        "A currency with its issuer balance",
        "account",
        response=schemas.Currency,
        errors=("currency_not_found",),
    ),
    Op(
        "PUT",
        "/v1/fx/rates/{base}/{quote}",
        handlers.set_fx_rate,
        "Set a currency pair's exchange rate (journaled; opens the pair's FX liquidity balances)",
        "admin",
        body=schemas.FxRatePut,
        response=schemas.FxRate,
        errors=("unknown_currency", "validation_error"),
        rules="base and quote are two different, existing currencies (422); the rate has at most 12 significant"
        " digits (422 validation_error).",
    ),
    Op(
        "GET",
        "/v1/fx/rates",
        handlers.list_fx_rates,
        "Exchange rates, by pair (the cursor is BASE/QUOTE)",
        "account",
        response=schemas.FxRateList,
        query=LIST_Q,
    ),
    Op(
        "POST",
        "/v1/fx/quotes",
        handlers.create_quote,
        "Fix an exchange between two balances' currencies for a while (pay it with quote_id)",
        "account",
        body=schemas.FxQuoteCreate,
        response=schemas.FxQuote,
        status=201,
        errors=("balance_not_found", "same_balance", "invalid_amount", "validation_error", "conflict"),
        rules=TWO_SIDES_RULE + " The balances hold two currencies with a rate between them, either way round"
        " (409 conflict without one); amount_to is amount at the rate, rounded down.",
    ),
    Op(
        "GET",
        "/v1/fx/quotes/{id}",
        handlers.get_quote,
        "A quote, for a day after it expires (an account key: quotes from its own balances)",
        "account",
        response=schemas.FxQuote,
        errors=("quote_not_found",),
    ),
    Op(
        "GET",
        "/v1/fx/liquidity",
        handlers.list_liquidity,
        "The FX liquidity balances, one per currency with a rate (fund them by deposits)",
        "admin",
        response=schemas.BalanceList,
        query=LIST_Q,
    ),
    Op(
        "POST",
        "/v1/accounts",
        handlers.create_account,
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
        handlers.get_account,
        "An account with its balances",
        "account",
        response=schemas.Account,
        errors=("account_not_found",),
    ),
    Op(
        "POST",
        "/v1/accounts/{id}/balances",
        handlers.create_balance,
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
        "POST",
        "/v1/accounts/{id}/keys",
        handlers.create_key,
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
        handlers.list_keys,
        "An account's API keys (never their tokens), newest first",
        "admin",
        response=schemas.KeyList,
        errors=("account_not_found",),
        query=LIST_Q,
    ),
    Op(
        "DELETE",
        "/v1/keys/{id}",
        handlers.revoke_key,
        "Revoke an API key",
        "admin",
        status=204,
        errors=("key_not_found",),
    ),
    Op(
        "GET",
        "/v1/balances/{id}",
        handlers.get_balance,
        "A balance",
        "account",
        response=schemas.Balance,
        errors=("balance_not_found",),
    ),
    Op(
        "POST",
        "/v1/deposits",
        handlers.create_deposit,
        "Deposit: a payment from the currency's issuer",
        "admin",
        body=schemas.DepositCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "invalid_amount", "validation_error"),
        rules="The amount has at most the currency's decimals (422 invalid_amount).",
    ),
    Op(
        "POST",
        "/v1/withdrawals",
        handlers.create_withdrawal,
        "Withdrawal: a payment to the issuer",
        "admin",
        body=schemas.WithdrawalCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "invalid_amount", "validation_error"),
        rules="The amount has at most the currency's decimals (422 invalid_amount).",
    ),
    Op(
        "POST",
        "/v1/payments",
        handlers.create_payment,
        "Move money between two balances",
        "account",
        body=schemas.PaymentCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "quote_not_found", "same_balance", "invalid_amount", "validation_error"),
        rules=TWO_SIDES_RULE + " With quote_id: the quote's balances and amount (422), a known quote (404).",
    ),
    Op(
        "POST",
        "/v1/transfers",
        transfers.create_transfer,
        "Move money along 1 to 16 legs, all or none",
        "account",
        body=schemas.TransferCreate,
        response=schemas.Transfer,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "quote_not_found", "same_balance", "invalid_amount", "validation_error"),
        rules="Each leg: " + TWO_SIDES_RULE + " A balance may appear in several legs: its debits add up against"
        " what it has. Every leg moves or none does; the status is the first failing leg's (failed_leg).",
    ),
    Op(
        "GET",
        "/v1/transfers/{id}",
        transfers.get_transfer,
        "A transfer with its legs",
        "account",
        response=schemas.Transfer,
        errors=("transfer_not_found",),
    ),
    Op(
        "GET",
        "/v1/transfers",
        transfers.list_transfers,
        "List transfers, newest first",
        "account",
        response=schemas.TransferList,
        errors=("balance_not_found", "account_not_found"),
        query={**LIST_Q, "balance": ID_Q, "account": ID_Q, **TIME_RANGE_Q},
    ),
    Op(
        "GET",
        "/v1/events",
        events.list_events,
        "Events: every state change, newest first (an account key sees its own)",
        "account",
        response=schemas.EventList,
        query={**LIST_Q, "type": EVENT_TYPE_Q},
        rules="starting_after and ending_before are event ids.",
    ),
    Op(
        "GET",
        "/v1/events/{id}",
        events.get_event,
        "An event (an account key: its own)",
        "account",
        response=schemas.Event,
        errors=("event_not_found",),
    ),
    Op(
        "GET",
        "/v1/events/stream",
        events.stream_events,
        "Events as Server-Sent Events, as they happen; resumable with Last-Event-ID",
        "account",
        response=str,
        media="text/event-stream",
        headers={
            "Last-Event-ID": {
                "type": "string",
                "pattern": EVENT_ID_PATTERN,
                "description": "The id of the last event received: resume after it",
            }
        },
        query={
            "type": EVENT_TYPE_Q,
            "after": {
                "type": "string",
                "pattern": describe_pattern(EVENT_ID_PATTERN, f"an event id such as {events.SAMPLE_EVENT_ID}"),
                "description": "An event id (evt_…, as GET /v1/events and this stream show them): resume after"
                " that event, as the Last-Event-ID header does (which wins if both are given)",
            },
        },
        rules="Starts at now unless `after` or Last-Event-ID names an event to resume after. Each event is"
        " `id: <event id>`, `event: <type>`, `data: <event JSON>`, sent in id order once half a second old"
        " (the events_stream_lag_ms setting); after a resume an event may come twice (dedupe by id). An idle"
        " stream sends a comment every 15 s.",
    ),
    Op(
        "POST",
        "/v1/webhook_endpoints",
        webhooks.create_endpoint,
        "Subscribe a URL to events; the answer shows the signing secret, once",
        "admin",
        body=schemas.WebhookEndpointCreate,
        response=schemas.WebhookEndpoint,
        status=201,
        idempotent=True,
        rules="Each delivery is a POST of the event with Rayledger-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,"
        ' "<t>.<body>")>; 2xx is delivered, anything else is retried (first within ~2 s, doubling up to 1 h) for 24'
        " h, at least once: dedupe by event id. URLs resolving to link-local or metadata addresses are refused (422),"
        " private and loopback ones unless RAYLEDGER_WEBHOOK_PRIVATE_TARGETS allows them (by default only when the"
        " ledger listens on loopback). The endpoint gets the events made after it.",
    ),
    Op(
        "GET",
        "/v1/webhook_endpoints",
        webhooks.list_endpoints,
        "List webhook endpoints, newest first",
        "admin",
        response=schemas.WebhookEndpointList,
        query=LIST_Q,
    ),
    Op(
        "GET",
        "/v1/webhook_endpoints/{id}",
        webhooks.get_endpoint,
        "A webhook endpoint (without its secret)",
        "admin",
        response=schemas.WebhookEndpoint,
        errors=("webhook_endpoint_not_found",),
    ),
    Op(
        "DELETE",
        "/v1/webhook_endpoints/{id}",
        webhooks.delete_endpoint,
        "Stop delivering to an endpoint, for good",
        "admin",
        status=204,
        errors=("webhook_endpoint_not_found",),
    ),
    Op(
        "GET",
        "/v1/webhook_endpoints/{id}/deliveries",
        webhooks.list_deliveries,
        "An endpoint's delivery log: every attempt, newest first",
        "admin",
        response=schemas.WebhookDeliveryList,
        errors=("webhook_endpoint_not_found",),
        query=LIST_Q,
    ),
    Op(
        "GET",
        "/v1/payments/{id}",
        handlers.get_payment,
        "A payment",
        "account",
        response=schemas.Payment,
        errors=("payment_not_found",),
    ),
    Op(
        "POST",
        "/v1/currencies",
        handlers.create_currency,
        "Create a custom currency",
        "admin",
        body=schemas.CurrencyCreate,
        response=schemas.Currency,
        status=201,
        errors=("currency_exists",),
        idempotent=True,
    ),
    Op(
        "GET",
        "/v1/accounts",
        handlers.list_accounts,
        "List accounts, newest first",
        "admin",
        response=schemas.AccountList,
        query={**LIST_Q, "status": ACCOUNT_STATUS_Q, "email": {"type": "string", "maxLength": 254}},
    ),
    Op(
        "PATCH",
        "/v1/accounts/{id}",
        handlers.patch_account,
        "Disable or re-enable an account, or replace its metadata",
        "admin",
        body=schemas.AccountPatch,
        response=schemas.Account,
        errors=("account_not_found", "validation_error"),
        rules="Only what is given changes; metadata is replaced whole (null: none). The email is immutable (422"
        " naming it). A change is an account.updated event.",
    ),
    Op(
        "PATCH",
        "/v1/balances/{id}",
        handlers.patch_balance,
        "Disable a balance or change its overdraft limit",
        "admin",
        body=schemas.BalancePatch,
        response=schemas.Balance,
        errors=("balance_not_found", "invalid_amount", "validation_error", "conflict"),
    ),
    Op(
        "GET",
        "/v1/balances/{id}/entries",
        handlers.list_entries,
        "Statement lines, newest first",
        "account",
        response=schemas.EntryList,
        errors=("balance_not_found",),
        query={**LIST_Q, **TIME_RANGE_Q},
    ),
    Op(
        "GET",
        "/v1/payments",
        handlers.list_payments,
        "List payments, newest first",
        "account",
        response=schemas.PaymentList,
        errors=("balance_not_found", "account_not_found"),
        query={
            **LIST_Q,
            "balance": ID_Q,
            "account": ID_Q,
            "status": PAYMENT_STATUS_Q,
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255},
            **TIME_RANGE_Q,
        },
    ),
    Op(
        "POST",
        "/v1/payments/{id}/refunds",
        handlers.create_refund,
        "Refund all or part of a payment: a payment from its receiver back to its payer",
        "account",
        body=schemas.RefundCreate,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        body_optional=True,
        errors=("payment_not_found", "conflict", "refund_exceeds_payment", "invalid_amount"),
        rules="The refunds of a payment never add up to more than it (409 refund_exceeds_payment, whose detail"
        " says what is left, or that the payment is fully refunded); an account key refunds payments it received.",
    ),
    Op(
        "GET",
        "/v1/payments/{id}/refunds",
        handlers.list_refunds,
        "A payment's refunds, newest first",
        "account",
        response=schemas.PaymentList,
        errors=("payment_not_found",),
    ),
    Op(
        "POST",
        "/v1/payments/batch",
        handlers.create_batch,
        "Up to 1000 payments; each succeeds or fails alone",
        "account",
        body=schemas.BatchCreate,
        response=schemas.BatchResult,
        idempotent=True,
        idempotency_key_len_max=handlers.BATCH_HEADER_KEY_LEN_MAX,
        rules="An Idempotency-Key header makes the whole batch one replayable unit: the same key and body"
        " answer the first results again (Idempotent-Replayed: true), another body with that key is 409"
        " idempotency_key_reused and nothing moves. Items without an idempotency_key of their own are keyed"
        " `<header key>:<index>`. No two items may share a key (422 naming the second,"
        " payments[n].idempotency_key).",
    ),
    Op(
        "POST",
        "/v1/holds",
        handlers.create_hold,
        "Authorize: reserve an amount now, capture later",
        "account",
        body=schemas.HoldCreate,
        response=schemas.Hold,
        status=201,
        idempotent=True,
        errors=("balance_not_found", "same_balance", "invalid_amount", "validation_error"),
        rules=TWO_SIDES_RULE,
    ),
    Op(
        "GET",
        "/v1/holds/{id}",
        handlers.get_hold,
        "A hold",
        "account",
        response=schemas.Hold,
        errors=("hold_not_found",),
    ),
    Op(
        "GET",
        "/v1/holds",
        handlers.list_holds,
        "List holds, newest first (an account token: those touching its balances)",
        "account",
        response=schemas.HoldList,
        errors=("balance_not_found", "account_not_found"),
        query={**LIST_Q, "balance": ID_Q, "status": HOLD_STATUS_Q, **TIME_RANGE_Q},
    ),
    Op(
        "POST",
        "/v1/holds/{id}/capture",
        handlers.capture_hold,
        "Capture all or part of what a hold still holds; repeatable until final",
        "account",
        body=schemas.HoldCapture,
        response=schemas.Payment,
        status=201,
        idempotent=True,
        body_optional=True,
        errors=("hold_not_found", "conflict", "invalid_amount"),
        rules="The amount has at most the currency's decimals and at most what the hold still holds (422"
        " invalid_amount); a hold no longer held is 409. Without final, the rest stays held for the next capture.",
    ),
    Op(
        "POST",
        "/v1/holds/{id}/void",
        handlers.void_hold,
        "Release a hold",
        "account",
        body=schemas.HoldVoid,
        response=schemas.Hold,
        idempotent=True,
        body_optional=True,
        errors=("hold_not_found", "conflict"),
    ),
]
