"""App factory: routes from one table, one error middleware, auth, typed app keys.

`create_app` takes an already connected `LedgerClient`: the app runs inside a coordinator
actor (`gateway.ingress`), which hands it a client that reaches that coordinator directly.
"""

from __future__ import annotations

import asyncio
import logging
import re

import msgspec
from aiohttp import web
from openapi_ui_bundles import swagger_ui

from actors.client import LedgerClient
from actors.directory import Directory
from actors.logs import event
from actors.settings import Settings, package_version
from gateway.auth import Authenticator, require_admin
from gateway.batcher import PaymentBatcher
from gateway.console.pages import add_console
from gateway.console.session import Sessions
from gateway.errors import ApiError, problem_response
from gateway.inputs import parse_query
from gateway.keys import (
    ADMISSION,
    AUTH,
    BATCHER,
    CLIENT,
    DIRECTORY,
    INGRESS,
    OPENAPI,
    PRINCIPAL,
    QUERY,
    SEAL_KEY,
    SETTINGS,
    TRANSFERS,
    Admission,
)
from gateway.logs import REQUEST_LOG, RequestLog, observe_middleware
from gateway.metrics import METRICS, GatewayMetrics, metrics_endpoint
from gateway.openapi import build_spec
from gateway.operation import Handler, Op
from gateway.routes import OPS
from journal import JournalUnavailable
from rayledger.schemas import TRANSFER_LEGS_MAX

log = logging.getLogger("rayledger.gateway")
SHUTDOWN_PHASE2_WAIT_S = 10.0

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rayledger API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", persistAuthorization: true});</script>
</body></html>
"""


def _unavailable(exc: BaseException) -> bool:
    """Infrastructure trouble (an actor restarting, a journal that cannot be written):
    the client should retry later, and nothing was acknowledged."""
    from ray import exceptions as ray_exceptions  # here: the app is built and tested without Ray

    if isinstance(exc, JournalUnavailable | ray_exceptions.RayActorError | ray_exceptions.ActorUnavailableError):
        return True
    if isinstance(exc, ray_exceptions.RayTaskError):
        return isinstance(exc.cause, JournalUnavailable) or "JournalUnavailable" in str(exc)
    return isinstance(exc, ray_exceptions.RayError)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
            return problem_response(error, headers={"Retry-After": "1"})
        log.exception("internal error on %s %s", request.method, request.path)
        return problem_response(ApiError("internal_error", "an internal error occurred"))


def _op_of(request: web.Request) -> Op | None:
    return request.match_info.route.handler.__dict__.get("op")  # type: ignore[no-any-return]


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bounded work: past `requests_in_flight_max` concurrent API requests, answer 503
    at once (clients back off on Retry-After) rather than queue without bound and let
    every request time out together."""
    if not request.path.startswith("/v1"):
        return await handler(request)
    admission = request.app[ADMISSION]
    if admission.in_flight >= admission.limit:
        admission.refused += 1
        error = ApiError("unavailable", "the ledger is at capacity; retry shortly")
        return problem_response(error, headers={"Retry-After": "1"})
    admission.in_flight += 1
    try:
        return await handler(request)
    finally:
        admission.in_flight -= 1


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    op = _op_of(request)
    if op is None and not request.path.startswith("/v1"):
        return await handler(request)  # docs, OpenAPI, unknown paths outside the API
    if op is not None and op.access == "public":
        return await handler(request)
    principal = await request.app[AUTH].principal(request)
    if op is not None and op.access == "admin":
        require_admin(principal)
    request[PRINCIPAL] = principal
    return await handler(request)


def _router_path(path: str) -> str:
    """`path` for aiohttp's router, with each `{var}` segment refusing the fixed segments
    that other routes have in its place (`/v1/payments/{id}` is not `/v1/payments/batch`):
    otherwise GET /v1/payments/batch is routed to a payment lookup and a 405 there lists GET
    as allowed."""
    parts = path.split("/")
    others = [p.split("/") for p in {op.path for op in OPS}]
    out = []
    for n, part in enumerate(parts):
        if part.startswith("{"):
            fixed = sorted({o[n] for o in others if len(o) > n and o[:n] == parts[:n] and not o[n].startswith("{")})
            if fixed:
                refused = "|".join(re.escape(f) for f in fixed)
                part = f"{{{part[1:-1]}:(?!(?:{refused})$)[^/]+}}"
        out.append(part)
    return "/".join(out)


def _bind(op: Op) -> Handler:
    """A per-route wrapper carrying its table entry (the middleware reads `op`)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.query_string:
            request[QUERY] = parse_query(request.query, op.query)
        return await op.handler(request)

    handle.op = op  # type: ignore[attr-defined]
    handle.__name__ = op.handler.__name__
    return handle


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html")


async def _finish_phase2(app: web.Application) -> None:
    """A clean stop leaves every answered payment posted, not for the next start to finish
    (its journals then pass `rayledger verify` as they are). Bounded: a stop never hangs."""
    try:
        left = await asyncio.wait_for(app[CLIENT].finish_phase2(), SHUTDOWN_PHASE2_WAIT_S)
    except Exception as exc:  # actors already gone, a journal down: recovery settles the rest
        event(log, "phase2_not_finished", logging.WARNING, error=type(exc).__name__)
    else:
        if left:
            event(log, "phase2_not_finished", logging.WARNING, unfinished=left)


async def _flush_log(app: web.Application) -> None:
    app[REQUEST_LOG].flush()


def create_app(
    settings: Settings, client: LedgerClient, admin_token_hash: bytes, ingress: int = 0, *, seal_key: bytes
) -> web.Application:
    """The REST app served by coordinator `ingress` (payments without a key are its own);
    `seal_key` (from the admin token) seals what creates' Idempotency-Keys replay."""
    app = web.Application(
        middlewares=[
            observe_middleware,
            error_middleware,
            admission_middleware,
            auth_middleware,
        ],
        client_max_size=settings.request_body_bytes_max,
    )
    app[SETTINGS] = settings
    app[CLIENT] = client
    app[DIRECTORY] = Directory(client, settings.directory_cache_max)
    sessions = Sessions(seal_key)
    app[AUTH] = Authenticator(admin_token_hash, client, settings.auth_cache_ttl_ms, sessions)
    app[INGRESS] = ingress
    app[SEAL_KEY] = seal_key
    app[OPENAPI] = msgspec.json.encode(build_spec(package_version()))
    app[ADMISSION] = Admission(settings.requests_in_flight_max)
    app[METRICS] = GatewayMetrics()
    app[METRICS].in_flight.set_function(lambda: app[ADMISSION].in_flight)  # read at scrape time
    app[REQUEST_LOG] = RequestLog()
    app[BATCHER] = PaymentBatcher(
        client,
        settings.gateway_batch_max,
        settings.gateway_batches_in_flight_max,
        on_batch=app[METRICS].batch_payments.observe,
        share_wait_ms=settings.gateway_batch_share_wait_ms,
    )
    app[TRANSFERS] = PaymentBatcher(
        client,
        max(1, settings.gateway_batch_max // TRANSFER_LEGS_MAX),  # legs per call stay within a payment batch
        settings.gateway_batches_in_flight_max,
        share_wait_ms=settings.gateway_batch_share_wait_ms,
        send=client.transfer_outcomes,
    )
    app.on_cleanup.append(_finish_phase2)  # after the server stopped taking requests and drained them
    app.on_cleanup.append(_flush_log)
    for op in OPS:
        app.router.add_route(op.method, _router_path(op.path), _bind(op))
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_static("/docs/static", swagger_ui.static_path)
    add_console(app, sessions)
    return app
