"""What one entry of the route table (`gateway.routes`) says about an operation (`Op`), and
the query parameter schemas and rules several operations share.

Apart from the table, so that each concern's module can declare its operations beside
their handlers while `gateway.routes` gathers them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiohttp import web

from gateway.auth import Access
from ledger.records import EVENT_TYPES
from rayledger import schemas

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TWO_SIDES_RULE = (
    "balance_from and balance_to must be two different balances (422 same_balance), neither of them an issuer or"
    " FX liquidity balance (422 validation_error naming it: those move money by deposits and withdrawals); the"
    " amount has at most the currency's decimals (422 invalid_amount)."
)

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
    handler: Handler
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
