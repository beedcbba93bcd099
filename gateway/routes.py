"""The route table: one entry per operation, read by the router, by the auth middleware
(who may call it) and by the OpenAPI generator (what it takes and returns).

Each concern's module declares its operations (`OPS`, see gateway.operation) beside the
handlers they name; the table gathers them here, with the tags /docs groups them by."""

from __future__ import annotations

from gateway import (
    accounts,
    api_keys,
    balances,
    batches,
    currencies,
    events,
    fx,
    health,
    holds,
    moves,
    refunds,
    transfers,
    webhooks,
)
from gateway.operation import Op

CURSOR_RULE = "A cursor must be an item of this list, and only one of the two may be given (422)."

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


# By concern, in about the order of TAGS (which alone orders /docs); each module's in its own order.
OPS: list[Op] = [
    *accounts.OPS,
    *balances.OPS,
    *api_keys.OPS,
    *currencies.OPS,
    *moves.OPS,
    *refunds.OPS,
    *batches.OPS,
    *transfers.OPS,
    *holds.OPS,
    *fx.OPS,
    *events.OPS,
    *webhooks.OPS,
    *health.OPS,
]
