"""App factory: routes in one table, one error middleware, auth, typed app keys.

`create_app` takes an already connected `LedgerClient`: starting Ray and the actors is
the CLI's job (embedded) or the cluster's (`--address`), so the app is the same in both.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from actors.client import LedgerClient
from actors.settings import Settings
from gateway import handlers
from gateway.directory import Directory
from gateway.errors import ApiError, problem_response
from gateway.keys import ADMIN_TOKEN, CLIENT, DIRECTORY, SETTINGS

log = logging.getLogger("rayledger.gateway")

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

ROUTES = [
    web.get("/healthz", handlers.healthz),
    web.get("/readyz", handlers.readyz),
    web.get("/v1/currencies", handlers.list_currencies),
    web.get("/v1/currencies/{code}", handlers.get_currency),
    web.post("/v1/accounts", handlers.create_account),
    web.get("/v1/accounts/{id}", handlers.get_account),
    web.post("/v1/accounts/{id}/balances", handlers.create_balance),
    web.get("/v1/balances/{id}", handlers.get_balance),
    web.post("/v1/deposits", handlers.create_deposit),
    web.post("/v1/withdrawals", handlers.create_withdrawal),
    web.post("/v1/payments", handlers.create_payment),
    web.get("/v1/payments/{id}", handlers.get_payment),
]


def _unavailable(exc: BaseException) -> bool:
    """Infrastructure trouble (an actor restarting, a journal that cannot be written):
    the client should retry later, and nothing was acknowledged."""
    from ray import exceptions as ray_exceptions

    from journal import JournalUnavailable

    if isinstance(exc, JournalUnavailable | ray_exceptions.RayActorError | ray_exceptions.ActorUnavailableError):
        return True
    if isinstance(exc, ray_exceptions.RayTaskError):
        return isinstance(exc.cause, JournalUnavailable) or "JournalUnavailable" in str(exc)
    return isinstance(exc, ray_exceptions.RayError)


@web.middleware
async def error_middleware(request: web.Request, handler: handlers.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return problem_response(error)
    except web.HTTPRequestEntityTooLarge:
        return problem_response(ApiError("payload_too_large", "the request body is larger than allowed"))
    except web.HTTPMethodNotAllowed as exc:
        return problem_response(
            ApiError("method_not_allowed", f"{request.method} is not allowed here"),
            headers={"Allow": ",".join(sorted(exc.allowed_methods))},
        )
    except web.HTTPNotFound:
        return problem_response(ApiError("not_found", f"no such resource: {request.path}"))
    except web.HTTPException:
        raise
    except Exception as exc:
        if _unavailable(exc):
            log.warning("unavailable: %s %s: %s", request.method, request.path, type(exc).__name__)
            error = ApiError("unavailable", "the ledger is temporarily unavailable; retry later")
            response = problem_response(error)
            response.headers["Retry-After"] = "1"
            return response
        log.exception("internal error on %s %s", request.method, request.path)
        return problem_response(ApiError("internal_error", "an internal error occurred"))


@web.middleware
async def auth_middleware(request: web.Request, handler: handlers.Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or not request.path.startswith("/v1"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = request.app[ADMIN_TOKEN]
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError("unauthorized", "a valid 'Authorization: Bearer <token>' header is required")
    return await handler(request)


def create_app(settings: Settings, client: LedgerClient, admin_token: str) -> web.Application:
    assert len(admin_token) >= 16, "the admin token must carry at least 128 bits"
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=settings.request_body_bytes_max,
    )
    app[SETTINGS] = settings
    app[CLIENT] = client
    app[DIRECTORY] = Directory(client, settings.directory_cache_max)
    app[ADMIN_TOKEN] = admin_token
    app.add_routes(ROUTES)
    return app
