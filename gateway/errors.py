"""Problem details (RFC 9457) and the single table from error codes to HTTP statuses.

Handlers raise `ApiError(code, detail, param)`; the error middleware renders it. Business
rejections of a payment are *not* errors: they are a final payment status with 201.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"

STATUS_OF_CODE: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Forbidden"),
    "not_found": (404, "Not found"),  # a path the API does not have
    "account_not_found": (404, "Account not found"),
    "balance_not_found": (404, "Balance not found"),
    "payment_not_found": (404, "Payment not found"),
    "transfer_not_found": (404, "Transfer not found"),
    "hold_not_found": (404, "Hold not found"),
    "currency_not_found": (404, "Currency not found"),
    "quote_not_found": (404, "Quote not found"),
    "event_not_found": (404, "Event not found"),
    "webhook_endpoint_not_found": (404, "Webhook endpoint not found"),
    "key_not_found": (404, "API key not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflict"),
    "email_taken": (409, "Email taken"),
    "balance_exists": (409, "Balance exists"),
    "currency_exists": (409, "Currency exists"),
    "idempotency_key_reused": (409, "Idempotency key reused"),
    "account_disabled": (409, "Account disabled"),
    "refund_exceeds_payment": (409, "Refund exceeds payment"),
    "payload_too_large": (413, "Payload too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "validation_error": (422, "Validation error"),
    "same_balance": (422, "Same balance"),
    "invalid_amount": (422, "Invalid amount"),
    "unknown_currency": (422, "Unknown currency"),
    "internal_error": (500, "Internal error"),
    "unavailable": (503, "Service unavailable"),
}


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    code: str
    param: str | None = None


class ApiError(Exception):
    def __init__(self, code: str, detail: str, param: str | None = None) -> None:
        assert code in STATUS_OF_CODE, f"unlisted error code {code}"
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.param = param

    def problem(self) -> Problem:
        status, title = STATUS_OF_CODE[self.code]
        return Problem(
            type=f"https://rayledger.dev/problems/{self.code}",
            title=title,
            status=status,
            detail=self.detail,
            code=self.code,
            param=self.param,
        )


RETRY_AFTER_S = 1  # a 503 is transient: an actor restarting, a disk coming back, a burst


def problem_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    problem = error.problem()
    if problem.status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
    elif problem.status == 401:  # RFC 9110: a 401 names the scheme that would work
        headers = {"WWW-Authenticate": 'Bearer realm="rayledger"', **(headers or {})}
    return web.Response(
        body=msgspec.json.encode(problem),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
